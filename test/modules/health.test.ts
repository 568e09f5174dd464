import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import worker from "../../src/index";
import { api } from "../helpers";

async function callWith(path: string, patchedEnv: Env) {
  const ctx = createExecutionContext();
  const res = await worker.fetch(new Request(`http://localhost${path}`), patchedEnv, ctx);
  await waitOnExecutionContext(ctx);
  return { status: res.status, body: (await res.json()) as any };
}

const brokenDb = {
  prepare() {
    throw new Error("D1_ERROR: database unavailable");
  },
} as unknown as D1Database;

describe("health", () => {
  it("/health/live answers without credentials", async () => {
    const r = await api("GET", "/health/live", { as: null });
    expect(r.status).toBe(200);
    expect(r.body.status).toBe("ok");
  });

  it("/health reports each component with latency", async () => {
    const r = await api("GET", "/health", { as: null });
    expect(r.status).toBe(200);
    expect(r.body.status).toBe("ok");
    expect(Object.keys(r.body.checks).sort()).toEqual(["database", "durableObjects", "paymentGateways"]);
    expect(r.body.checks.database.detail.engine).toBe("d1");
    expect(typeof r.body.checks.database.latencyMs).toBe("number");
  });

  it("/health/database, /health/redis and /health/payment-gateways round-trip their component", async () => {
    const db = await api("GET", "/health/database", { as: null });
    expect(db.status).toBe(200);
    const redis = await api("GET", "/health/redis", { as: null });
    expect(redis.status).toBe(200);
    expect(redis.body.detail).toMatchObject({ engine: "durable-objects", paymentMode: "normal" });
    const gw = await api("GET", "/health/payment-gateways", { as: null });
    expect(gw.status).toBe(200);
    expect(gw.body.detail.primary).toBe("sandbox");
  });

  it("answers 503 naming the failing component when D1 is down", async () => {
    const patched = { ...env, DB: brokenDb };
    const db = await callWith("/health/database", patched);
    expect(db.status).toBe(503);
    expect(db.body.status).toBe("down");
    expect(db.body.error).toContain("database unavailable");
    const all = await callWith("/health", patched);
    expect(all.status).toBe(503);
    expect(all.body.checks.database.status).toBe("down");
    expect(all.body.checks.durableObjects.status).toBe("ok");
    const ready = await callWith("/health/ready", patched);
    expect(ready.status).toBe(503);
    const live = await callWith("/health/live", patched);
    expect(live.status).toBe(200);
  });

  it("answers 503 when the Durable Object layer fails", async () => {
    const patched = {
      ...env,
      PAYMENT_GUARD: { idFromName: () => ({}), get: () => ({ ping: () => Promise.reject(new Error("object unreachable")) }) },
    } as unknown as Env;
    const r = await callWith("/health/redis", patched);
    expect(r.status).toBe(503);
    expect(r.body.error).toContain("object unreachable");
  });
});
