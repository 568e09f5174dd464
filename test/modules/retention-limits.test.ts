import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { dbOf } from "../../src/db/client";
import { commitWithAudit } from "../../src/platform/audit";
import { SYSTEM_ACTOR } from "../../src/platform/actor";
import { startRetentionRun } from "../../src/modules/retention/run";
import { sealAuditChain } from "../../src/modules/audit/verify";
import { api, messageServicesOf } from "../helpers";
import { drainTasks, invocationLog, recordingEnv } from "../scale";

// A retention run at large N under the limit wrapper (LIMITS=enforce): every message is one invocation of the tasks
// queue, and none grows with the number of rows past retention (docs/scale.md, "Storage and retention").

const DAY = 86_400_000;
const N = 3000;
const count = async (sql: string) => (await env.DB.prepare(sql).first<{ n: number }>())!.n;
const series = (n: number, select: string) => `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${n}) ${select}`;

describe("a retention run with thousands of rows of every kind", () => {
  it("archives them all in invocations whose cost does not grow with N", { timeout: 300_000 }, async () => {
    const old = Date.now() - 3 * 365 * DAY;
    await env.DB.prepare(
      series(N, `INSERT INTO events (id, type, object_type, object_id, customer_id, livemode, request_id, data, created_at)
        SELECT printf('evt_rl_%06d', i), 'invoice.paid', 'invoice', printf('inv_rl_%06d', i), 'cus_rl', 1, NULL, '{"object":{"id":"x"},"previousAttributes":null}', ?1 + i FROM n`),
    )
      .bind(old)
      .run();
    await env.DB.prepare(
      series(N, `INSERT INTO payments (id, invoice_id, customer_id, attempt, amount, currency, status, idempotency_key, created_at, updated_at)
        SELECT printf('pay_rl_%06d', i), printf('inv_rl_%06d', i), 'cus_rl', 1, 1000, 'USD', 'succeeded', printf('idem_rl_%06d', i), ?1 + i, ?1 + i FROM n`),
    )
      .bind(old)
      .run();
    const invoicesN = 1000;
    await env.DB.prepare(
      series(invoicesN, `INSERT INTO invoices (id, customer_id, subscription_id, status, billing_reason, currency, period_start, period_end, subtotal, discount, tax, total, amount_due, generation_key, finalized_at, created_at, updated_at)
        SELECT printf('inv_rl_%06d', i), 'cus_rl', 'sub_rl', 'paid', 'subscription_cycle', 'USD', ?1, ?1, 1000, 0, 0, 1000, 0, printf('rl:%d', i), ?1 + i, ?1 + i, ?1 + i FROM n`),
    )
      .bind(old)
      .run();
    await env.DB.prepare(
      series(2 * invoicesN, `INSERT INTO invoice_lines (id, invoice_id, position, kind, description, quantity, amount, period_start, period_end, computation)
        SELECT printf('il_rl_%06d', i), printf('inv_rl_%06d', (i + 1) / 2), i % 2, 'flat', 'Plan', '1', 500, ?1, ?1, '1 × 5.00' FROM n`),
    )
      .bind(old)
      .run();
    // Audit rows are written as the service writes them (a MAC each), then sealed into the chain.
    const auditN = 1500;
    for (let b = 0; b < auditN / 100; b++) {
      const entries = Array.from({ length: 100 }, (_, i) => ({ action: "test.retention", targetType: "test", targetId: `t_${b}_${i}` }));
      await commitWithAudit(dbOf(env), [], entries, { actor: SYSTEM_ACTOR, now: old + b });
    }
    await sealAuditChain(env);

    const rec = recordingEnv();
    const log = invocationLog();
    await startRetentionRun(messageServicesOf(rec.env), "api", Date.now());
    const messages = await drainTasks(rec);
    expect(messages).toBeGreaterThan(4);

    expect(await count("SELECT count(*) AS n FROM events")).toBe(0);
    expect(await count("SELECT count(*) AS n FROM payments")).toBe(0);
    expect(await count("SELECT count(*) AS n FROM invoice_lines")).toBe(0);
    expect(await count("SELECT count(*) AS n FROM audit_log")).toBe(1);
    expect(await count("SELECT coalesce(sum(rows), 0) AS n FROM retention_archives")).toBe(N + N + 2 * invoicesN + auditN - 1);
    expect((await api("GET", "/api/v1/audit/verify-integrity")).body).toMatchObject({ ok: true, archivedThrough: { seq: auditN - 1 } });
    expect((await api("GET", "/api/v1/invoices/inv_rl_000500")).body.lines).toHaveLength(2);

    const lines = log().filter((l) => l.invocation.startsWith("queue billing-tasks ("));
    expect(lines.length).toBe(messages);
    expect(lines.filter((l) => l.limitExceeded || l.error)).toEqual([]);
    const most = { d1Queries: Math.max(...lines.map((l) => l.d1Queries)), subrequests: Math.max(...lines.map((l) => l.subrequests)) };
    // 5 pages per message, each a select or two, one batch of 2–3 statements, 3 R2 calls (4 for audit): ~25 / ~20.
    console.log(JSON.stringify({ msg: "retention limits", messages, ...most }));
    expect(most.d1Queries).toBeLessThanOrEqual(40);
    expect(most.subrequests).toBeLessThanOrEqual(30);
  });
});
