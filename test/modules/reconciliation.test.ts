import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";

import { dbOf } from "../../src/db/client";
import { SYSTEM_ACTOR } from "../../src/platform/actor";
import { collectInvoice } from "../../src/modules/payments/collect";
import { SandboxGateway } from "../../src/gateways/sandbox";
import { runDailyReconciliation } from "../../src/modules/reconciliation/routes";
import { unique, api, servicesOf } from "../helpers";

type Role = "admin" | "finance" | "support" | "viewer";

const spyQueue = { send: async () => undefined, sendBatch: async () => undefined } as unknown as Queue;
// Payment messages stay out of the real queue: the tests charge invoices themselves.
const testEnv = () => ({ ...env, PAYMENT_QUEUE: spyQueue, WEBHOOK_QUEUE: spyQueue }) as Env;

const call = (method: string, path: string, body?: unknown, role: Role | null = "finance") => api(method, path, { body, as: role, env: testEnv() });

const at = (date: string, time = "12:00:00") => Date.parse(`${date}T${time}Z`);

/** A payment charged through the sandbox, then moved (with its ledger entry) to `date` so each test owns its day. */
async function paid(date: string, opts: { amount?: string; currency?: string; time?: string; ledgerTime?: string } = {}) {
  const currency = opts.currency ?? "USD";
  const customer = await call("POST", "/api/v1/customers", { email: `${unique("r")}@example.com`, currency }, "admin");
  const plan = await call("POST", "/api/v1/plans", { name: "Paid", currency, interval: "month", prices: [{ type: "flat", amount: opts.amount ?? "25.00" }] }, "admin");
  const sub = await call("POST", "/api/v1/subscriptions", { customerId: customer.body.id, planId: plan.body.id, paymentMethod: "pm_card_visa" }, "admin");
  expect(sub.status).toBe(201);
  const invoice = (await call("GET", `/api/v1/invoices?subscriptionId=${sub.body.id}`)).body.data[0];
  const outcome = await collectInvoice(servicesOf({ actor: SYSTEM_ACTOR, now: Date.now() }, testEnv()), invoice.id, { attempt: 1, direct: false });
  expect(outcome.outcome).toBe("succeeded");
  const p = await env.DB.prepare("SELECT * FROM payments WHERE invoice_id = ?").bind(invoice.id).first<any>();
  expect(p).toMatchObject({ status: "succeeded", gateway: "sandbox" });
  await env.DB.prepare("UPDATE payments SET created_at = ?, updated_at = ? WHERE id = ?").bind(at(date, opts.time), at(date, opts.time), p.id).run();
  await env.DB.prepare("UPDATE sandbox_ledger SET created_at = ? WHERE id = ?").bind(opts.ledgerTime ? Date.parse(opts.ledgerTime) : at(date, opts.time), p.gateway_payment_id).run();
  return { id: p.id as string, gatewayId: p.gateway_payment_id as string, amount: p.amount as number, currency: p.currency as string, invoiceId: invoice.id as string };
}

/** A refund on the sandbox and its local row, both dated `date`. */
async function refunded(payment: { id: string; gatewayId: string; currency: string }, amount: number, date: string) {
  const r = await new SandboxGateway(dbOf(env)).refund({ gatewayPaymentId: payment.gatewayId, amountMinor: amount, currency: payment.currency, idempotencyKey: unique("rk") });
  expect(r.status).toBe("succeeded");
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

const reconcile = (date: string, query = "", role: Role = "finance") => call("GET", `/api/v1/reconciliation/stripe/${date}${query}`, undefined, role);
const rowsOf = (date: string) => env.DB.prepare("SELECT * FROM discrepancies WHERE date = ? ORDER BY kind").bind(date).all<any>().then((r) => r.results);

describe("GET /api/v1/reconciliation/stripe/:date", () => {
  it("matches normal payments and refunds, with totals per currency and the gateway it chose", async () => {
    const day = "2024-06-24";
    const a = await paid(day, { amount: "25.00" });
    const b = await paid(day, { amount: "10.50" });
    const e = await paid(day, { amount: "40.00", currency: "EUR" });
    await refunded(a, 500, day);
    const r = await reconcile(day);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ date: day, gateway: "sandbox", gatewaySelection: "default", matched: 4, crossDayMatched: 0, discrepancies: [], resolved: 0 });
    expect(r.body.note).toContain("stripe is not configured");
    expect(r.body.basis).toContain("createdAt");
    expect(r.body.discrepancyCounts).toEqual({ missing_at_gateway: 0, missing_locally: 0, amount_mismatch: 0, status_mismatch: 0 });
    expect(r.body.totals.USD).toEqual({
      local: { charges: { amount: "35.50", amountMinor: 3550 }, refunds: { amount: "5.00", amountMinor: 500 }, net: { amount: "30.50", amountMinor: 3050 }, count: 3 },
      gateway: { charges: { amount: "35.50", amountMinor: 3550 }, refunds: { amount: "5.00", amountMinor: 500 }, net: { amount: "30.50", amountMinor: 3050 }, count: 3 },
      difference: { amount: "0.00", amountMinor: 0 },
    });
    expect(r.body.totals.EUR.local.charges.amountMinor).toBe(4000);
    expect(r.body.totals.EUR.gateway.charges.amountMinor).toBe(4000);
    expect(Object.keys(r.body.totals).sort()).toEqual(["EUR", "USD"]);
    expect([a, b, e].every((p) => p.gatewayId)).toBe(true);
    expect(await rowsOf(day)).toEqual([]);
  });

  it("finds what is missing on either side, amounts that differ and a payment failed locally but charged", async () => {
    const day = "2024-07-02";
    const gone = await paid(day);
    await env.DB.prepare("DELETE FROM sandbox_ledger WHERE id = ?").bind(gone.gatewayId).run();
    const orphan = unique("ch");
    await env.DB.prepare("INSERT INTO sandbox_ledger (id, kind, idempotency_key, amount, currency, status, payment_method, created_at) VALUES (?, 'charge', ?, 4200, 'USD', 'succeeded', 'pm_card_visa', ?)")
      .bind(orphan, unique("k"), at(day, "08:00:00"))
      .run();
    const changed = await paid(day);
    await env.DB.prepare("UPDATE payments SET amount = 2600 WHERE id = ?").bind(changed.id).run();
    const failed = await paid(day);
    await env.DB.prepare("UPDATE payments SET status = 'failed' WHERE id = ?").bind(failed.id).run();
    const fine = await paid(day);

    const r = await reconcile(day);
    expect(r.status).toBe(200);
    expect(r.body.matched).toBe(1);
    expect(r.body.discrepancyCounts).toEqual({ missing_at_gateway: 1, missing_locally: 1, amount_mismatch: 1, status_mismatch: 1 });
    const byKind = Object.fromEntries(r.body.discrepancies.map((d: any) => [d.kind, d]));
    expect(byKind.missing_at_gateway).toMatchObject({ objectType: "payment", localId: gone.id, gatewayId: gone.gatewayId, localAmount: { amountMinor: 2500 }, gatewayAmount: null, status: "open" });
    expect(byKind.missing_locally).toMatchObject({ objectType: "payment", localId: null, gatewayId: orphan, gatewayAmount: { amount: "42.00", amountMinor: 4200 }, currency: "USD" });
    expect(byKind.amount_mismatch).toMatchObject({ localId: changed.id, gatewayId: changed.gatewayId, localAmount: { amountMinor: 2600 }, gatewayAmount: { amountMinor: 2500 } });
    expect(byKind.status_mismatch).toMatchObject({ localId: failed.id, gatewayId: failed.gatewayId });
    expect(r.body.totals.USD.local.charges.amountMinor).toBe(2500 + 2600 + 2500);
    expect(r.body.totals.USD.gateway.charges.amountMinor).toBe(4200 + 2500 + 2500 + 2500);
    expect(fine.id).toBeTruthy();

    // Re-running records nothing twice.
    const again = await reconcile(day);
    expect(again.body.discrepancies.map((d: any) => d.id).sort()).toEqual(r.body.discrepancies.map((d: any) => d.id).sort());
    expect(await rowsOf(day)).toHaveLength(4);

    // Fix two of them: the next run resolves exactly those.
    await env.DB.prepare("UPDATE payments SET amount = 2500 WHERE id = ?").bind(changed.id).run();
    await env.DB.prepare("UPDATE payments SET status = 'succeeded' WHERE id = ?").bind(failed.id).run();
    const fixed = await reconcile(day);
    expect(fixed.body).toMatchObject({ matched: 3, resolved: 2 });
    expect(fixed.body.discrepancyCounts).toEqual({ missing_at_gateway: 1, missing_locally: 1, amount_mismatch: 0, status_mismatch: 0 });
    const rows = await rowsOf(day);
    expect(rows).toHaveLength(4);
    expect(rows.filter((d) => d.status === "resolved").map((d) => d.kind).sort()).toEqual(["amount_mismatch", "status_mismatch"]);
    expect(rows.filter((d) => d.status === "resolved").every((d) => d.resolved_at > 0)).toBe(true);

    const open = await call("GET", `/api/v1/reconciliation/discrepancies?status=open&date=${day}`);
    expect(open.status).toBe(200);
    expect(open.body.data.map((d: any) => d.kind).sort()).toEqual(["missing_at_gateway", "missing_locally"]);
    const resolved = await call("GET", `/api/v1/reconciliation/discrepancies?status=resolved&date=${day}`);
    expect(resolved.body.data.map((d: any) => d.kind).sort()).toEqual(["amount_mismatch", "status_mismatch"]);
    expect(resolved.body.data[0].resolvedAt).toMatch(/^2\d{3}-/);

    // Audited per run.
    const audit = await env.DB.prepare("SELECT count(*) AS n FROM audit_log WHERE action = 'reconciliation.run' AND target_id = ?").bind(`sandbox:${day}`).first<{ n: number }>();
    expect(audit!.n).toBe(3);
  });

  it("finds a refund missing at the gateway and one missing locally", async () => {
    const day = "2024-07-05";
    const p = await paid(day);
    const kept = await refunded(p, 300, day);
    const lost = await refunded(p, 200, day);
    await env.DB.prepare("DELETE FROM sandbox_ledger WHERE id = ?").bind(lost.gatewayRefundId).run();
    const unknown = await refunded(p, 100, day);
    await env.DB.prepare("DELETE FROM refunds WHERE id = ?").bind(unknown.id).run();
    const r = await reconcile(day);
    expect(r.body.matched).toBe(2);
    expect(r.body.discrepancies.map((d: any) => [d.kind, d.objectType, d.localId, d.gatewayId])).toEqual([
      ["missing_at_gateway", "refund", lost.id, lost.gatewayRefundId],
      ["missing_locally", "refund", null, unknown.gatewayRefundId],
    ]);
    expect(kept.id).toBeTruthy();
  });

  it("matches a charge that lands on the gateway just after midnight, on both days", async () => {
    const p = await paid("2024-07-08", { time: "23:59:59", ledgerTime: "2024-07-09T00:00:01Z" });
    const d1 = await reconcile("2024-07-08");
    expect(d1.body).toMatchObject({ matched: 1, crossDayMatched: 1, discrepancies: [] });
    const d2 = await reconcile("2024-07-09");
    expect(d2.body).toMatchObject({ matched: 1, crossDayMatched: 1, discrepancies: [] });
    expect(d2.body.totals.USD.gateway.charges.amountMinor).toBe(p.amount);
    expect(d2.body.totals.USD.local.charges.amountMinor).toBe(0);
  });

  it("validates the date and the gateway", async () => {
    expect((await reconcile("2024-02-30")).status).toBe(400);
    expect((await reconcile("24-06-2024")).status).toBe(400);
    const stripe = await reconcile("2024-06-24", "?gateway=stripe");
    expect(stripe.status).toBe(422);
    expect(stripe.body.detail).toContain("not configured");
    expect((await reconcile("2024-06-24", "?gateway=sandbox")).body).toMatchObject({ gateway: "sandbox", gatewaySelection: "requested" });
  });

  it("is for finance and admin only", async () => {
    expect((await reconcile("2024-06-24", "", "admin")).status).toBe(200);
    expect((await reconcile("2024-06-24", "", "support")).status).toBe(403);
    expect((await reconcile("2024-06-24", "", "viewer")).status).toBe(403);
    expect((await call("GET", "/api/v1/reconciliation/discrepancies", undefined, "viewer")).status).toBe(403);
    expect((await call("POST", "/api/v1/reports/reconciliation", { date: "2024-06-24" }, "support")).status).toBe(403);
    expect((await call("GET", "/api/v1/reconciliation/stripe/2024-06-24", undefined, null)).status).toBe(401);
  });
});

describe("reconciliation reports", () => {
  it("POST /api/v1/reports/reconciliation stores the report in R2 and returns it with its key", async () => {
    const day = "2024-08-01";
    const p = await paid(day);
    await env.DB.prepare("UPDATE payments SET amount = 999 WHERE id = ?").bind(p.id).run();
    const r = await call("POST", "/api/v1/reports/reconciliation", { date: day, includeDetails: true });
    expect(r.status).toBe(201);
    expect(r.body.key).toBe(`reports/reconciliation/${day}.json`);
    expect(r.body.report).toMatchObject({ date: day, includeDetails: true, gateways: [{ gateway: "sandbox", matched: 0, discrepancyCounts: { amount_mismatch: 1 } }] });
    expect(r.body.report.gateways[0].discrepancies).toHaveLength(1);
    const obj = await env.ARCHIVE.get(r.body.key);
    expect(obj!.httpMetadata?.contentType).toBe("application/json");
    expect(await obj!.json()).toEqual(r.body.report);

    const summary = await call("POST", "/api/v1/reports/reconciliation", { date: day });
    expect(summary.body.report.includeDetails).toBe(false);
    expect(summary.body.report.gateways[0].discrepancies).toBeUndefined();
    expect(summary.body.report.gateways[0].discrepancyCounts.amount_mismatch).toBe(1);
    expect((await call("POST", "/api/v1/reports/reconciliation", { date: "2024-13-01" })).status).toBe(400);
  });

  it("runDailyReconciliation reconciles yesterday (UTC) for each configured gateway and writes the report", async () => {
    const p = await paid("2024-08-10");
    await env.DB.prepare("DELETE FROM sandbox_ledger WHERE id = ?").bind(p.gatewayId).run();
    const r = await runDailyReconciliation(servicesOf({ actor: SYSTEM_ACTOR, now: Date.parse("2024-08-11T03:00:00Z") }, env));
    expect(r).toMatchObject({ date: "2024-08-10", key: "reports/reconciliation/2024-08-10.json", gateways: [{ gateway: "sandbox", matched: 0, discrepancies: { missing_at_gateway: 1 } }] });
    const stored = (await (await env.ARCHIVE.get(r.key))!.json()) as any;
    expect(stored.gateways[0].discrepancies[0]).toMatchObject({ kind: "missing_at_gateway", localId: p.id });
    const open = await call("GET", "/api/v1/reconciliation/discrepancies?status=open&date=2024-08-10");
    expect(open.body.data).toHaveLength(1);
  });
});
