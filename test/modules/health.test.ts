import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import worker from "../../src/index";
import { api, createApiKey, tokenFor } from "../helpers";

async function callWith(path: string, patchedEnv: Env, headers: Record<string, string> = {}) {
  const ctx = createExecutionContext();
  const res = await worker.fetch(new Request(`http://localhost${path}`, { headers }), patchedEnv, ctx);
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

  it("/health reports each component with latency; anonymous probes see status and latency only", async () => {
    const r = await api("GET", "/health", { as: null });
    expect(r.status).toBe(200);
    expect(r.body.status).toBe("ok");
    expect(typeof r.body.latencyMs).toBe("number");
    expect(Object.keys(r.body.checks).sort()).toEqual(["database", "durableObjects", "paymentGateways"]);
    for (const check of Object.values(r.body.checks) as any[]) expect(Object.keys(check).sort()).toEqual(["latencyMs", "status"]);
    expect(JSON.stringify(r.body)).not.toMatch(/customers|paymentMode|sandbox|stripe|version/);
  });

  it.each(["viewer", "support", "finance", "admin"] as const)("with a %s token /health shows each component's details", async (role) => {
    const r = await api("GET", "/health", { as: role });
    expect(r.status).toBe(200);
    expect(r.body.checks.database.detail).toMatchObject({ engine: "d1", customers: expect.any(Number) });
    expect(r.body.checks.durableObjects.detail).toMatchObject({ paymentMode: "normal" });
    expect(r.body.version).toBeTruthy();
  });

  it("anonymous /health/database, /health/redis, /health/payment-gateways and /health/ready disclose nothing but status and latency", async () => {
    for (const path of ["/health/database", "/health/redis", "/health/payment-gateways"]) {
      const r = await api("GET", path, { as: null });
      expect(r.status).toBe(200);
      expect(Object.keys(r.body).sort()).toEqual(["latencyMs", "status"]);
    }
    const ready = await api("GET", "/health/ready", { as: null });
    expect(ready.status).toBe(200);
    expect(JSON.stringify(ready.body)).not.toMatch(/customers|paymentMode/);
  });

  it("/health/database, /health/redis and /health/payment-gateways round-trip their component (details with a token)", async () => {
    const db = await api("GET", "/health/database", { as: "viewer" });
    expect(db.status).toBe(200);
    expect(db.body.detail.engine).toBe("d1");
    const redis = await api("GET", "/health/redis", { as: "viewer" });
    expect(redis.status).toBe(200);
    expect(redis.body.detail).toMatchObject({ engine: "durable-objects", paymentMode: "normal" });
    const gw = await api("GET", "/health/payment-gateways", { as: "viewer" });
    expect(gw.status).toBe(200);
    expect(gw.body.detail.primary).toBe("sandbox");
  });

  it("a bad token on /health is a 401, not an anonymous answer; an API key sees the anonymous answer", async () => {
    for (const path of ["/health", "/health/database"]) {
      const r = await api("GET", path, { auth: "Bearer not-a-token" });
      expect(r.status).toBe(401);
      expect(r.headers.get("content-type")).toBe("application/problem+json");
    }
    const { key } = await createApiKey();
    const withKey = await api("GET", "/health/database", { auth: `Bearer ${key}` });
    expect(withKey.status).toBe(200);
    expect(withKey.body.detail).toBeUndefined();
  });

  it("answers 503 naming the failing component when D1 is down (the reason only with a token)", async () => {
    const patched = { ...env, DB: brokenDb };
    const db = await callWith("/health/database", patched);
    expect(db.status).toBe(503);
    expect(db.body.status).toBe("down");
    expect(db.body.error).toBeUndefined();
    const all = await callWith("/health", patched);
    expect(all.status).toBe(503);
    expect(all.body.checks.database.status).toBe("down");
    expect(all.body.checks.durableObjects.status).toBe("ok");
    const ready = await callWith("/health/ready", patched);
    expect(ready.status).toBe(503);
    const live = await callWith("/health/live", patched);
    expect(live.status).toBe(200);
    const withToken = await callWith("/health/database", patched, { authorization: `Bearer ${await tokenFor("viewer")}` });
    expect(withToken.status).toBe(503);
    expect(withToken.body.error).toContain("database unavailable");
  });

  it("answers 503 when the Durable Object layer fails", async () => {
    const patched = {
      ...env,
      PAYMENT_GUARD: { idFromName: () => ({}), get: () => ({ ping: () => Promise.reject(new Error("object unreachable")) }) },
    } as unknown as Env;
    const r = await callWith("/health/redis", patched, { authorization: `Bearer ${await tokenFor("admin")}` });
    expect(r.status).toBe(503);
    expect(r.body.error).toContain("object unreachable");
  });
});
