import { createMiddleware } from "hono/factory";
import type { HonoEnv } from "../env";
import { bodyText } from "./body-text";

/** Types a declared JSON body may arrive under and still be read as JSON: none, curl -d's default, plain text. */
const LENIENT_TYPES = /^(application\/x-www-form-urlencoded|text\/plain)\b/i;
const JSON_TYPE = /^application\/([\w.-]+\+)?json\b/i;

/**
 * Treats the body of a route that declares a JSON body as JSON: the runbook's emergency commands use `curl -d`
 * without `-H "Content-Type: application/json"`, and an operator in an incident must not be refused over a header.
 * A body sent without a type, as form-urlencoded (curl -d) or as text/plain is re-labelled application/json, and an
 * empty body is `{}`; the route's zod schema then validates it like any JSON body. Other types (multipart, XML…)
 * keep the validator's 415. `router()` mounts this before every route that declares an application/json body.
 */
export const declaredJsonBody = createMiddleware<HonoEnv>(async (c, next) => {
  const type = c.req.header("content-type") ?? "";
  const lenient = type === "" || LENIENT_TYPES.test(type);
  if (!lenient && !JSON_TYPE.test(type)) return next();
  const text = await bodyText(c);
  if (!lenient && text.trim() !== "") return next();
  const headers = new Headers(c.req.raw.headers);
  headers.set("content-type", "application/json");
  headers.delete("content-length");
  c.req.raw = new Request(c.req.url, { method: c.req.method, headers, body: text.trim() === "" ? "{}" : text });
  c.req.bodyCache = {};
  return next();
});
