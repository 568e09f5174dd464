import { describe, expect, it, vi } from "vitest";
import { env } from "cloudflare:workers";
import { api, createApiKey, createCustomer, createPlan, createSubscription, unique, servicesOf } from "../helpers";
import { canonicalJson, sha256Hex } from "../../src/lib/hash";
import { jobHandlers } from "../../queues/jobs";

// Storage is shared by all tests in this file: the tests that tamper with the chain restore it, and run last.

type Row = Record<string, any>;
const rowBySeq = (seq: number) => env.DB.prepare("SELECT * FROM audit_log WHERE seq = ?").bind(seq).first<Row>();
const maxSeq = async () => (await env.DB.prepare("SELECT max(seq) AS s FROM audit_log").first<{ s: number }>())!.s;
const verify = () => api("GET", "/api/v1/audit/verify-integrity", { as: "finance" });
const search = (q: string, as: "admin" | "finance" = "admin") => api("GET", `/api/v1/audit/search?${q}`, { as });

/**
 * What someone with write access to D1 but without the audit key can do after changing a row: recompute every
 * unkeyed hash the row carries (the old SHA-256 chain's `hash`, and any per-row MAC column, which without the key
 * can only be guessed).
 */
async function rehashWithoutKey(r: Row): Promise<Row> {
  const out = { ...r };
  if (out.prev_hash != null) {
    out.hash = await sha256Hex(
      out.prev_hash +
        canonicalJson({ seq: out.seq, id: out.id, at: out.at, actor: out.actor, actorRole: out.actor_role, action: out.action, targetType: out.target_type, targetId: out.target_id, requestId: out.request_id, before: out.before, after: out.after, reason: out.reason, prevHash: out.prev_hash }),
    );
  }
  if ("mac" in out) out.mac = await sha256Hex(canonicalJson({ ...out, mac: null, chain: null }));
  return out;
}

async function rowsFrom(seq: number): Promise<Row[]> {
  return (await env.DB.prepare("SELECT * FROM audit_log WHERE seq >= ? ORDER BY seq").bind(seq).all<Row>()).results;
}

/** Puts `rows` back exactly as they were, replacing whatever is at and after the first one's seq. */
async function restoreFrom(rows: Row[]) {
  await env.DB.prepare("DELETE FROM audit_log WHERE seq >= ?").bind(rows[0]!.seq).run();
  for (const r of rows) await reinsert(r);
}

async function reinsert(row: Row) {
  const cols = Object.keys(row);
  await env.DB.prepare(`INSERT INTO audit_log (${cols.map((c) => `"${c}"`).join(", ")}) VALUES (${cols.map(() => "?").join(", ")})`)
    .bind(...cols.map((c) => row[c]))
    .run();
}

describe("audit trail", () => {
  it("customer create and update each write one row with actor, request id, before and after", async () => {
    const c = await api("POST", "/api/v1/customers", { as: "support", body: { email: `${unique("a")}@example.com`, name: "Ada" } });
    expect(c.status).toBe(201);
    const created = await search(`target=${c.body.id}`);
    expect(created.status).toBe(200);
    expect(created.body.data).toHaveLength(1);
    expect(created.body.data[0]).toMatchObject({
      action: "customer.created",
      targetType: "customer",
      targetId: c.body.id,
      actor: "test-support",
      actorRole: "support",
      requestId: c.headers.get("x-request-id"),
      before: null,
      after: { id: c.body.id, name: "Ada" },
      hash: expect.stringMatching(/^[0-9a-f]{64}$/),
    });

    const u = await api("PATCH", `/api/v1/customers/${c.body.id}`, { body: { name: "Ada L." } });
    expect(u.status).toBe(200);
    const rows = (await search(`target=${c.body.id}`)).body.data;
    expect(rows.map((r: any) => r.action)).toEqual(["customer.updated", "customer.created"]);
    expect(rows[0]).toMatchObject({ actor: "test-admin", before: { name: "Ada" }, after: { name: "Ada L." } });
  });

  it("plans, plan versions, subscriptions and API keys are audited", async () => {
    const plan = await createPlan();
    const v2 = await api("POST", `/api/v1/plans/${plan.id}/versions`, {
      body: { name: "Pro 2", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "39" }] },
    });
    expect(v2.status).toBe(201);
    const sub = await createSubscription({});
    const key = await createApiKey();
    await api("DELETE", `/admin/api-keys/${key.id}`);

    expect((await search(`target=${plan.id}`)).body.data.map((r: any) => r.action)).toEqual(["plan.version_created", "plan.created"]);
    expect((await search(`target=${plan.id}&action=plan.version_created`)).body.data[0]).toMatchObject({ before: { version: 1 }, after: { version: 2 } });
    expect((await search(`target=${sub.id}`)).body.data.map((r: any) => r.action)).toEqual(["subscription.created"]);
    expect((await search(`target=${key.id}`)).body.data.map((r: any) => r.action)).toEqual(["api_key.revoked", "api_key.created"]);
  });

  it("a rejected request writes no audit row", async () => {
    const before = await maxSeq();
    expect((await api("POST", "/api/v1/customers", { body: { email: "nope" } })).status).toBe(400);
    expect((await api("POST", "/api/v1/plans", { body: { name: "x", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "-1" }] } })).status).toBe(422);
    expect((await api("PATCH", "/api/v1/customers/cus_missing", { body: { name: "x" } })).status).toBe(404);
    expect(await maxSeq()).toBe(before);
  });

  it("searches by action, user, target and time; newest first", async () => {
    const mark = new Date(Date.now() - 1).toISOString();
    const a = await api("POST", "/api/v1/customers", { as: "finance", body: { email: `${unique("s")}@example.com` } });
    const b = await api("POST", "/api/v1/customers", { as: "finance", body: { email: `${unique("s")}@example.com` } });

    const byUser = await search("user=test-finance&limit=200");
    expect(byUser.body.data.length).toBeGreaterThanOrEqual(2);
    expect(byUser.body.data.every((r: any) => r.actor === "test-finance")).toBe(true);
    const seqs = byUser.body.data.map((r: any) => r.seq);
    expect(seqs).toEqual([...seqs].sort((x: number, y: number) => y - x));

    const byAction = await search("action=customer.created&user=test-finance&limit=200");
    const ids = byAction.body.data.map((r: any) => r.targetId);
    expect(ids.indexOf(b.body.id)).toBeLessThan(ids.indexOf(a.body.id));
    expect(ids.indexOf(a.body.id)).toBeGreaterThanOrEqual(0);
    expect(byAction.body.data.every((r: any) => r.action === "customer.created")).toBe(true);

    expect((await search("action=no.such.action")).body.data).toEqual([]);

    const since = await search(`from=${encodeURIComponent(mark)}&user=test-finance`);
    expect(since.body.data.map((r: any) => r.targetId).sort()).toEqual([a.body.id, b.body.id].sort());

    const future = new Date(Date.now() + 86_400_000).toISOString();
    expect((await search(`from=${encodeURIComponent(future)}`)).body.data).toEqual([]);
    expect((await search(`to=${encodeURIComponent("2000-01-01T00:00:00Z")}`)).body.data).toEqual([]);
    // A bare date as `to` includes that whole day.
    const today = new Date().toISOString().slice(0, 10);
    const wholeDay = await search(`to=${today}&target=${a.body.id}`);
    expect(wholeDay.body.data).toHaveLength(1);
    const window = await search(`from=${encodeURIComponent(mark)}&to=${encodeURIComponent(new Date(Date.now() + 1000).toISOString())}&target=${b.body.id}`);
    expect(window.body.data).toHaveLength(1);
  });

  it("rejects bad search parameters with 400 naming the field", async () => {
    const badDate = await search("from=yesterday");
    expect(badDate.status).toBe(400);
    expect(badDate.body.errors.map((e: any) => e.path)).toContain("from");
    const badLimit = await search("limit=0");
    expect(badLimit.status).toBe(400);
    expect(badLimit.body.errors.map((e: any) => e.path)).toContain("limit");
    const unknown = await search("startingAfter=aud_doesnotexist");
    expect(unknown.status).toBe(400);
    expect(unknown.headers.get("content-type")).toBe("application/problem+json");
    expect(unknown.body.errors).toEqual([expect.objectContaining({ path: "startingAfter" })]);
  });

  it("pages with startingAfter visit every matching entry once, in seq order", async () => {
    for (let i = 0; i < 5; i++) await createCustomer();
    const all = (await search("action=customer.created&limit=200")).body.data.map((r: any) => r.id);
    expect(all.length).toBeGreaterThanOrEqual(5);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: any = await search(`action=customer.created&limit=2${cursor ? `&startingAfter=${cursor}` : ""}`);
      expect(page.status).toBe(200);
      expect(page.body.data.length).toBeLessThanOrEqual(2);
      seen.push(...page.body.data.map((r: any) => r.id));
      expect(page.body.nextCursor).toBe(page.body.hasMore ? page.body.data[page.body.data.length - 1].id : null);
      cursor = page.body.nextCursor;
      pages++;
    } while (cursor && pages < 100);
    expect(seen).toEqual(all);
    expect(new Set(seen).size).toBe(seen.length);
  });

  it("viewer and support get 403 on audit routes", async () => {
    for (const role of ["viewer", "support"] as const) {
      expect((await api("GET", "/api/v1/audit/search", { as: role })).status).toBe(403);
      expect((await api("GET", "/api/v1/audit/verify-integrity", { as: role })).status).toBe(403);
    }
    expect((await api("GET", "/api/v1/audit/search", { as: null })).status).toBe(401);
  });

  it("concurrent writers keep one gap-free chain", async () => {
    const before = await maxSeq();
    const results = await Promise.all(Array.from({ length: 6 }, () => api("POST", "/api/v1/customers", { body: { email: `${unique("cc")}@example.com` } })));
    expect(results.map((r) => r.status)).toEqual(Array(6).fill(201));
    expect(await maxSeq()).toBe(before + 6);
    for (const r of results) expect((await search(`target=${r.body.id}`)).body.data).toHaveLength(1);
    const v = await verify();
    expect(v.body).toMatchObject({ valid: true, firstBrokenRow: null });
  });

  it("verify-integrity is valid on a clean chain and covers every row", async () => {
    const v = await verify();
    expect(v.status).toBe(200);
    expect(v.body.valid).toBe(true);
    expect(v.body.firstBrokenRow).toBeNull();
    expect(v.body.checked).toBe(await maxSeq());
    const last = await rowBySeq(await maxSeq());
    expect(v.body.headHash).toBe(last!.chain);
    expect(v.body.head).toEqual({ seq: last!.seq, chain: last!.chain });
  });

  // ---- the tests below change the chain; each restores it before returning ----

  it("a tampered `after` column is reported at that row, and repairing it makes the chain valid again", async () => {
    const seq = Math.max(2, (await maxSeq()) - 3);
    const original = (await rowBySeq(seq))!;
    const tampered = JSON.stringify({ ...JSON.parse(original.after ?? "{}"), email: "attacker@example.com" });
    await env.DB.prepare("UPDATE audit_log SET after = ? WHERE seq = ?").bind(tampered, seq).run();
    try {
      const v = await verify();
      expect(v.status).toBe(200);
      expect(v.body.valid).toBe(false);
      expect(v.body.checked).toBe(seq - 1);
      expect(v.body.firstBrokenRow).toMatchObject({ seq, id: original.id, problem: expect.stringContaining("MAC") });
    } finally {
      await env.DB.prepare("UPDATE audit_log SET after = ? WHERE seq = ?").bind(original.after, seq).run();
    }
    expect((await verify()).body.valid).toBe(true);
  });

  it("changing the actor of a row is detected too", async () => {
    const seq = 1;
    const original = (await rowBySeq(seq))!;
    await env.DB.prepare("UPDATE audit_log SET actor = 'someone-else' WHERE seq = ?").bind(seq).run();
    try {
      const v = await verify();
      expect(v.body).toMatchObject({ valid: false, firstBrokenRow: { seq: 1 } });
    } finally {
      await env.DB.prepare("UPDATE audit_log SET actor = ? WHERE seq = ?").bind(original.actor, seq).run();
    }
    expect((await verify()).body.valid).toBe(true);
  });

  it("a replaced chain value is reported at its row", async () => {
    const seq = Math.max(2, (await maxSeq()) - 2);
    const original = (await rowBySeq(seq))!;
    // Without the key nobody can compute a chain value; any other value breaks the link at this row.
    await env.DB.prepare("UPDATE audit_log SET chain = ? WHERE seq = ?").bind("e".repeat(64), seq).run();
    try {
      const v = await verify();
      expect(v.body.valid).toBe(false);
      expect(v.body.firstBrokenRow.seq).toBe(seq);
    } finally {
      await env.DB.prepare("UPDATE audit_log SET chain = ? WHERE seq = ?").bind(original.chain, seq).run();
    }
    expect((await verify()).body.valid).toBe(true);
  });

  it("a deleted middle row is reported as missing", async () => {
    const seq = Math.floor((await maxSeq()) / 2);
    const original = (await rowBySeq(seq))!;
    await env.DB.prepare("DELETE FROM audit_log WHERE seq = ?").bind(seq).run();
    try {
      const v = await verify();
      expect(v.body.valid).toBe(false);
      expect(v.body.checked).toBe(seq - 1);
      expect(v.body.firstBrokenRow).toMatchObject({ seq, id: null, problem: expect.stringContaining("missing") });
    } finally {
      await reinsert(original);
    }
    expect((await verify()).body.valid).toBe(true);
  });

  it("a deleted-and-renumbered row is caught by the broken link", async () => {
    // Remove row `seq` and shift the later rows down so the sequence has no gap: prev_hash no longer matches.
    const top = await maxSeq();
    const seq = top - 1;
    const removed = (await rowBySeq(seq))!;
    const last = (await rowBySeq(top))!;
    await env.DB.batch([
      env.DB.prepare("DELETE FROM audit_log WHERE seq = ?").bind(seq),
      env.DB.prepare("UPDATE audit_log SET seq = ? WHERE seq = ?").bind(seq, top),
    ]);
    try {
      const v = await verify();
      expect(v.body.valid).toBe(false);
      expect(v.body.firstBrokenRow.seq).toBe(seq);
    } finally {
      await env.DB.prepare("DELETE FROM audit_log WHERE seq = ?").bind(seq).run();
      await reinsert(removed);
      await reinsert(last);
    }
    expect((await verify()).body.valid).toBe(true);
  });

  it("the weekly verification copies the anchor's head to R2, and verify-integrity checks the chain against it", async () => {
    await createCustomer();
    const reportKey = `reports/audit/anchor-${Date.now()}.json`;
    expect(await jobHandlers["audit.verify"]({ type: "audit.verify", reportKey }, servicesOf())).toEqual({ status: "done" });
    const checkpoint = (await (await env.ARCHIVE.get("audit/anchor/latest.json"))!.json()) as { seq: number; chain: string; at: string };
    const top = await maxSeq();
    expect(checkpoint).toMatchObject({ seq: top, chain: (await rowBySeq(top))!.chain });
    const report = (await (await env.ARCHIVE.get(reportKey))!.json()) as any;
    expect(report).toMatchObject({ valid: true, head: { seq: top }, checkpointWritten: { seq: top } });
    const v = await verify();
    expect(v.body).toMatchObject({ valid: true, head: { seq: top, chain: checkpoint.chain }, checkpoint: { seq: top, chain: checkpoint.chain } });
  });

  it("the weekly verification of a chain longer than one invocation's share goes on in task messages and reports the whole chain; a change in a later stretch is found", async () => {
    const { runWeeklyVerification } = await import("../../src/modules/audit/verify");
    const { taskHandlers } = await import("../../queues/tasks");
    for (let i = 0; i < 6; i++) await createCustomer();
    const sent: any[] = [];
    const e = { ...env, TASK_QUEUE: { send: async (b: unknown) => void sent.push(b), sendBatch: async () => undefined } } as unknown as Env;
    const runAll = async (reportKey: string) => {
      const { messageServicesOf } = await import("../helpers");
      const first = await runWeeklyVerification(messageServicesOf({ TASK_QUEUE: e.TASK_QUEUE }), reportKey, Date.now(), 4);
      let invocations = 1;
      for (let m = sent.shift(); m; m = sent.shift()) {
        expect(m.type).toBe("audit.verify_continue");
        const { messageServicesOf } = await import("../helpers");
        await taskHandlers["audit.verify_continue"](m, messageServicesOf({ TASK_QUEUE: e.TASK_QUEUE }));
        invocations++;
      }
      return { first, invocations, report: (await (await env.ARCHIVE.get(reportKey))!.json()) as any };
    };
    const top = await maxSeq();
    const ok = await runAll(`reports/audit/stretches-${Date.now()}.json`);
    expect(ok.first).toBeNull(); // the first invocation did not finish: the chain is longer than 4 rows
    expect(ok.invocations).toBe(Math.ceil(top / 4) + (top % 4 === 0 ? 1 : 0));
    expect(ok.report).toMatchObject({ valid: true, checked: top, head: { seq: top }, checkpointWritten: { seq: top } });

    // A row near the end changed behind the service's back: found by a later stretch, with its seq.
    const target = (await maxSeq()) - 1;
    const row = (await rowBySeq(target))!;
    await env.DB.prepare("UPDATE audit_log SET reason = 'rewritten' WHERE seq = ?").bind(target).run();
    try {
      const bad = await runAll(`reports/audit/stretches-bad-${Date.now()}.json`);
      expect(bad.invocations).toBeGreaterThan(1);
      expect(bad.report).toMatchObject({ valid: false, brokenAt: target });
    } finally {
      await env.DB.prepare("UPDATE audit_log SET reason = ? WHERE seq = ?").bind(row.reason, target).run();
    }
  });

  it("of a chain longer than one request checks, the newest rows are checked: from the last intact weekly verification when recent, else from a stored value; full=true is refused", async () => {
    const { runWeeklyVerification, verifyIntegrity } = await import("../../src/modules/audit/verify");
    for (let i = 0; i < 4; i++) await createCustomer();
    expect((await verify()).body).toMatchObject({ valid: true, scope: "full", checkedFrom: 1 });
    // No weekly verification: the newest 3 rows, walked from the stored chain value before them to the anchor's head.
    await env.ARCHIVE.delete("audit/verify/last-full.json");
    const top = await maxSeq();
    expect(await verifyIntegrity(env, { maxRows: 3 })).toMatchObject({ ok: true, value: { valid: true, scope: "newest_rows", checkedFrom: top - 2, checked: 3, lastFullVerification: null } });
    const refused = await verifyIntegrity(env, { maxRows: 3, full: true });
    expect(refused.ok).toBe(false);
    expect(!refused.ok && refused.error).toMatchObject({ kind: "unprocessable", errors: [{ path: "full", message: "more than 3 rows to check in one request" }] });
    expect(!refused.ok && refused.error.detail).toMatch(/^the live audit chain has \d+ rows, more than the 3 one request checks/);
    // After a weekly run that found the chain intact, a check starts where it stopped when that is recent enough.
    const e = { ...env, TASK_QUEUE: { send: async () => undefined, sendBatch: async () => undefined } } as unknown as Env;
    const { messageServicesOf } = await import("../helpers");
    expect(await runWeeklyVerification(messageServicesOf({ TASK_QUEUE: e.TASK_QUEUE }), `reports/audit/full-${Date.now()}.json`, Date.now())).toMatchObject({ valid: true });
    const verifiedThrough = await maxSeq();
    await createCustomer();
    const since = (await maxSeq()) - verifiedThrough;
    expect(await verifyIntegrity(env, { maxRows: since + 1 })).toMatchObject({ ok: true, value: { valid: true, scope: "newest_rows", checkedFrom: verifiedThrough + 1, checked: since, lastFullVerification: { seq: verifiedThrough } } });
    // A newest row changed: found. The verified row's chain value rewritten: found at its seq.
    const last = await maxSeq();
    const row = (await rowBySeq(last))!;
    await env.DB.prepare("UPDATE audit_log SET reason = 'rewritten' WHERE seq = ?").bind(last).run();
    try {
      expect(await verifyIntegrity(env, { maxRows: since + 1 })).toMatchObject({ ok: true, value: { valid: false, brokenAt: last } });
      expect(await verifyIntegrity(env, { maxRows: 3 })).toMatchObject({ ok: true, value: { valid: false, brokenAt: last } });
    } finally {
      await env.DB.prepare("UPDATE audit_log SET reason = ? WHERE seq = ?").bind(row.reason, last).run();
    }
    const boundary = (await rowBySeq(verifiedThrough))!;
    await env.DB.prepare("UPDATE audit_log SET chain = ? WHERE seq = ?").bind("0".repeat(64), verifiedThrough).run();
    try {
      expect(await verifyIntegrity(env, { maxRows: since + 1 })).toMatchObject({ ok: true, value: { valid: false, brokenAt: verifiedThrough } });
    } finally {
      await env.DB.prepare("UPDATE audit_log SET chain = ? WHERE seq = ?").bind(boundary.chain, verifiedThrough).run();
    }
    expect(await verifyIntegrity(env, { maxRows: since + 1 })).toMatchObject({ ok: true, value: { valid: true } });
  });

  it("audited writes are sealed shortly after they commit, without a verification or a cron run", async () => {
    const c = await createCustomer();
    await vi.waitFor(async () => {
      const row = await env.DB.prepare("SELECT chain FROM audit_log WHERE target_id = ?").bind(c.id).first<{ chain: string | null }>();
      expect(row!.chain).toMatch(/^[0-9a-f]{64}$/);
    });
  });

  // ---- item 10: tampering by someone who can write to D1 but does not hold the audit key ----

  it("rewriting the newest row and recomputing its unkeyed hash is reported at that row", async () => {
    await createCustomer();
    expect((await verify()).body.valid).toBe(true);
    const seq = await maxSeq();
    const original = (await rowBySeq(seq))!;
    const forged = await rehashWithoutKey({ ...original, after: JSON.stringify({ ...JSON.parse(original.after ?? "{}"), email: "attacker@example.com" }) });
    await restoreFrom([forged]);
    try {
      const v = await verify();
      expect(v.status).toBe(200);
      expect(v.body).toMatchObject({ valid: false, ok: false, brokenAt: seq, checked: seq - 1, firstBrokenRow: { seq, id: original.id } });
      expect(v.body.reason).toMatch(/MAC/);
    } finally {
      await restoreFrom([original]);
    }
    expect((await verify()).body).toMatchObject({ valid: true, brokenAt: null });
  });

  it("deleting a middle row and renumbering and re-hashing every later row is reported at the deleted row's seq", async () => {
    for (let i = 0; i < 3; i++) await createCustomer();
    expect((await verify()).body.valid).toBe(true);
    const top = await maxSeq();
    const seq = top - 2;
    const originals = await rowsFrom(seq);
    // The attacker rebuilds the tail without the removed row, so the sequence has no gap and every unkeyed link holds.
    let prevHash = (await rowBySeq(seq - 1))!.hash;
    const rebuilt: Row[] = [];
    for (const r of originals.slice(1)) {
      const moved = await rehashWithoutKey({ ...r, seq: r.seq - 1, ...(r.prev_hash != null ? { prev_hash: prevHash } : {}) });
      prevHash = moved.hash;
      rebuilt.push(moved);
    }
    await restoreFrom(rebuilt);
    try {
      const v = await verify();
      expect(v.body).toMatchObject({ valid: false, ok: false, brokenAt: seq, firstBrokenRow: { seq } });
    } finally {
      await restoreFrom(originals);
    }
    expect((await verify()).body.valid).toBe(true);
  });

  it("deleting the newest rows (truncation) is reported at the first missing seq", async () => {
    for (let i = 0; i < 3; i++) await createCustomer();
    expect((await verify()).body.valid).toBe(true);
    const top = await maxSeq();
    const originals = await rowsFrom(top - 2);
    await env.DB.prepare("DELETE FROM audit_log WHERE seq >= ?").bind(top - 2).run();
    try {
      const v = await verify();
      expect(v.body).toMatchObject({ valid: false, ok: false, brokenAt: top - 2, checked: top - 3, firstBrokenRow: { seq: top - 2, id: null } });
      expect(v.body.reason).toMatch(/truncat|removed|missing/i);
    } finally {
      await restoreFrom(originals);
    }
    expect((await verify()).body.valid).toBe(true);
  });
});

