import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { SignJWT } from "jose";
import { signToken } from "../../src/http/auth";
import { sha256Hex } from "../../src/lib/hash";
import { api, createApiKey } from "../helpers";

const secret = (s: string) => new TextEncoder().encode(s);

type Claims = { role?: unknown; sub?: string | null; iss?: string; aud?: string; exp?: number | null; iat?: number | null; alg?: string; key?: string };

/** A token built by hand, so each claim can be wrong on its own. */
async function craft(c: Claims = {}): Promise<string> {
  const payload: Record<string, unknown> = {};
  if (c.role !== undefined) payload.role = c.role;
  let jwt = new SignJWT(payload as never)
    .setProtectedHeader({ alg: c.alg ?? "HS256" })
    .setIssuer(c.iss ?? env.JWT_ISSUER)
    .setAudience(c.aud ?? env.JWT_AUDIENCE);
  if (c.iat !== null) jwt = jwt.setIssuedAt(c.iat);
  if (c.sub !== null) jwt = jwt.setSubject(c.sub ?? "crafted-user");
  if (c.exp !== null) jwt = jwt.setExpirationTime(c.exp ?? Math.floor(Date.now() / 1000) + 600);
  return jwt.sign(secret(c.key ?? env.JWT_SECRET));
}

function expectProblem(r: { status: number; body: any; headers: Headers }, status: number) {
  expect(r.status).toBe(status);
  expect(r.headers.get("content-type")).toBe("application/problem+json");
  expect(r.body).toMatchObject({ status, type: expect.stringMatching(/^https:\/\//), title: expect.any(String), detail: expect.any(String) });
  expect(JSON.stringify(r.body)).not.toMatch(/\n\s+at /); // never a stack trace
}

function expect401(r: { status: number; body: any; headers: Headers }) {
  expectProblem(r, 401);
  expect(r.headers.get("www-authenticate")).toMatch(/^Bearer/);
}

const customersCount = async () => (await env.DB.prepare("SELECT count(*) AS n FROM customers").first<{ n: number }>())!.n;

describe("JWT authentication", () => {
  it("a valid admin token is accepted", async () => {
    const r = await api("GET", "/api/v1/customers");
    expect(r.status).toBe(200);
  });

  it("no token → 401 problem+json with a Bearer challenge", async () => {
    const r = await api("GET", "/api/v1/customers", { as: null });
    expect401(r);
    expect(r.body.instance).toBe("/api/v1/customers");
  });

  it("no token on a write → 401 and nothing is created", async () => {
    const before = await customersCount();
    const r = await api("POST", "/api/v1/customers", { as: null, body: { email: "anon@example.com" } });
    expect401(r);
    expect(await customersCount()).toBe(before);
  });

  it.each([
    ["Basic scheme", "Basic dXNlcjpwYXNz"],
    ["Bearer without a token", "Bearer"],
    ["Bearer with two parts", "Bearer abc def"],
    ["token without scheme", "eyJhbGciOiJIUzI1NiJ9.e30.x"],
  ])("malformed Authorization header (%s) → 401", async (_name, header) => {
    const r = await api("GET", "/api/v1/customers", { auth: header });
    expect401(r);
    expect(r.body.detail).toMatch(/Bearer/);
  });

  it("garbage bearer token → 401 invalid_token", async () => {
    const r = await api("GET", "/api/v1/customers", { auth: "Bearer not.a.jwt" });
    expect401(r);
    expect(r.headers.get("www-authenticate")).toContain('error="invalid_token"');
  });

  it("token signed with another secret → 401", async () => {
    const token = await craft({ role: "admin", key: "another-secret-that-is-long-enough-0123456789" });
    const r = await api("GET", "/api/v1/customers", { auth: `Bearer ${token}` });
    expect401(r);
    expect(r.headers.get("www-authenticate")).toContain('error="invalid_token"');
    expect(r.body.detail).toMatch(/signature|invalid/);
  });

  it("token with a tampered payload (role upgraded) → 401", async () => {
    const viewer = await craft({ role: "viewer" });
    const [h, , s] = viewer.split(".");
    const forged = btoa(JSON.stringify({ role: "admin", sub: "x", iss: env.JWT_ISSUER, aud: env.JWT_AUDIENCE, exp: Math.floor(Date.now() / 1000) + 600 }))
      .replaceAll("=", "")
      .replaceAll("+", "-")
      .replaceAll("/", "_");
    const r = await api("POST", "/api/v1/customers", { auth: `Bearer ${h}.${forged}.${s}`, body: { email: "forged@example.com" } });
    expect401(r);
  });

  it("token with another algorithm (HS512, right secret) → 401", async () => {
    const token = await craft({ role: "admin", alg: "HS512" });
    expect401(await api("GET", "/api/v1/customers", { auth: `Bearer ${token}` }));
  });

  it("expired token → 401 saying it expired", async () => {
    const token = await craft({ role: "admin", exp: Math.floor(Date.now() / 1000) - 60 });
    const r = await api("GET", "/api/v1/customers", { auth: `Bearer ${token}` });
    expect401(r);
    expect(r.body.detail).toMatch(/expired/);
  });

  it("signToken with a negative ttl yields a rejected token", async () => {
    const token = await signToken(env, "someone", "admin", -120);
    expect401(await api("GET", "/api/v1/customers", { auth: `Bearer ${token}` }));
  });

  it("token without expiry → 401 (exp is required)", async () => {
    const token = await craft({ role: "admin", exp: null });
    const r = await api("GET", "/api/v1/customers", { auth: `Bearer ${token}` });
    expect401(r);
    expect(r.body.detail).toMatch(/exp/);
  });

  describe("lifetime", () => {
    const nowS = () => Math.floor(Date.now() / 1000);

    it("a ten-year token → 401 naming the maximum lifetime", async () => {
      const token = await craft({ role: "admin", exp: nowS() + 10 * 365 * 86_400 });
      const r = await api("GET", "/api/v1/customers", { auth: `Bearer ${token}` });
      expect401(r);
      expect(r.body.detail).toMatch(/lifetime/);
      expect(r.body.detail).toContain(`${env.JWT_MAX_TTL_SECONDS} s`);
    });

    it("a 23-hour token is accepted; 24 h is the default maximum", async () => {
      expect(env.JWT_MAX_TTL_SECONDS).toBe("86400");
      const token = await craft({ role: "admin", exp: nowS() + 23 * 3600 });
      expect((await api("GET", "/api/v1/customers", { auth: `Bearer ${token}` })).status).toBe(200);
      const justOver = await craft({ role: "admin", exp: nowS() + 86_400 + 60 });
      expect401(await api("GET", "/api/v1/customers", { auth: `Bearer ${justOver}` }));
    });

    it("a token without iat → 401 (its lifetime cannot be known)", async () => {
      const token = await craft({ role: "admin", iat: null });
      const r = await api("GET", "/api/v1/customers", { auth: `Bearer ${token}` });
      expect401(r);
      expect(r.body.detail).toContain("iat");
    });

    it("a short-lived token issued in the future, or issued long ago, → 401", async () => {
      const future = await craft({ role: "admin", iat: nowS() + 5 * 365 * 86_400, exp: nowS() + 5 * 365 * 86_400 + 600 });
      expect401(await api("GET", "/api/v1/customers", { auth: `Bearer ${future}` }));
      const old = await craft({ role: "admin", iat: nowS() - 2 * 86_400, exp: nowS() + 600 });
      expect401(await api("GET", "/api/v1/customers", { auth: `Bearer ${old}` }));
    });

    it("signToken refuses to mint beyond the maximum", async () => {
      await expect(signToken(env, "someone", "admin", 10 * 365 * 86_400)).rejects.toThrow(/lifetime/);
    });
  });

  it("token without subject → 401", async () => {
    const token = await craft({ role: "admin", sub: null });
    expect401(await api("GET", "/api/v1/customers", { auth: `Bearer ${token}` }));
  });

  it("wrong audience → 401 naming aud", async () => {
    const token = await craft({ role: "admin", aud: "someone-else" });
    const r = await api("GET", "/api/v1/customers", { auth: `Bearer ${token}` });
    expect401(r);
    expect(r.body.detail).toContain("aud");
  });

  it("wrong issuer → 401 naming iss", async () => {
    const token = await craft({ role: "admin", iss: "evil-issuer" });
    const r = await api("GET", "/api/v1/customers", { auth: `Bearer ${token}` });
    expect401(r);
    expect(r.body.detail).toContain("iss");
  });

  it.each([
    ["no role claim", undefined],
    ["unknown role", "superuser"],
    ["role of the wrong type", ["admin"]],
    ["api_key pseudo-role", "api_key"],
    ["system pseudo-role", "system"],
  ])("token with %s → 401", async (_name, role) => {
    const token = await craft({ role });
    const r = await api("GET", "/api/v1/customers", { auth: `Bearer ${token}` });
    expect401(r);
    expect(r.body.detail).toMatch(/role/);
  });

  it("the scheme name is case-insensitive", async () => {
    const token = await craft({ role: "viewer" });
    expect((await api("GET", "/api/v1/customers", { auth: `bearer ${token}` })).status).toBe(200);
  });

  it("a bad credential is a 401 before routing, even for an unknown /api path", async () => {
    // /api/v1/nope does not exist; the credential is checked before routing.
    const r = await api("GET", "/api/v1/nope", { auth: "Bearer nonsense" });
    expect(r.status).toBe(401);
  });
});

describe("roles", () => {
  it.each([
    ["viewer", "POST", "/api/v1/customers", { email: "v@example.com" }],
    ["viewer", "POST", "/api/v1/plans", { name: "x", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "1" }] }],
    ["support", "POST", "/api/v1/plans", { name: "x", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "1" }] }],
    ["finance", "POST", "/api/v1/subscriptions", { customerId: "cus_x", planId: "plan_x" }],
    ["viewer", "POST", "/api/v1/subscriptions", { customerId: "cus_x", planId: "plan_x" }],
    ["finance", "POST", "/admin/api-keys", { name: "k" }],
    ["support", "POST", "/admin/api-keys", { name: "k" }],
    ["viewer", "GET", "/admin/api-keys", undefined],
    ["finance", "DELETE", "/admin/api-keys/key_whatever", undefined],
    ["viewer", "GET", "/api/v1/audit/search", undefined],
    ["support", "GET", "/api/v1/audit/verify-integrity", undefined],
  ] as const)("%s %s %s → 403 problem+json", async (role, method, path, body) => {
    const r = await api(method, path, { as: role, body });
    expectProblem(r, 403);
    expect(r.body.detail).toMatch(/role/);
  });

  it("a forbidden write persists nothing", async () => {
    const before = await customersCount();
    expect((await api("POST", "/api/v1/customers", { as: "viewer", body: { email: "nope@example.com" } })).status).toBe(403);
    expect(await customersCount()).toBe(before);
    const audit = await env.DB.prepare("SELECT count(*) AS n FROM audit_log WHERE actor = 'test-viewer'").first<{ n: number }>();
    expect(audit!.n).toBe(0);
  });

  it.each([
    ["viewer", "GET", "/api/v1/customers"],
    ["viewer", "GET", "/api/v1/plans"],
    ["support", "GET", "/api/v1/subscriptions"],
    ["finance", "GET", "/api/v1/audit/search"],
  ] as const)("%s may %s %s", async (role, method, path) => {
    expect((await api(method, path, { as: role })).status).toBe(200);
  });

  it("roles that may write do write", async () => {
    expect((await api("POST", "/api/v1/customers", { as: "support", body: { email: "s@example.com" } })).status).toBe(201);
    expect((await api("POST", "/api/v1/customers", { as: "finance", body: { email: "f@example.com" } })).status).toBe(201);
    const plan = await api("POST", "/api/v1/plans", {
      as: "finance",
      body: { name: "F", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "1" }] },
    });
    expect(plan.status).toBe(201);
  });
});

describe("API keys", () => {
  it("creation shows the bek_ secret once; listings never show it; D1 keeps only its SHA-256", async () => {
    const r = await api("POST", "/admin/api-keys", { body: { name: "ingest", scopes: ["usage:write"] } });
    expect(r.status).toBe(201);
    const key: string = r.body.key;
    expect(key).toMatch(/^bek_[A-Za-z0-9_-]{43}$/);
    expect(r.body).toMatchObject({ id: expect.stringMatching(/^key_/), name: "ingest", scopes: ["usage:write"], createdBy: "test-admin", revokedAt: null });
    expect(key.startsWith(r.body.prefix)).toBe(true);
    expect(r.body.prefix.length).toBeLessThan(key.length / 2);

    const list = await api("GET", "/admin/api-keys");
    expect(list.status).toBe(200);
    const listed = list.body.data.find((k: any) => k.id === r.body.id);
    expect(listed).toBeDefined();
    expect(listed).not.toHaveProperty("key");
    expect(JSON.stringify(list.body)).not.toContain(key);

    const row = await env.DB.prepare("SELECT * FROM api_keys WHERE id = ?").bind(r.body.id).first<Record<string, unknown>>();
    expect(row).not.toBeNull();
    expect(row!.key_hash).toBe(await sha256Hex(key));
    expect(row!.key_hash).toMatch(/^[0-9a-f]{64}$/);
    for (const value of Object.values(row!)) expect(String(value)).not.toContain(key);

    // The audit trail of the creation does not leak it either.
    const audit = await env.DB.prepare("SELECT * FROM audit_log WHERE target_id = ?").bind(r.body.id).all<Record<string, unknown>>();
    expect(audit.results.map((a) => a.action)).toEqual(["api_key.created"]);
    expect(JSON.stringify(audit.results)).not.toContain(key);
  });

  it("two keys are different", async () => {
    const a = await createApiKey();
    const b = await createApiKey();
    expect(a.key).not.toBe(b.key);
    expect(a.id).not.toBe(b.id);
  });

  it("rejects unknown scopes and a missing name with 400", async () => {
    const bad = await api("POST", "/admin/api-keys", { body: { name: "x", scopes: ["admin:everything"] } });
    expectProblem(bad, 400);
    expect(bad.body.errors.map((e: any) => e.path)).toContain("scopes.0");
    const noName = await api("POST", "/admin/api-keys", { body: { scopes: ["usage:write"] } });
    expectProblem(noName, 400);
    expect(noName.body.errors.map((e: any) => e.path)).toContain("name");
  });

  it("an API key authenticates but may not call admin, catalogue or read routes (403)", async () => {
    const { key } = await createApiKey();
    const auth = `Bearer ${key}`;
    for (const [method, path, body] of [
      ["POST", "/admin/api-keys", { name: "escalate" }],
      ["GET", "/admin/api-keys", undefined],
      ["POST", "/api/v1/plans", { name: "x", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "1" }] }],
      ["POST", "/api/v1/customers", { email: "k@example.com" }],
      ["GET", "/api/v1/customers", undefined],
      ["GET", "/api/v1/audit/search", undefined],
    ] as const) {
      const r = await api(method, path, { auth, body });
      expectProblem(r, 403);
    }
  });

  it("an unknown bek_ key → 401", async () => {
    const r = await api("GET", "/api/v1/customers", { auth: "Bearer bek_thisKeyWasNeverIssuedAAAAAAAAAAAAAAAAAAAAAAA" });
    expect401(r);
  });

  it("revoking takes effect at once in this isolate; list hides it unless includeRevoked", async () => {
    const { id, key } = await createApiKey();
    const auth = `Bearer ${key}`;
    // Accepted (403: authenticated, just not allowed here) and now cached by the isolate.
    expect((await api("GET", "/api/v1/customers", { auth })).status).toBe(403);

    const revoked = await api("DELETE", `/admin/api-keys/${id}`);
    expect(revoked.status).toBe(200);
    expect(revoked.body).toMatchObject({ id, revokedAt: expect.any(String) });
    expect(revoked.body).not.toHaveProperty("key");

    expect401(await api("GET", "/api/v1/customers", { auth }));

    const row = await env.DB.prepare("SELECT revoked_at FROM api_keys WHERE id = ?").bind(id).first<{ revoked_at: number | null }>();
    expect(row!.revoked_at).toEqual(expect.any(Number));

    const active = await api("GET", "/admin/api-keys");
    expect(active.body.data.map((k: any) => k.id)).not.toContain(id);
    const all = await api("GET", "/admin/api-keys?includeRevoked=true");
    expect(all.body.data.find((k: any) => k.id === id)?.revokedAt).toEqual(expect.any(String));

    const audit = await api("GET", `/api/v1/audit/search?target=${id}&action=api_key.revoked`);
    expect(audit.body.data).toHaveLength(1);
  });

  it("revoking twice → 409; unknown id → 404", async () => {
    const { id } = await createApiKey();
    expect((await api("DELETE", `/admin/api-keys/${id}`)).status).toBe(200);
    const again = await api("DELETE", `/admin/api-keys/${id}`);
    expectProblem(again, 409);
    const unknown = await api("DELETE", "/admin/api-keys/key_doesnotexist");
    expectProblem(unknown, 404);
  });

  it("concurrent revocations: exactly one succeeds, one audit row", async () => {
    const { id } = await createApiKey();
    const [a, b] = await Promise.all([api("DELETE", `/admin/api-keys/${id}`), api("DELETE", `/admin/api-keys/${id}`)]);
    expect([a.status, b.status].sort()).toEqual([200, 409]);
    const n = await env.DB.prepare("SELECT count(*) AS n FROM audit_log WHERE target_id = ? AND action = 'api_key.revoked'").bind(id).first<{ n: number }>();
    expect(n!.n).toBe(1);
  });
});
