import type { Context } from "hono";
import type { z } from "@hono/zod-openapi";
import type { HonoEnv } from "../env";
import { ApiError, zodFieldErrors } from "./problem";

/**
 * Parses the body as JSON whatever its Content-Type: the runbook's emergency commands use `curl -d` without
 * `-H "Content-Type: application/json"`, and an operator in an incident must not be refused over a header.
 * An empty body is `{}`.
 */
export async function lenientJson<T extends z.ZodType>(c: Context<HonoEnv>, schema: T): Promise<z.infer<T>> {
  // Decoded by hand: workerd warns when .text() reads a body whose Content-Type is not textual.
  const text = new TextDecoder().decode(await c.req.arrayBuffer()).trim();
  let raw: unknown = {};
  if (text) {
    try {
      raw = JSON.parse(text);
    } catch {
      throw new ApiError("bad_request", "body is not valid JSON", [{ path: "(body)", message: "malformed JSON" }]);
    }
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const errors = zodFieldErrors(parsed.error.issues);
    throw new ApiError("validation_failed", `invalid body: ${errors.map((e) => `${e.path}: ${e.message}`).join("; ")}`, errors);
  }
  return parsed.data;
}
