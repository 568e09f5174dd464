import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import entry from "../../src/index";

// The full ExportedHandler signature, so handlers are called exactly as the runtime calls them (with a ctx).
const worker: Required<Pick<ExportedHandler<Env>, "fetch" | "queue" | "scheduled">> = entry;
import { signToken } from "../../src/http/auth";
import { sha256Hex } from "../../src/lib/hash";
import { api, runCron, unique } from "../helpers";

const count = async (sql: string, ...binds: unknown[]) => (await env.DB.prepare(sql).bind(...binds).first<{ n: number }>())!.n;
const customersWithEmail = (email: string) => count("SELECT count(*) AS n FROM customers WHERE email = ?", email);
const keyRow = (scopedKey: string) => env.DB.prepare("SELECT * FROM idempotency_keys WHERE scoped_key = ?").bind(scopedKey).first<Record<string, any>>();

function post(path: string, key: string, body: unknown, as: "admin" | "finance" | "support" | "viewer" | null = "admin", auth?: string) {
  return api("POST", path, { as, auth, body, headers: { "idempotency-key": key } });
}

describe("idempotency keys", () => {
  it("a replay returns the stored response with Idempotent-Replayed and creates nothing new", async () => {
    const key = unique("idem");
    const email = `${unique("replay")}@example.com`;
    const first = await post("/api/v1/customers", key, { email });
    expect(first.status).toBe(201);
    expect(first.headers.get("idempotent-replayed")).toBeNull();

    const second = await post("/api/v1/customers", key, { email });
    expect(second.status).toBe(201);
    expect(second.headers.get("idempotent-replayed")).toBe("true");
    expect(second.headers.get("content-type")).toMatch(/^application\/json/);
    expect(second.body).toEqual(first.body);
    // The replay is its own request: it gets its own request id.
    expect(second.headers.get("x-request-id")).toBeTruthy();
    expect(second.headers.get("x-request-id")).not.toBe(first.headers.get("x-request-id"));

    expect(await customersWithEmail(email)).toBe(1);
    expect(await count("SELECT count(*) AS n FROM audit_log WHERE target_id = ?", first.body.id)).toBe(1);
  });

  it("without a key the same body creates twice", async () => {
    const email = `${unique("nokey")}@example.com`;
    expect((await api("POST", "/api/v1/customers", { body: { email } })).status).toBe(201);
    expect((await api("POST", "/api/v1/customers", { body: { email } })).status).toBe(201);
    expect(await customersWithEmail(email)).toBe(2);
  });

  it("same key, different body → 422 naming Idempotency-Key; nothing created", async () => {
    const key = unique("idem");
    const a = `${unique("a")}@example.com`;
    const b = `${unique("b")}@example.com`;
    expect((await post("/api/v1/customers", key, { email: a })).status).toBe(201);
    const r = await post("/api/v1/customers", key, { email: b });
    expect(r.status).toBe(422);
    expect(r.headers.get("content-type")).toBe("application/problem+json");
    expect(r.body.errors).toEqual([expect.objectContaining({ path: "Idempotency-Key" })]);
    expect(await customersWithEmail(b)).toBe(0);
  });

  it("same key, different path → 422", async () => {
    const key = unique("idem");
    expect((await post("/api/v1/customers", key, { email: `${unique("p")}@example.com` })).status).toBe(201);
    const plansBefore = await count("SELECT count(*) AS n FROM plans");
    const r = await post("/api/v1/plans", key, { name: "P", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "5" }] });
    expect(r.status).toBe(422);
    expect(r.body.errors[0].path).toBe("Idempotency-Key");
    expect(await count("SELECT count(*) AS n FROM plans")).toBe(plansBefore);
  });

  it("same key, same body, different method (PATCH vs POST) → 422", async () => {
    const key = unique("idem");
    const c = await api("POST", "/api/v1/customers", { body: { email: `${unique("m")}@example.com` } });
    expect((await api("PATCH", `/api/v1/customers/${c.body.id}`, { body: { name: "X" }, headers: { "idempotency-key": key } })).status).toBe(200);
    const r = await api("PATCH", `/api/v1/customers/${c.body.id}`, { body: { name: "Y" }, headers: { "idempotency-key": key } });
    expect(r.status).toBe(422);
    expect((await api("GET", `/api/v1/customers/${c.body.id}`)).body.name).toBe("X");
  });

  it("concurrent identical requests create exactly one; the other is a 409 or a replay", async () => {
    const key = unique("idem");
    const email = `${unique("race")}@example.com`;
    const results = await Promise.all([post("/api/v1/customers", key, { email }), post("/api/v1/customers", key, { email })]);
    const created = results.filter((r) => r.status === 201 && r.headers.get("idempotent-replayed") !== "true");
    expect(created).toHaveLength(1);
    const other = results.find((r) => r !== created[0])!;
    if (other.status === 409) {
      expect(other.headers.get("retry-after")).toBe("1");
      expect(other.headers.get("content-type")).toBe("application/problem+json");
    } else {
      expect(other.status).toBe(201);
      expect(other.headers.get("idempotent-replayed")).toBe("true");
      expect(other.body.id).toBe(created[0]!.body.id);
    }
    expect(await customersWithEmail(email)).toBe(1);
    // Afterwards, a retry is a replay of the one that ran.
    const retry = await post("/api/v1/customers", key, { email });
    expect(retry.headers.get("idempotent-replayed")).toBe("true");
    expect(retry.body.id).toBe(created[0]!.body.id);
  });

  it("a key still in flight → 409 with Retry-After, and is not overwritten", async () => {
    const key = unique("idem");
    const body = JSON.stringify({ email: `${unique("fl")}@example.com` });
    const now = Date.now();
    const hash = await sha256Hex(`POST /api/v1/customers\n${body}`);
    await env.DB.prepare(
      "INSERT INTO idempotency_keys (scoped_key, request_hash, state, locked_until, created_at, expires_at) VALUES (?, ?, 'in_flight', ?, ?, ?)",
    )
      .bind(`test-admin:${key}`, hash, now + 60_000, now, now + 86_400_000)
      .run();
    const r = await api("POST", "/api/v1/customers", { rawBody: body, headers: { "idempotency-key": key } });
    expect(r.status).toBe(409);
    expect(r.headers.get("retry-after")).toBe("1");
    expect((await keyRow(`test-admin:${key}`))!.state).toBe("in_flight");
  });

  it("an abandoned in-flight key (lock expired) is taken over by the same request", async () => {
    const key = unique("idem");
    const email = `${unique("ab")}@example.com`;
    const body = JSON.stringify({ email });
    const now = Date.now();
    const hash = await sha256Hex(`POST /api/v1/customers\n${body}`);
    await env.DB.prepare(
      "INSERT INTO idempotency_keys (scoped_key, request_hash, state, locked_until, created_at, expires_at) VALUES (?, ?, 'in_flight', ?, ?, ?)",
    )
      .bind(`test-admin:${key}`, hash, now - 1, now - 120_000, now + 86_400_000)
      .run();
    const r = await api("POST", "/api/v1/customers", { rawBody: body, headers: { "idempotency-key": key } });
    expect(r.status).toBe(201);
    expect(await customersWithEmail(email)).toBe(1);
    expect((await keyRow(`test-admin:${key}`))!.state).toBe("done");
  });

  it("an abandoned in-flight key with another body is still a 422", async () => {
    const key = unique("idem");
    const now = Date.now();
    await env.DB.prepare(
      "INSERT INTO idempotency_keys (scoped_key, request_hash, state, locked_until, created_at, expires_at) VALUES (?, ?, 'in_flight', ?, ?, ?)",
    )
      .bind(`test-admin:${key}`, "0".repeat(64), now - 1, now - 120_000, now + 86_400_000)
      .run();
    const r = await post("/api/v1/customers", key, { email: `${unique("x")}@example.com` });
    expect(r.status).toBe(422);
  });

  it("an expired key is forgotten: the same key runs the request afresh", async () => {
    const key = unique("idem");
    const now = Date.now();
    await env.DB.prepare(
      "INSERT INTO idempotency_keys (scoped_key, request_hash, state, locked_until, response_status, response_body, response_content_type, created_at, expires_at) VALUES (?, ?, 'done', ?, 201, '{\"id\":\"cus_stale\"}', 'application/json', ?, ?)",
    )
      .bind(`test-admin:${key}`, "f".repeat(64), now - 90_000_000, now - 90_000_000, now - 3_600_000)
      .run();
    const email = `${unique("exp")}@example.com`;
    const r = await post("/api/v1/customers", key, { email });
    expect(r.status).toBe(201);
    expect(r.headers.get("idempotent-replayed")).toBeNull();
    expect(r.body.id).not.toBe("cus_stale");
    expect(await customersWithEmail(email)).toBe(1);
    const row = await keyRow(`test-admin:${key}`);
    expect(row!.expires_at).toBeGreaterThan(now);
  });

  it("keys are per actor: another role or another subject with the same key is independent", async () => {
    const key = unique("idem");
    const email = `${unique("actor")}@example.com`;
    const admin = await post("/api/v1/customers", key, { email });
    const finance = await post("/api/v1/customers", key, { email }, "finance");
    const otherAdminToken = await signToken(env, "another-admin", "admin");
    const otherAdmin = await post("/api/v1/customers", key, { email }, null, `Bearer ${otherAdminToken}`);
    for (const r of [admin, finance, otherAdmin]) {
      expect(r.status).toBe(201);
      expect(r.headers.get("idempotent-replayed")).toBeNull();
    }
    expect(new Set([admin.body.id, finance.body.id, otherAdmin.body.id]).size).toBe(3);
    expect(await customersWithEmail(email)).toBe(3);
    // …and another actor's different body under the same key is not a 422 either.
    const support = await post("/api/v1/customers", key, { email: `${unique("s")}@example.com` }, "support");
    expect(support.status).toBe(201);
  });

  it("a 401 is not stored", async () => {
    const key = unique("idem");
    const email = `${unique("u")}@example.com`;
    const denied = await post("/api/v1/customers", key, { email }, null, "Bearer not-a-token");
    expect(denied.status).toBe(401);
    const anonymous = await post("/api/v1/customers", key, { email }, null);
    expect(anonymous.status).toBe(401);
    expect(await count("SELECT count(*) AS n FROM idempotency_keys WHERE scoped_key LIKE ?", `%:${key}`)).toBe(0);
  });

  it("a 403 is not stored: the same actor later gets a fresh decision", async () => {
    const key = unique("idem");
    const r = await post("/api/v1/customers", key, { email: `${unique("f")}@example.com` }, "viewer");
    expect(r.status).toBe(403);
    expect(await keyRow(`test-viewer:${key}`)).toBeNull();
    const again = await post("/api/v1/customers", key, { email: `${unique("f")}@example.com` }, "viewer");
    expect(again.status).toBe(403);
    expect(again.headers.get("idempotent-replayed")).toBeNull();
  });

  it("a validation 400 is stored and replays as 400", async () => {
    const key = unique("idem");
    const body = { email: "not-an-email" };
    const first = await post("/api/v1/customers", key, body);
    expect(first.status).toBe(400);
    expect(first.body.errors.map((e: any) => e.path)).toContain("email");
    const second = await post("/api/v1/customers", key, body);
    expect(second.status).toBe(400);
    expect(second.headers.get("idempotent-replayed")).toBe("true");
    expect(second.headers.get("content-type")).toBe("application/problem+json");
    expect(second.body.errors).toEqual(first.body.errors);
    expect(second.body.detail).toBe(first.body.detail);
  });

  it("a 422 from the service replays as 422, even after the cause is fixed", async () => {
    const key = unique("idem");
    const body = { customerId: "cus_notyet", planId: "plan_notyet" };
    const first = await post("/api/v1/subscriptions", key, body);
    expect(first.status).toBe(422);
    const second = await post("/api/v1/subscriptions", key, body);
    expect(second.status).toBe(422);
    expect(second.headers.get("idempotent-replayed")).toBe("true");
  });

  it("an over-long key → 400 naming Idempotency-Key, nothing created", async () => {
    const email = `${unique("long")}@example.com`;
    const r = await post("/api/v1/customers", "k".repeat(256), { email });
    expect(r.status).toBe(400);
    expect(r.body.errors[0].path).toBe("Idempotency-Key");
    expect(await customersWithEmail(email)).toBe(0);
  });

  it("GET requests ignore the header", async () => {
    const key = unique("idem");
    const r = await api("GET", "/api/v1/customers", { headers: { "idempotency-key": key } });
    expect(r.status).toBe(200);
    expect(await count("SELECT count(*) AS n FROM idempotency_keys WHERE scoped_key LIKE ?", `%:${key}`)).toBe(0);
  });

  it("the daily cron purges expired keys and keeps live ones", async () => {
    const now = Date.now();
    const expired = unique("expired");
    const live = unique("live");
    const insert = env.DB.prepare(
      "INSERT INTO idempotency_keys (scoped_key, request_hash, state, locked_until, response_status, response_body, created_at, expires_at) VALUES (?, ?, 'done', ?, 201, '{}', ?, ?)",
    );
    await env.DB.batch([
      insert.bind(`test-admin:${expired}`, "a".repeat(64), now - 100_000_000, now - 100_000_000, now - 1_000),
      insert.bind(`test-admin:${live}`, "b".repeat(64), now, now, now + 86_400_000),
    ]);
    await runCron("0 3 * * *", { scheduledTime: now });
    expect(await keyRow(`test-admin:${expired}`)).toBeNull();
    expect(await keyRow(`test-admin:${live}`)).not.toBeNull();
    expect(await count("SELECT count(*) AS n FROM idempotency_keys WHERE expires_at < ?", now)).toBe(0);
  });
});

describe("a request that died after committing", () => {
  it("is never applied twice: its change's batch marked the key committed, so a retry gets 409, not a second object", async () => {
    const key = `crash-${Date.now()}`;
    const body = { email: `${key}@example.com`, currency: "USD" };
    const first = await api("POST", "/api/v1/customers", { body, headers: { "idempotency-key": key } });
    expect(first.status).toBe(201);
    // Simulate the crash: the response was never stored and the lock ran out.
    await env.DB.prepare("UPDATE idempotency_keys SET state = 'committed', response_status = NULL, response_body = NULL, locked_until = 0 WHERE scoped_key LIKE ?").bind(`%:${key}`).run();
    const retry = await api("POST", "/api/v1/customers", { body, headers: { "idempotency-key": key } });
    expect(retry.status).toBe(409);
    expect(retry.body.detail).toContain("applied");
    const count = await env.DB.prepare("SELECT count(*) AS n FROM customers WHERE email = ?").bind(body.email).first<{ n: number }>();
    expect(count!.n).toBe(1);
  });

  it("marks the key committed in the change's own batch, and not when the batch fails", async () => {
    const { dbOf } = await import("../../src/db/client");
    const { commitWithAudit } = await import("../../src/platform/audit");
    const { customers } = await import("../../src/db/schema");
    const db = dbOf(env);
    const now = Date.now();
    const insertKey = (k: string) =>
      env.DB.prepare("INSERT INTO idempotency_keys (scoped_key, request_hash, state, locked_until, created_at, expires_at) VALUES (?, 'h', 'in_flight', ?, ?, ?)").bind(k, now + 60_000, now, now + 86_400_000).run();
    const stateOf = async (k: string) => (await env.DB.prepare("SELECT state FROM idempotency_keys WHERE scoped_key = ?").bind(k).first<{ state: string }>())!.state;
    const actor = { id: "test", kind: "system" as const, role: "system" as const, scopes: [] };
    const row = (id: string) => ({ id, email: `${id}@example.com`, currency: "USD", metadata: {}, taxExempt: false, createdAt: now, updatedAt: now });

    await insertKey("t:ok");
    await commitWithAudit(db, [db.insert(customers).values(row(`cus_ok${now}`))], [{ action: "test.done", targetType: "t", targetId: "1" }], { actor, now, idempotencyKey: "t:ok" });
    expect(await stateOf("t:ok")).toBe("committed");

    await insertKey("t:fail");
    const dup = row(`cus_dup${now}`);
    await db.insert(customers).values(dup);
    await expect(commitWithAudit(db, [db.insert(customers).values(dup)], [{ action: "test.fail", targetType: "t", targetId: "1" }], { actor, now, idempotencyKey: "t:fail" })).rejects.toThrow();
    expect(await stateOf("t:fail")).toBe("in_flight");
  });
});

describe("authorization runs before a replay", () => {
  const asSubject = async (sub: string, role: "admin" | "finance" | "support" | "viewer") => `Bearer ${await signToken(env, sub, role)}`;

  it("a viewer token with the admin's subject reusing the admin's key gets 403, never the stored 201 or the key's secret", async () => {
    const key = unique("idem");
    const body = { name: unique("k"), scopes: ["usage:write"] };
    const created = await post("/admin/api-keys", key, body, null, await asSubject("shared-subject", "admin"));
    expect(created.status).toBe(201);
    const replay = await post("/admin/api-keys", key, body, null, await asSubject("shared-subject", "viewer"));
    expect(replay.status).toBe(403);
    expect(replay.headers.get("idempotent-replayed")).toBeNull();
    expect(JSON.stringify(replay.body)).not.toContain("bek_");
    expect(JSON.stringify(replay.body)).not.toContain(created.body.id);
  });

  it("a finance token with the admin's subject reusing the key on an admin-only route gets 403", async () => {
    const key = unique("idem");
    const created = await post("/admin/config/reload", key, {}, null, await asSubject("shared-subject-2", "admin"));
    expect(created.status).toBe(200);
    const replay = await post("/admin/config/reload", key, {}, null, await asSubject("shared-subject-2", "finance"));
    expect(replay.status).toBe(403);
    expect(replay.headers.get("idempotent-replayed")).toBeNull();
  });

  it("a caller who may call the route still gets the replay (the role check is not a new request)", async () => {
    const key = unique("idem");
    const email = `${unique("fin")}@example.com`;
    const first = await post("/api/v1/customers", key, { email }, null, await asSubject("shared-subject-3", "admin"));
    const again = await post("/api/v1/customers", key, { email }, null, await asSubject("shared-subject-3", "finance"));
    expect(again.status).toBe(201);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(again.body.id).toBe(first.body.id);
    expect(await customersWithEmail(email)).toBe(1);
  });
});

describe("responses that carry a secret are never stored", () => {
  it("a repeated API key creation is a 409 naming the key, and D1 never holds the bek_ secret", async () => {
    const key = unique("idem");
    const body = { name: unique("secret"), scopes: ["usage:write"] };
    const first = await post("/admin/api-keys", key, body);
    expect(first.status).toBe(201);
    expect(first.body.key).toMatch(/^bek_/);

    const again = await post("/admin/api-keys", key, body);
    expect(again.status).toBe(409);
    expect(again.headers.get("content-type")).toBe("application/problem+json");
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(again.body.detail).toContain(first.body.id);
    expect(again.body.detail).toMatch(/shown only once/);
    expect(JSON.stringify(again.body)).not.toContain(first.body.key);

    const row = await keyRow(`test-admin:${key}`);
    expect(row!.state).toBe("done");
    expect(row!.response_status).toBe(409);
    expect(String(row!.response_body)).not.toContain("bek_");
    expect(String(row!.response_body)).toContain(first.body.id);
    const anywhere = await count("SELECT count(*) AS n FROM idempotency_keys WHERE response_body LIKE '%bek\\_%' ESCAPE '\\'");
    expect(anywhere).toBe(0);
    // Only one key was created.
    expect(await count("SELECT count(*) AS n FROM api_keys WHERE name = ?", body.name)).toBe(1);
  });
});

describe("every state-changing route is guarded, so its Idempotency-Key is honoured only after authorization", () => {
  it("each documented POST/PUT/PATCH/DELETE (but usage ingestion and Stripe webhooks) refuses an anonymous caller with 401 before anything else", async () => {
    const doc = (await api("GET", "/openapi.json", { as: null })).body;
    const operations: [string, string][] = [];
    for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, unknown>>)) {
      // Usage ingestion dedupes per event (also while its document path is doubled, /api/v1/usage/api/v1/usage).
      if (path.endsWith("/api/v1/usage") || path.startsWith("/webhooks/")) continue;
      for (const method of ["post", "put", "patch", "delete"]) if (item[method]) operations.push([method.toUpperCase(), path.replaceAll(/\{[^}]+\}/g, "x")]);
    }
    expect(operations.length).toBeGreaterThan(40);
    const key = unique("idem");
    for (const [method, path] of operations) {
      // No body at all: an unguarded route with a validated body would answer 400 first.
      const r = await api(method, path, { as: null, headers: { "idempotency-key": key } });
      expect([method, path, r.status]).toEqual([method, path, 401]);
    }
    expect(await count("SELECT count(*) AS n FROM idempotency_keys WHERE scoped_key LIKE ?", `%:${key}`)).toBe(0);
  });
});
