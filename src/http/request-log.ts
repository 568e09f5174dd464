import { createMiddleware } from "hono/factory";
import { routePath } from "hono/route";
import type { HonoEnv } from "../env";
import { newId } from "../lib/ids";
import { containsCardNumber } from "../domain/card-numbers";

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Request id (client-supplied when sane) and one JSON log line per request, for `wrangler tail`. */
export const requestLog = createMiddleware<HonoEnv>(async (c, next) => {
  const incoming = c.req.header("x-request-id");
  // The id is echoed, logged and stored on audit rows: one that reads as a card number is replaced, never kept.
  const requestId = incoming && REQUEST_ID.test(incoming) && !containsCardNumber(incoming) ? incoming : newId("req", 16);
  c.set("requestId", requestId);
  const started = Date.now();
  await next();
  c.res.headers.set("x-request-id", requestId);
  const actor = c.get("actor");
  console.log(
    JSON.stringify({
      level: c.res.status >= 500 ? "error" : "info",
      msg: "request",
      requestId,
      method: c.req.method,
      path: c.req.path,
      route: routePath(c, -1),
      status: c.res.status,
      ms: Date.now() - started,
      actor: actor?.id,
    }),
  );
});
