import { env } from "cloudflare:workers";
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { dbOf } from "../../src/db/client";
import { SYSTEM_ACTOR } from "../../src/platform/actor";
import { collectInvoice } from "../../src/modules/payments/collect";
import { SandboxGateway } from "../../src/gateways/sandbox";
import { SANDBOX_FAULTS_KEY } from "../../src/gateways";
import { dropSettingsCache } from "../../src/platform/settings";
import { TXN_PAGE, TXN_PAGES_PER_INVOCATION } from "../../src/modules/reconciliation/run";
import { MAX_BALANCE_TRANSACTIONS } from "../../src/gateways/types";
import { CRON } from "../../src/scheduled";
import { api, servicesOf, tokenFor, unique } from "../helpers";
import { deliver, drainTasks, fetchAs, invocationLog, recordingEnv, worker } from "../scale";

// Reconciliation runs (src/modules/reconciliation/run.ts) under the limit wrapper (LIMITS=enforce): a day paged
// through the tasks queue, a bounded share per invocation, finding what GET /reconciliation/stripe/{date} finds.
afterEach(() => vi.restoreAllMocks());

const quiet = { send: async () => undefined, sendBatch: async () => undefined } as unknown as Queue;
const at = (date: string, time = "12:00:00") => Date.parse(`${date}T${time}Z`);

/** A payment charged through the sandbox, then moved (with its ledger entry) to `date`. */
async function paid(date: string, opts: { amount?: string; time?: string; ledgerTime?: string } = {}) {
  const e = { PAYMENT_QUEUE: quiet, WEBHOOK_QUEUE: quiet };
  const customer = await api("POST", "/api/v1/customers", { body: { email: `${unique("rr")}@example.com`, currency: "USD" }, env: e });
  const plan = await api("POST", "/api/v1/plans", { body: { name: "Paid", currency: "USD", interval: "month", prices: [{ type: "flat", amount: opts.amount ?? "25.00" }] }, env: e });
  const sub = await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.body.id, planId: plan.body.id, paymentMethod: "pm_card_visa" }, env: e });
  expect(sub.status).toBe(201);
  const invoice = (await api("GET", `/api/v1/invoices?subscriptionId=${sub.body.id}`)).body.data[0];
  const outcome = await collectInvoice(servicesOf({ actor: SYSTEM_ACTOR, now: Date.now() }, { ...env, ...e } as Env), invoice.id, { attempt: 1, direct: false });
  expect(outcome.outcome).toBe("succeeded");
  const p = await env.DB.prepare("SELECT * FROM payments WHERE invoice_id = ?").bind(invoice.id).first<any>();
  await env.DB.prepare("UPDATE payments SET created_at = ?, updated_at = ? WHERE id = ?").bind(at(date, opts.time), at(date, opts.time), p.id).run();
  await env.DB.prepare("UPDATE sandbox_ledger SET created_at = ? WHERE id = ?").bind(opts.ledgerTime ? Date.parse(opts.ledgerTime) : at(date, opts.time), p.gateway_payment_id).run();
  return { id: p.id as string, gatewayId: p.gateway_payment_id as string, amount: p.amount as number, currency: p.currency as string, invoiceId: invoice.id as string };
}

/** A credit note on the payment's invoice (a refund through the gateway, or credit balance), moved with its refund to `date`. */
async function creditNote(payment: { invoiceId: string }, date: string, how: { refund: string } | { creditBalance: string }) {
  const invoice = (await api("GET", `/api/v1/invoices/${payment.invoiceId}`)).body;
  const amount = "refund" in how ? how.refund : how.creditBalance;
  const body = { invoiceId: payment.invoiceId, lines: [{ invoiceLineId: invoice.lines[0].id, amount }], reason: "order_change", ...("refund" in how ? { refund: { amount } } : { creditBalance: { amount } }) };
  const note = await api("POST", "/api/v1/credit-notes", { body, env: { PAYMENT_QUEUE: quiet, WEBHOOK_QUEUE: quiet } });
  expect(note.status, JSON.stringify(note.body)).toBe(201);
  const row = await env.DB.prepare("SELECT refund_id FROM credit_notes WHERE id = ?").bind(note.body.id).first<{ refund_id: string | null }>();
  await env.DB.prepare("UPDATE credit_notes SET created_at = ? WHERE id = ?").bind(at(date, "16:00:00"), note.body.id).run();
  if (row!.refund_id) {
    await env.DB.prepare("UPDATE refunds SET created_at = ? WHERE id = ?").bind(at(date, "16:00:00"), row!.refund_id).run();
    await env.DB.prepare("UPDATE sandbox_ledger SET created_at = ? WHERE id = (SELECT gateway_refund_id FROM refunds WHERE id = ?)").bind(at(date, "16:00:00"), row!.refund_id).run();
  }
  return note.body;
}

/** A refund on the sandbox and its local row, both dated `date`. */
async function refunded(payment: { id: string; gatewayId: string; currency: string }, amount: number, date: string) {
  const r = await new SandboxGateway(dbOf(env)).refund({ gatewayPaymentId: payment.gatewayId, amountMinor: amount, currency: payment.currency, idempotencyKey: unique("rk") });
  const gatewayRefundId = r.status === "failed" ? null : r.gatewayRefundId;
  await env.DB.prepare("UPDATE sandbox_ledger SET created_at = ? WHERE id = ?").bind(at(date, "15:00:00"), gatewayRefundId).run();
  const id = unique("re");
  await env.DB.prepare(
    "INSERT INTO refunds (id, payment_id, amount, currency, reason, status, gateway, gateway_refund_id, idempotency_key, notify, created_by, created_at, updated_at) VALUES (?, ?, ?, ?, 'requested_by_customer', 'succeeded', 'sandbox', ?, ?, 0, 'test', ?, ?)",
  )
    .bind(id, payment.id, amount, payment.currency, gatewayRefundId, unique("ik"), at(date, "15:00:00"), at(date, "15:00:00"))
    .run();
  return { id, gatewayRefundId };
}

/**
 * `n` copies of `template` (a paid payment of the day) and of its sandbox charge, in two statements, spread over the
 * day's first hours: the gateway lists them as it lists real charges (its ledger), D1 holds them as real payments.
 */
async function clonePaid(template: { id: string; gatewayId: string }, n: number, date: string) {
  const tag = unique("cl").replace(/_/g, "");
  const start = at(date, "00:00:00");
  const clone = async (table: string, set: Record<string, string>, id: string) => {
    const cols = (await env.DB.prepare(`PRAGMA table_info(${table})`).all<{ name: string }>()).results.map((c) => c.name);
    await env.DB.prepare(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) INSERT INTO ${table} (${cols.join(", ")}) SELECT ${cols.map((c) => set[c] ?? c).join(", ")} FROM n, ${table} WHERE id = ?3`)
      .bind(n, tag, id, start)
      .run();
  };
  await clone(
    "payments",
    { id: "printf('pay_%s_%06d', ?2, n.i)", attempt: "1000 + n.i", idempotency_key: "printf('%s-%06d', ?2, n.i)", gateway_payment_id: "printf('ch_%s_%06d', ?2, n.i)", created_at: "?4 + n.i * 1000", updated_at: "?4 + n.i * 1000" },
    template.id,
  );
  await clone("sandbox_ledger", { id: "printf('ch_%s_%06d', ?2, n.i)", idempotency_key: "printf('%s-%06d', ?2, n.i)", created_at: "?4 + n.i * 1000" }, template.gatewayId);
  return Array.from({ length: n }, (_, i) => ({ id: `pay_${tag}_${String(i + 1).padStart(6, "0")}`, gatewayId: `ch_${tag}_${String(i + 1).padStart(6, "0")}` }));
}

/** Starts a run through the API (recorded queues) and delivers its messages one per invocation until it is done. */
async function runDay(date: string, rec = recordingEnv()) {
  const r = await fetchAs(rec.env, "POST", "/api/v1/reconciliation/runs", { date, gateway: "sandbox" });
  expect(r.status).toBe(202);
  const steps = await drainTasks(rec);
  const run = await api("GET", `/api/v1/reconciliation/runs/${r.body.id}`);
  expect(run.status).toBe(200);
  return { run: run.body, steps };
}

const openOf = async (date: string) =>
  (await env.DB.prepare("SELECT id, kind, local_id AS localId, gateway_id AS gatewayId FROM discrepancies WHERE date = ? AND status = 'open' ORDER BY id").bind(date).all<any>()).results;

describe("a reconciliation run of a day larger than one invocation", () => {
  it("pages through 1,600 payments over several invocations inside the limits, then finds exactly the planted differences", { timeout: 180_000 }, async () => {
    const day = "2026-02-02";
    const template = await paid(day, { time: "00:00:00" });
    const n = 1_600;
    const clones = await clonePaid(template, n, day);

    const log = invocationLog();
    const clean = await runDay(day);
    expect(clean.run).toMatchObject({ status: "complete", phase: "finish", matched: n + 1, crossDayMatched: 0, resolved: 0, error: null, discrepancyCounts: { missing_at_gateway: 0, missing_locally: 0, amount_mismatch: 0, status_mismatch: 0 } });
    expect(clean.run.progress).toMatchObject({ transactions: n + 1, localChecked: 0, retrieved: 0, matched: n + 1, discrepancies: 0 });
    expect(clean.run.totals.USD.local).toEqual(clean.run.totals.USD.gateway);
    expect(clean.run.totals.USD.local.charges.amountMinor).toBe((n + 1) * 2500);
    expect(clean.run.totals.USD.difference.amountMinor).toBe(0);
    expect(clean.steps).toBeGreaterThanOrEqual(Math.ceil((n + 1) / (TXN_PAGE * TXN_PAGES_PER_INVOCATION)) + 2);
    const lines = log().filter((l) => l.invocation.startsWith("queue billing-tasks"));
    expect(lines.length).toBe(clean.steps);
    expect(lines.filter((l) => l.limitExceeded || l.error)).toEqual([]);
    expect(Math.max(...lines.map((l) => l.d1Queries))).toBeLessThanOrEqual(200);
    expect(Math.max(...lines.map((l) => l.subrequests))).toBeLessThanOrEqual(50);
    console.info(JSON.stringify({ msg: "reconciliation run measured", n, steps: clean.steps, d1Queries: lines.map((l) => l.d1Queries), subrequests: lines.map((l) => l.subrequests) }));
    expect(await openOf(day)).toEqual([]);

    // Planted: a payment the gateway lost, an amount that differs, a charge nobody recorded, a charge the gateway
    // books three days later (outside the listing's window: asked for, matched across days).
    const [lost, changed, late] = [clones[100]!, clones[900]!, clones[1500]!];
    await env.DB.prepare("DELETE FROM sandbox_ledger WHERE id = ?").bind(lost.gatewayId).run();
    await env.DB.prepare("UPDATE payments SET amount = 2600 WHERE id = ?").bind(changed.id).run();
    await env.DB.prepare("UPDATE sandbox_ledger SET created_at = ? WHERE id = ?").bind(at(day) + 3 * 86_400_000, late.gatewayId).run();
    const orphan = unique("ch");
    await env.DB.prepare("INSERT INTO sandbox_ledger (id, kind, idempotency_key, amount, currency, status, payment_method, created_at) VALUES (?, 'charge', ?, 4200, 'USD', 'succeeded', 'pm_card_visa', ?)").bind(orphan, unique("k"), at(day, "20:00:00")).run();

    const log2 = invocationLog();
    const planted = await runDay(day);
    expect(planted.run).toMatchObject({ status: "complete", matched: n - 1, crossDayMatched: 1, discrepancyCounts: { missing_at_gateway: 1, missing_locally: 1, amount_mismatch: 1, status_mismatch: 0 } });
    expect(planted.run.progress).toMatchObject({ localChecked: 2, retrieved: 2 });
    expect((await openOf(day)).map((d: any) => [d.kind, d.localId, d.gatewayId]).sort()).toEqual(
      [
        ["amount_mismatch", changed.id, changed.gatewayId],
        ["missing_at_gateway", lost.id, lost.gatewayId],
        ["missing_locally", null, orphan],
      ].sort(),
    );
    expect(planted.run.totals.USD.local.charges.amountMinor).toBe((n + 1) * 2500 + 100);
    expect(planted.run.totals.USD.gateway.charges.amountMinor).toBe((n + 1) * 2500 - 2 * 2500 + 4200);
    expect(log2().filter((l) => l.limitExceeded || l.error)).toEqual([]);
  });
});

describe("a gateway listing larger than one request", () => {
  it("GET answers 422 naming the run to start; the run records each of 10,001 unknown charges, every invocation inside the limits", { timeout: 180_000 }, async () => {
    const day = "2026-03-05";
    const n = MAX_BALANCE_TRANSACTIONS + 1;
    // Charges on the gateway's books with no local payment (each a finding: the listing's worst case).
    const tag = unique("gw").replace(/_/g, "");
    await env.DB.prepare(
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) INSERT INTO sandbox_ledger (id, kind, idempotency_key, amount, currency, status, payment_method, created_at) SELECT printf('ch_%s_%06d', ?2, n.i), 'charge', printf('%s-%06d', ?2, n.i), 700, 'USD', 'succeeded', 'pm_card_visa', ?3 + n.i * 1000 FROM n",
    )
      .bind(n, tag, at(day, "00:00:00"))
      .run();
    const rec = recordingEnv();
    const log = invocationLog();
    const refused = await fetchAs(rec.env, "GET", `/api/v1/reconciliation/stripe/${day}?gateway=sandbox`);
    expect(refused.status).toBe(422);
    expect(refused.body.errors).toEqual([{ path: "date", message: "too many balance transactions in the window" }]);
    expect(refused.body.detail).toContain("POST /api/v1/reconciliation/runs");

    const { run, steps } = await runDay(day, rec);
    expect(run).toMatchObject({ status: "complete", matched: 0, discrepancyCounts: { missing_locally: n, missing_at_gateway: 0 }, progress: { transactions: n } });
    expect(run.totals.USD.gateway.charges.amountMinor).toBe(700 * n);
    expect(run.totals.USD.local.count).toBe(0);
    const lines = log().filter((l) => l.invocation.startsWith("queue billing-tasks"));
    expect(lines).toHaveLength(steps);
    expect(lines.filter((l) => l.limitExceeded || l.error)).toEqual([]);
    const most = Math.max(...lines.map((l) => l.d1Queries));
    console.info(JSON.stringify({ msg: "reconciliation run, every transaction a finding", n, steps, maxD1Queries: most }));
    expect(most).toBeLessThanOrEqual(650);
  });
});

describe("refunds recorded without the gateway's refund id", () => {
  it("two of one payment and amount, their transactions on two pages of one step: each matched once, as GET does", { timeout: 120_000 }, async () => {
    const day = "2026-04-14";
    const template = await paid(day, { time: "06:00:00" });
    // 120 charges between the two refunds' transactions: the first on the listing's first page, the second on its second.
    await clonePaid(template, 120, day);
    const r1 = await refunded(template, 300, day);
    const r2 = await refunded(template, 300, day);
    await env.DB.prepare("UPDATE sandbox_ledger SET created_at = ? WHERE id = ?").bind(at(day, "00:00:00"), r1.gatewayRefundId).run();
    await env.DB.prepare("UPDATE refunds SET gateway_refund_id = NULL WHERE id IN (?, ?)").bind(r1.id, r2.id).run();

    const { run, steps } = await runDay(day);
    expect(steps).toBe(4);
    const direct = await api("GET", `/api/v1/reconciliation/stripe/${day}?gateway=sandbox`);
    expect(direct.status).toBe(200);
    expect(run).toMatchObject({ status: "complete", matched: 121 + 2, discrepancyCounts: { missing_at_gateway: 0, missing_locally: 0, amount_mismatch: 0, status_mismatch: 0 } });
    expect({ matched: run.matched, discrepancyCounts: run.discrepancyCounts }).toEqual({ matched: direct.body.matched, discrepancyCounts: direct.body.discrepancyCounts });
    expect(await openOf(day)).toEqual([]);
  });
});

describe("a reconciliation run and GET /reconciliation/stripe/{date}", () => {
  it("find the same discrepancies, totals and credit notes; a re-run resolves the fixed ones and never duplicates", { timeout: 120_000 }, async () => {
    const day = "2026-02-10";
    const gone = await paid(day);
    await env.DB.prepare("DELETE FROM sandbox_ledger WHERE id = ?").bind(gone.gatewayId).run();
    const orphan = unique("ch");
    await env.DB.prepare("INSERT INTO sandbox_ledger (id, kind, idempotency_key, amount, currency, status, payment_method, created_at) VALUES (?, 'charge', ?, 4200, 'USD', 'succeeded', 'pm_card_visa', ?)").bind(orphan, unique("k"), at(day, "08:00:00")).run();
    const changed = await paid(day);
    await env.DB.prepare("UPDATE payments SET amount = 2600 WHERE id = ?").bind(changed.id).run();
    const failed = await paid(day);
    await env.DB.prepare("UPDATE payments SET status = 'failed' WHERE id = ?").bind(failed.id).run();
    await paid(day, { time: "23:59:59", ledgerTime: "2026-02-11T00:00:01Z" });
    await paid(day, { ledgerTime: "2026-02-14T10:00:00Z" });
    const withRefunds = await paid(day);
    await refunded(withRefunds, 300, day);
    const lostRefund = await refunded(withRefunds, 200, day);
    await env.DB.prepare("DELETE FROM sandbox_ledger WHERE id = ?").bind(lostRefund.gatewayRefundId).run();
    // Recorded without the gateway's refund id: matched by payment and amount.
    const noId = await refunded(withRefunds, 250, day);
    await env.DB.prepare("UPDATE refunds SET gateway_refund_id = NULL WHERE id = ?").bind(noId.id).run();
    const unknownRefund = await refunded(withRefunds, 100, day);
    await env.DB.prepare("DELETE FROM refunds WHERE id = ?").bind(unknownRefund.id).run();

    const credited = await paid(day, { amount: "40.00" });
    await creditNote(credited, day, { refund: "5.00" });
    await creditNote(credited, day, { creditBalance: "3.00" });

    const direct = await api("GET", `/api/v1/reconciliation/stripe/${day}?gateway=sandbox`);
    expect(direct.status).toBe(200);
    const openAfterDirect = await openOf(day);
    expect(openAfterDirect.length).toBe(6);

    const { run } = await runDay(day);
    expect(await openOf(day)).toEqual(openAfterDirect);
    expect(run.discrepancyCounts).toEqual(direct.body.discrepancyCounts);
    expect(run.discrepancyCounts).toEqual({ missing_at_gateway: 2, missing_locally: 2, amount_mismatch: 1, status_mismatch: 1 });
    expect(run.totals).toEqual(direct.body.totals);
    expect(run.creditNotes).toEqual(direct.body.creditNotes);
    expect(run.creditNotes.USD).toMatchObject({ issued: 2, refunded: { amountMinor: 500 }, nonCash: { amountMinor: 300 }, unmatchedRefundIds: [] });
    expect({ matched: run.matched, crossDayMatched: run.crossDayMatched, resolved: run.resolved }).toEqual({ matched: direct.body.matched, crossDayMatched: 2, resolved: 0 });

    // Fix two: a new run resolves exactly those, and records nothing twice.
    await env.DB.prepare("UPDATE payments SET amount = 2500 WHERE id = ?").bind(changed.id).run();
    await env.DB.prepare("UPDATE payments SET status = 'succeeded' WHERE id = ?").bind(failed.id).run();
    const fixed = (await runDay(day)).run;
    expect(fixed).toMatchObject({ resolved: 2, discrepancyCounts: { missing_at_gateway: 2, missing_locally: 2, amount_mismatch: 0, status_mismatch: 0 } });
    const rows = (await env.DB.prepare("SELECT kind, status FROM discrepancies WHERE date = ?").bind(day).all<any>()).results;
    expect(rows).toHaveLength(6);
    expect(rows.filter((d) => d.status === "resolved").map((d) => d.kind).sort()).toEqual(["amount_mismatch", "status_mismatch"]);
    const again = await api("GET", `/api/v1/reconciliation/stripe/${day}?gateway=sandbox`);
    expect(again.body).toMatchObject({ resolved: 0, matched: fixed.matched, discrepancyCounts: fixed.discrepancyCounts });

    const audit = await env.DB.prepare("SELECT count(*) AS n FROM audit_log WHERE action = 'reconciliation.run' AND target_id = ?").bind(`sandbox:${day}`).first<{ n: number }>();
    expect(audit!.n).toBe(4);
  });
});

describe("reconciliation.continue deliveries", () => {
  it("a duplicate or late delivery does nothing; the run completes once, audited once", { timeout: 120_000 }, async () => {
    const day = "2026-02-20";
    await paid(day);
    const rec = recordingEnv();
    const r = await fetchAs(rec.env, "POST", "/api/v1/reconciliation/runs", { date: day });
    expect(r.status).toBe(202);
    const [first] = rec.take("tasks");
    expect(first).toEqual({ type: "reconciliation.continue", runId: r.body.id, step: 0 });
    await deliver(rec.env, "billing-tasks", [first]);
    const [second] = rec.take("tasks");
    expect(second).toEqual({ type: "reconciliation.continue", runId: r.body.id, step: 1 });
    const before = (await api("GET", `/api/v1/reconciliation/runs/${r.body.id}`)).body;
    await deliver(rec.env, "billing-tasks", [first]);
    expect(rec.take("tasks")).toEqual([]);
    expect((await api("GET", `/api/v1/reconciliation/runs/${r.body.id}`)).body).toEqual(before);
    rec.sent.push({ queue: "tasks", body: second });
    await drainTasks(rec);
    expect((await api("GET", `/api/v1/reconciliation/runs/${r.body.id}`)).body).toMatchObject({ status: "complete", matched: 1 });
    for (const late of [first, second]) await deliver(rec.env, "billing-tasks", [late]);
    expect(rec.take("tasks")).toEqual([]);
    const audit = await env.DB.prepare("SELECT count(*) AS n FROM audit_log WHERE action = 'reconciliation.run' AND target_id = ?").bind(`sandbox:${day}`).first<{ n: number }>();
    expect(audit!.n).toBe(1);
  });

  it("a gateway failure mid-run leaves the run running with the error; the retried step goes on once the gateway answers", { timeout: 120_000 }, async () => {
    const day = "2026-03-21";
    const template = await paid(day, { time: "00:00:00" });
    await clonePaid(template, 600, day);
    const rec = recordingEnv();
    const r = await fetchAs(rec.env, "POST", "/api/v1/reconciliation/runs", { date: day });
    await deliver(rec.env, "billing-tasks", rec.take("tasks"));
    const [second] = rec.take("tasks");
    expect(second).toMatchObject({ step: 1 });
    await env.DB.prepare("INSERT OR REPLACE INTO settings (key, value, updated_by, updated_at) VALUES (?, ?, 'test', ?)").bind(SANDBOX_FAULTS_KEY, JSON.stringify({ failureRate: 1 }), Date.now()).run();
    dropSettingsCache();
    try {
      await deliver(rec.env, "billing-tasks", [second]);
    } finally {
      await env.DB.prepare("DELETE FROM settings WHERE key = ?").bind(SANDBOX_FAULTS_KEY).run();
      dropSettingsCache();
    }
    expect(rec.take("tasks")).toEqual([]);
    const failed = (await api("GET", `/api/v1/reconciliation/runs/${r.body.id}`)).body;
    expect(failed).toMatchObject({ status: "running", phase: "gateway", step: 1, progress: { transactions: TXN_PAGE * TXN_PAGES_PER_INVOCATION } });
    expect(failed.error).toContain("sandbox: injected gateway failure");
    // The queue's retry of the same message goes on from the page it failed on.
    await deliver(rec.env, "billing-tasks", [second]);
    await drainTasks(rec);
    expect((await api("GET", `/api/v1/reconciliation/runs/${r.body.id}`)).body).toMatchObject({ status: "complete", error: null, matched: 601, progress: { transactions: 601 }, discrepancyCounts: { missing_at_gateway: 0, missing_locally: 0 } });
  });
});

/** POST through the worker with headers of our own (Idempotency-Key), recorded queues. */
async function post(e: Env, path: string, body: unknown, headers: Record<string, string> = {}) {
  const ctx = createExecutionContext();
  const res = await worker.fetch(
    new Request(`http://localhost${path}`, { method: "POST", headers: { authorization: `Bearer ${await tokenFor("finance")}`, "content-type": "application/json", ...headers }, body: JSON.stringify(body) }) as any,
    e,
    ctx,
  );
  await waitOnExecutionContext(ctx);
  return { status: res.status, headers: res.headers, body: (await res.json()) as any };
}

describe("the reconciliation runs API", () => {
  it("POST answers 202 with the run and where it is; GET shows it running, then complete; the list has it newest first", { timeout: 120_000 }, async () => {
    const day = "2026-02-25";
    await paid(day);
    const rec = recordingEnv();
    const r = await post(rec.env, "/api/v1/reconciliation/runs", { date: day });
    expect(r.status).toBe(202);
    expect(r.body).toMatchObject({ object: "reconciliation_run", date: day, gateway: "sandbox", status: "running", phase: "gateway", step: 0 });
    expect(r.body.id).toMatch(/^rcr_/);
    expect(r.headers.get("location")).toBe(`/api/v1/reconciliation/runs/${r.body.id}`);
    expect(r.body.totals).toBeUndefined();

    // A second POST while it runs answers the same run.
    const same = await post(rec.env, "/api/v1/reconciliation/runs", { date: day, gateway: "sandbox" });
    expect(same.body.id).toBe(r.body.id);

    await deliver(rec.env, "billing-tasks", rec.take("tasks"));
    const mid = await api("GET", `/api/v1/reconciliation/runs/${r.body.id}`, { as: "finance" });
    expect(mid.body).toMatchObject({ status: "running", phase: "local", step: 1, progress: { transactions: 1, matched: 1 } });
    await drainTasks(rec);
    const done = await api("GET", `/api/v1/reconciliation/runs/${r.body.id}`, { as: "finance" });
    expect(done.body).toMatchObject({ status: "complete", matched: 1, totals: { USD: { difference: { amountMinor: 0 } } } });
    expect(done.body.finishedAt).toMatch(/^20/);

    const later = await post(rec.env, "/api/v1/reconciliation/runs", { date: day });
    const list = await api("GET", `/api/v1/reconciliation/runs?date=${day}&limit=1`, { as: "finance" });
    expect(list.status).toBe(200);
    expect(list.body).toMatchObject({ hasMore: true, data: [{ id: later.body.id }] });
    const rest = await api("GET", `/api/v1/reconciliation/runs?date=${day}&startingAfter=${list.body.nextCursor}`, { as: "finance" });
    expect(rest.body.data.map((x: any) => x.id)).toEqual([r.body.id]);
  });

  it("answers 404 for an unknown run, 400 for a bad date, 422 for a gateway not configured, 403 outside finance", async () => {
    const rec = recordingEnv();
    const unknown = await api("GET", "/api/v1/reconciliation/runs/rcr_nope", { as: "finance" });
    expect(unknown.status).toBe(404);
    expect(unknown.headers.get("content-type")).toContain("application/problem+json");
    for (const date of ["2024-02-30", "24-06-2024"]) {
      const bad = await post(rec.env, "/api/v1/reconciliation/runs", { date });
      expect(bad.status).toBe(400);
      expect(bad.headers.get("content-type")).toContain("application/problem+json");
      expect(JSON.stringify(bad.body.errors)).toContain("date");
    }
    const stripe = await post(rec.env, "/api/v1/reconciliation/runs", { date: "2026-02-26", gateway: "stripe" });
    expect(stripe.status).toBe(422);
    expect(stripe.body.errors).toEqual([{ path: "gateway", message: "not configured" }]);
    expect(rec.take("tasks")).toEqual([]);
    expect((await api("POST", "/api/v1/reconciliation/runs", { body: { date: "2026-02-26" }, as: "support", env: rec.env })).status).toBe(403);
    expect((await api("GET", "/api/v1/reconciliation/runs", { as: "viewer" })).status).toBe(403);
  });

  it("a run that stopped moving (its messages dead-lettered) is marked failed when the day is asked for again an hour later", async () => {
    const rec = recordingEnv();
    const stuck = await post(rec.env, "/api/v1/reconciliation/runs", { date: "2026-02-28" });
    await env.DB.prepare("UPDATE reconciliation_runs SET updated_at = ? WHERE id = ?").bind(Date.now() - 2 * 3_600_000, stuck.body.id).run();
    const fresh = await post(rec.env, "/api/v1/reconciliation/runs", { date: "2026-02-28" });
    expect(fresh.status).toBe(202);
    expect(fresh.body.id).not.toBe(stuck.body.id);
    const old = (await api("GET", `/api/v1/reconciliation/runs/${stuck.body.id}`)).body;
    expect(old).toMatchObject({ status: "failed", error: expect.stringContaining("replaced by a new run") });
    // Its late message does nothing; the new run completes.
    const [first, second] = rec.take("tasks");
    await deliver(rec.env, "billing-tasks", [first]);
    expect((await api("GET", `/api/v1/reconciliation/runs/${stuck.body.id}`)).body).toEqual(old);
    rec.sent.push({ queue: "tasks", body: second });
    await drainTasks(rec);
    expect((await api("GET", `/api/v1/reconciliation/runs/${fresh.body.id}`)).body.status).toBe("complete");
  });

  it("replays a POST with the same Idempotency-Key: one run, the same answer", async () => {
    const rec = recordingEnv();
    const key = unique("idem");
    const a = await post(rec.env, "/api/v1/reconciliation/runs", { date: "2026-02-27" }, { "idempotency-key": key });
    const b = await post(rec.env, "/api/v1/reconciliation/runs", { date: "2026-02-27" }, { "idempotency-key": key });
    expect(a.status).toBe(202);
    expect(b.status).toBe(202);
    expect(b.body).toEqual(a.body);
    expect(rec.take("tasks")).toHaveLength(1);
    const runs = await env.DB.prepare("SELECT count(*) AS n FROM reconciliation_runs WHERE date = '2026-02-27'").first<{ n: number }>();
    expect(runs!.n).toBe(1);
  });
});

describe("starting a run", () => {
  it("a run whose first message was never sent (the queue down) is sent again by the next POST for the day, once", { timeout: 120_000 }, async () => {
    const day = "2026-04-20";
    await paid(day);
    const rec = recordingEnv();
    const down = { send: async () => Promise.reject(new Error("queue down")), sendBatch: async () => Promise.reject(new Error("queue down")) } as unknown as Queue;
    const failed = await post({ ...rec.env, TASK_QUEUE: down } as Env, "/api/v1/reconciliation/runs", { date: day });
    expect(failed.status).toBe(500);
    const rows = (await env.DB.prepare("SELECT id, status, step, sent_step AS sentStep FROM reconciliation_runs WHERE date = ?").bind(day).all<any>()).results;
    expect(rows).toEqual([{ id: expect.stringMatching(/^rcr_/), status: "running", step: 0, sentStep: -1 }]);

    const again = await post(rec.env, "/api/v1/reconciliation/runs", { date: day });
    expect(again.status).toBe(202);
    expect(again.body.id).toBe(rows[0].id);
    expect(rec.take("tasks")).toEqual([{ type: "reconciliation.continue", runId: rows[0].id, step: 0 }]);
    // Sent now: a third POST answers the run and sends nothing.
    expect((await post(rec.env, "/api/v1/reconciliation/runs", { date: day })).body.id).toBe(rows[0].id);
    expect(rec.take("tasks")).toEqual([]);
    rec.sent.push({ queue: "tasks", body: { type: "reconciliation.continue", runId: rows[0].id, step: 0 } });
    await drainTasks(rec);
    expect((await api("GET", `/api/v1/reconciliation/runs/${rows[0].id}`)).body).toMatchObject({ status: "complete", matched: 1 });
  });

  it("two POSTs racing with different keys start one run; D1 refuses a second running run of a day and gateway", async () => {
    const day = "2026-04-21";
    const rec = recordingEnv();
    const [a, b] = await Promise.all([
      post(rec.env, "/api/v1/reconciliation/runs", { date: day }, { "idempotency-key": unique("ka") }),
      post(rec.env, "/api/v1/reconciliation/runs", { date: day }, { "idempotency-key": unique("kb") }),
    ]);
    expect([a.status, b.status]).toEqual([202, 202]);
    expect(b.body.id).toBe(a.body.id);
    const runs = await env.DB.prepare("SELECT count(*) AS n FROM reconciliation_runs WHERE date = ?").bind(day).first<{ n: number }>();
    expect(runs!.n).toBe(1);
    const copy = (id: string) =>
      env.DB.prepare(
        "INSERT INTO reconciliation_runs (id, date, gateway, status, phase, step, sent_step, totals, counts, actor, created_at, updated_at) SELECT ?, date, gateway, status, phase, step, sent_step, totals, counts, actor, created_at, updated_at FROM reconciliation_runs WHERE id = ?",
      )
        .bind(id, a.body.id)
        .run();
    await expect(copy(unique("rcr"))).rejects.toThrow(/UNIQUE/);
  });
});

describe("a run's finish step", () => {
  /** A day with one paid payment and an open amount_mismatch of it that is fixed by now (a run resolves it). */
  async function fixedMismatch(day: string) {
    const p = await paid(day);
    await env.DB.prepare("UPDATE payments SET amount = 2600 WHERE id = ?").bind(p.id).run();
    expect((await api("GET", `/api/v1/reconciliation/stripe/${day}?gateway=sandbox`)).body.discrepancyCounts.amount_mismatch).toBe(1);
    await env.DB.prepare("UPDATE payments SET amount = 2500 WHERE id = ?").bind(p.id).run();
    return p;
  }

  it("resolves in the step's batch: a finish step whose batch fails resolves nothing; its retry resolves and counts", { timeout: 120_000 }, async () => {
    const day = "2026-04-22";
    await fixedMismatch(day);
    const rec = recordingEnv();
    const r = await post(rec.env, "/api/v1/reconciliation/runs", { date: day });
    let finish: unknown;
    for (let i = 0; i < 10 && !finish; i++) {
      const [m] = rec.take("tasks");
      const run = (await api("GET", `/api/v1/reconciliation/runs/${r.body.id}`)).body;
      if (run.phase === "finish") finish = m;
      else await deliver(rec.env, "billing-tasks", [m]);
    }
    expect(finish).toBeTruthy();
    // The finish step's batch fails (D1 aborts any batch that moves the run's step).
    const trigger = `rr_fail_${unique("t").replace(/\W/g, "")}`;
    await env.DB.prepare(`CREATE TRIGGER ${trigger} BEFORE UPDATE ON reconciliation_runs WHEN NEW.id = '${r.body.id}' AND NEW.step <> OLD.step BEGIN SELECT RAISE(ABORT, 'injected'); END`).run();
    try {
      await deliver(rec.env, "billing-tasks", [finish]);
    } finally {
      await env.DB.prepare(`DROP TRIGGER ${trigger}`).run();
    }
    expect((await api("GET", `/api/v1/reconciliation/runs/${r.body.id}`)).body).toMatchObject({ status: "running", phase: "finish" });
    expect((await openOf(day)).map((d: any) => d.kind)).toEqual(["amount_mismatch"]);
    rec.take("tasks");
    await deliver(rec.env, "billing-tasks", [finish]);
    await drainTasks(rec);
    expect((await api("GET", `/api/v1/reconciliation/runs/${r.body.id}`)).body).toMatchObject({ status: "complete", resolved: 1 });
    expect(await openOf(day)).toEqual([]);
  });

  it("leaves open what a comparison found after the run started (a GET while the run went on)", { timeout: 120_000 }, async () => {
    const day = "2026-04-23";
    const p = await paid(day);
    const rec = recordingEnv();
    const r = await post(rec.env, "/api/v1/reconciliation/runs", { date: day });
    await deliver(rec.env, "billing-tasks", rec.take("tasks"));
    expect((await api("GET", `/api/v1/reconciliation/runs/${r.body.id}`)).body).toMatchObject({ phase: "local", progress: { matched: 1 } });
    // After the run paged past it, the payment changes and a GET finds the difference.
    await env.DB.prepare("UPDATE payments SET amount = 2600 WHERE id = ?").bind(p.id).run();
    expect((await api("GET", `/api/v1/reconciliation/stripe/${day}?gateway=sandbox`)).body.discrepancyCounts.amount_mismatch).toBe(1);
    await drainTasks(rec);
    expect((await api("GET", `/api/v1/reconciliation/runs/${r.body.id}`)).body).toMatchObject({ status: "complete", resolved: 0 });
    expect((await openOf(day)).map((d: any) => [d.kind, d.localId])).toEqual([["amount_mismatch", p.id]]);
  });
});

describe("reconciliation_seen", () => {
  it("the daily sweep leaves no seen rows of a complete run nor of a failed (replaced) one", { timeout: 120_000 }, async () => {
    const day = "2026-04-24";
    await paid(day);
    const rec = recordingEnv();
    const stuck = await post(rec.env, "/api/v1/reconciliation/runs", { date: day });
    await deliver(rec.env, "billing-tasks", rec.take("tasks"));
    rec.take("tasks");
    const seenOf = async (id: string) => (await env.DB.prepare("SELECT count(*) AS n FROM reconciliation_seen WHERE run_id = ?").bind(id).first<{ n: number }>())!.n;
    expect(await seenOf(stuck.body.id)).toBeGreaterThan(0);
    await env.DB.prepare("UPDATE reconciliation_runs SET updated_at = ? WHERE id = ?").bind(Date.now() - 2 * 3_600_000, stuck.body.id).run();
    const fresh = await post(rec.env, "/api/v1/reconciliation/runs", { date: day });
    expect(fresh.body.id).not.toBe(stuck.body.id);
    await drainTasks(rec);
    expect((await api("GET", `/api/v1/reconciliation/runs/${stuck.body.id}`)).body.status).toBe("failed");
    expect((await api("GET", `/api/v1/reconciliation/runs/${fresh.body.id}`)).body.status).toBe("complete");

    await deliver(rec.env, "billing-tasks", [{ type: "cron.task", cron: CRON.daily, task: "reconciliation.sweep_seen", scheduledTime: at(day, "03:00:00") + 86_400_000 }]);
    await drainTasks(rec);
    expect([await seenOf(stuck.body.id), await seenOf(fresh.body.id)]).toEqual([0, 0]);
  });
});
