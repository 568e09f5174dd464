import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { HonoEnv } from "../../env";
import { authenticate } from "../../http/auth";
import { jsonResponse, problemResponse, router } from "../../http/openapi";
import { checkDatabase, checkDurableObjects, checkPaymentGateways, type ComponentHealth } from "./checks";

const Component = z
  .object({ status: z.enum(["ok", "down"]), latencyMs: z.number(), detail: z.unknown().optional(), error: z.string().optional() })
  .openapi({ description: "detail and error only with a token (any role); anonymous probes get status and latency" });
const Overall = z.object({
  status: z.enum(["ok", "down"]),
  latencyMs: z.number(),
  checks: z.record(z.string(), Component),
  version: z.string().optional(),
  time: z.string().optional(),
});
const badToken = problemResponse("A token was sent and is invalid (no token at all is fine)");
const health = { 200: jsonResponse(Component, "Healthy"), 401: badToken, 503: jsonResponse(Component, "Down") };
const overall = { 200: jsonResponse(Overall, "Healthy"), 401: badToken, 503: jsonResponse(Overall, "At least one component is down") };
const PUBLIC = " Public (no token needed); with a token of any role the answer adds details.";

const VERSION = "0.1.0";

/** Details (row counts, payment mode, gateway modes, error messages) are business data: only for a user token. */
const detailed = (c: Context<HonoEnv>) => c.get("actor")?.kind === "user";
const shown = (h: ComponentHealth, full: boolean): ComponentHealth => (full ? h : { status: h.status, latencyMs: h.latencyMs });

async function aggregate(c: Context<HonoEnv>, checks: Record<string, Promise<ComponentHealth>>) {
  const started = Date.now();
  const full = detailed(c);
  const entries = await Promise.all(Object.entries(checks).map(async ([k, p]) => [k, shown(await p, full)] as const));
  const down = entries.some(([, h]) => h.status === "down");
  const body = {
    status: down ? ("down" as const) : ("ok" as const),
    latencyMs: Date.now() - started,
    checks: Object.fromEntries(entries),
    ...(full ? { version: VERSION, time: new Date().toISOString() } : {}),
  };
  return down ? c.json(body, 503) : c.json(body, 200);
}

const one = (c: Context<HonoEnv>, h: ComponentHealth) => {
  const body = shown(h, detailed(c));
  return h.status === "ok" ? c.json(body, 200) : c.json(body, 503);
};
// A token is read when sent (a bad one is a 401), so a caller with a token sees the details. /health/live does no I/O.
const route = (path: string, operationId: string, summary: string, description: string, responses: typeof health | typeof overall) =>
  createRoute({ method: "get", path, operationId, tags: ["Health"], summary, description: description + PUBLIC, security: [], middleware: [authenticate] as const, responses });

export const healthRoutes = router()
  .openapi(route("/", "getHealth", "Overall health", "Database, Durable Objects and payment gateways; 503 when any is down.", overall), (c) =>
    aggregate(c, { database: checkDatabase(c.env), durableObjects: checkDurableObjects(c.env), paymentGateways: checkPaymentGateways(c.env) }),
  )
  .openapi(createRoute({
      method: "get",
      path: "/live",
      operationId: "getLiveness",
      tags: ["Health"],
      summary: "Liveness",
      description: "The isolate answers: no I/O, credentials not read. Public.",
      security: [],
      responses: { 200: jsonResponse(Component, "Alive") },
    }), (c) =>
    c.json({ status: "ok" as const, latencyMs: 0 }, 200),
  )
  .openapi(route("/ready", "getReadiness", "Readiness", "The database and the Durable Objects answer; 503 otherwise.", overall), (c) =>
    aggregate(c, { database: checkDatabase(c.env), durableObjects: checkDurableObjects(c.env) }),
  )
  .openapi(route("/database", "getDatabaseHealth", "Database health", "A D1 round trip.", health), async (c) => one(c, await checkDatabase(c.env)))
  .openapi(route("/redis", "getDurableObjectHealth", "Durable Object layer health", "A Durable Object round trip (the runbook's Redis check: there is no Redis).", health), async (c) => one(c, await checkDurableObjects(c.env)))
  .openapi(route("/payment-gateways", "getPaymentGatewayHealth", "Payment gateway health", "A health round trip to each configured payment gateway.", health), async (c) => one(c, await checkPaymentGateways(c.env)));
