import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { HonoEnv } from "../../env";
import { jsonResponse, router } from "../../http/openapi";
import { checkDatabase, checkDurableObjects, checkPaymentGateways, type ComponentHealth } from "./checks";

const Component = z.object({ status: z.enum(["ok", "down"]), latencyMs: z.number(), detail: z.unknown().optional(), error: z.string().optional() });
const Overall = z.object({ status: z.enum(["ok", "down"]), latencyMs: z.number(), checks: z.record(z.string(), Component), version: z.string(), time: z.string() });
const health = { 200: jsonResponse(Component, "Healthy"), 503: jsonResponse(Component, "Down") };
const overall = { 200: jsonResponse(Overall, "Healthy"), 503: jsonResponse(Overall, "At least one component is down") };

const VERSION = "0.1.0";

async function aggregate(c: Context<HonoEnv>, checks: Record<string, Promise<ComponentHealth>>) {
  const started = Date.now();
  const entries = await Promise.all(Object.entries(checks).map(async ([k, p]) => [k, await p] as const));
  const down = entries.some(([, h]) => h.status === "down");
  const body = { status: down ? ("down" as const) : ("ok" as const), latencyMs: Date.now() - started, checks: Object.fromEntries(entries), version: VERSION, time: new Date().toISOString() };
  return down ? c.json(body, 503) : c.json(body, 200);
}

const one = (c: Context<HonoEnv>, h: ComponentHealth) => (h.status === "ok" ? c.json(h, 200) : c.json(h, 503));
const route = (path: string, summary: string, responses: typeof health | typeof overall) =>
  createRoute({ method: "get", path, tags: ["Health"], summary, responses });

export const healthRoutes = router()
  .openapi(route("/", "Overall health: database, Durable Objects, payment gateways", overall), (c) =>
    aggregate(c, { database: checkDatabase(c.env), durableObjects: checkDurableObjects(c.env), paymentGateways: checkPaymentGateways(c.env) }),
  )
  .openapi(route("/live", "Liveness: the isolate answers (no I/O)", health), (c) => c.json({ status: "ok" as const, latencyMs: 0 }, 200))
  .openapi(route("/ready", "Readiness: database and Durable Objects answer", overall), (c) =>
    aggregate(c, { database: checkDatabase(c.env), durableObjects: checkDurableObjects(c.env) }),
  )
  .openapi(route("/database", "D1 round trip", health), async (c) => one(c, await checkDatabase(c.env)))
  .openapi(route("/redis", "Durable Object layer round trip (the runbook's Redis check)", health), async (c) => one(c, await checkDurableObjects(c.env)))
  .openapi(route("/payment-gateways", "Configured payment gateways", health), async (c) => one(c, await checkPaymentGateways(c.env)));
