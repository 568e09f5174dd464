import type { Context } from "hono";

const decoded = new WeakMap<Request, string>();

/**
 * The request's body as text, decoded once however many layers read it (the card-number scan, the JSON-body
 * middleware, a route parsing by hand). Decoded by hand rather than with `.text()`: workerd warns when `.text()` reads
 * a body whose Content-Type is not textual. A middleware that replaces the request (declaredJsonBody) gets a new entry.
 */
export async function bodyText(c: Context): Promise<string> {
  const raw = c.req.raw;
  let text = decoded.get(raw);
  if (text === undefined) {
    text = raw.body ? new TextDecoder().decode(await c.req.arrayBuffer()) : "";
    decoded.set(raw, text);
  }
  return text;
}
