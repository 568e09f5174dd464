import { createMiddleware } from "hono/factory";
import type { HonoEnv } from "../env";
import { cardNumberFindingsInJson, containsCardNumber, type CardFinding } from "../domain/card-numbers";
import { ApiError, type FieldError } from "./problem";
import { bodyText } from "./body-text";

export const CARD_NUMBER_ADVICE = "send a payment-method token, never a card number";
const BODY_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);

const fieldError = (f: CardFinding): FieldError => ({
  path: f.path,
  message: f.in === "key" ? `a key of this object looks like a card number: ${CARD_NUMBER_ADVICE}` : `looks like a card number: ${CARD_NUMBER_ADVICE}`,
});

/**
 * Refuses (422) a request that carries a card number anywhere (query string, Idempotency-Key, JSON body at any
 * depth, keys included) before any handler or the idempotency layer can store it, and never echoes the number;
 * what counts as a card number is in domain/card-numbers.ts. Mounted on /api/* and /admin/* (so not on
 * /webhooks/stripe, whose payloads Stripe signs). The body is read once here and stays cached for the route.
 */
export const refuseCardNumbers = createMiddleware<HonoEnv>(async (c, next) => {
  const findings: CardFinding[] = [];
  for (const [name, value] of new URL(c.req.url).searchParams) {
    if (containsCardNumber(name)) findings.push({ path: "query", in: "key" });
    else if (containsCardNumber(value)) findings.push({ path: `query.${name}`, in: "value" });
  }
  const key = c.req.header("idempotency-key");
  if (key && containsCardNumber(key)) findings.push({ path: "Idempotency-Key", in: "value" });
  if (BODY_METHODS.has(c.req.method) && c.req.raw.body) {
    findings.push(...cardNumberFindingsInJson(await bodyText(c)));
  }
  if (findings.length) {
    const paths = [...new Set(findings.map((f) => f.path))];
    throw new ApiError("unprocessable", `${paths.join(", ")} ${paths.length === 1 ? "holds" : "hold"} a card number: ${CARD_NUMBER_ADVICE}`, findings.map(fieldError));
  }
  await next();
});
