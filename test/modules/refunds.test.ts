import { beforeEach, describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { createExecutionContext, createMessageBatch, getQueueResult, waitOnExecutionContext } from "cloudflare:test";
import entry from "../../src/index";
import { dropSettingsCache } from "../../src/platform/settings";
import { processBulkRefundItem, type BulkRefundItemMessage } from "../../src/modules/refunds/service";
import { notificationEventCount, tokenFor, unique, api, servicesOf, messageServicesOf } from "../helpers";

const worker: Required<Pick<ExportedHandler<Env>, "fetch" | "queue">> = entry;
type Role = "admin" | "finance" | "support" | "viewer";

/** What the code sent to the payments and webhooks queues (kept out of the real queues: the tests run them). */
let sent: { body: any; delaySeconds?: number }[] = [];
let batches: number[] = [];
let webhookSent: any[] = [];
const spyQueue = {
  send: async (body: unknown, opts?: { delaySeconds?: number }) => void sent.push({ body, ...(opts?.delaySeconds !== undefined ? { delaySeconds: opts.delaySeconds } : {}) }),
  sendBatch: async (msgs: { body: unknown }[]) => {
    batches.push(msgs.length);
    sent.push(...msgs.map((m) => ({ body: m.body })));
  },
} as unknown as Queue;
const spyWebhooks = { send: async (body: unknown) => void webhookSent.push(body), sendBatch: async () => {} } as unknown as Queue;
const testEnv = () => ({ ...env, PAYMENT_QUEUE: spyQueue, WEBHOOK_QUEUE: spyWebhooks }) as Env;

const call = (method: string, path: string, body?: unknown, opts: { role?: Role; headers?: Record<string, string> } = {}) =>
  api(method, path, { body, as: opts.role, headers: opts.headers, env: testEnv() });
const refund = (body: Record<string, unknown>, role: Role = "finance", headers?: Record<string, string>) => call("POST", "/api/v1/refunds", body, { role, headers });

let msgSeq = 0;
async function attempt(invoiceId: string, n: number) {
  const batch = createMessageBatch("billing-payments", [{ id: `r${msgSeq++}`, timestamp: new Date(), attempts: 1, body: { type: "payment.attempt", invoiceId, attempt: n } }]);
  const ctx = createExecutionContext();
  await worker.queue(batch, testEnv(), ctx);
  return getQueueResult(batch, ctx);
}

/** A payment of `amount` USD through a subscription and its first attempt (succeeded with pm_card_visa). */
async function payment(amount = "25.00", paymentMethod = "pm_card_visa") {
  const customer = await call("POST", "/api/v1/customers", { email: `${unique("r")}@example.com`, currency: "USD" });
  const plan = await call("POST", "/api/v1/plans", { name: "Refundable", currency: "USD", interval: "month", prices: [{ type: "flat", amount }] });
  const sub = await call("POST", "/api/v1/subscriptions", { customerId: customer.body.id, planId: plan.body.id, paymentMethod });
  expect(sub.status).toBe(201);
  const invoice = (await call("GET", `/api/v1/invoices?subscriptionId=${sub.body.id}`)).body.data[0];
  await attempt(invoice.id, 1);
  return (await call("GET", `/api/v1/payments?invoiceId=${invoice.id}`)).body.data[0];
}

const getPayment = async (id: string) => (await call("GET", `/api/v1/payments/${id}`)).body;
const ledgerRefunds = async (gatewayPaymentId: string) =>
  (await env.DB.prepare("SELECT amount FROM sandbox_ledger WHERE kind = 'refund' AND charge_id = ? ORDER BY created_at, amount").bind(gatewayPaymentId).all<{ amount: number }>()).results.map((r) => r.amount);
const refundRows = async (paymentId: string) =>
  (await env.DB.prepare("SELECT id, amount, status, failure_message AS failureMessage FROM refunds WHERE payment_id = ? ORDER BY created_at").bind(paymentId).all<{ id: string; amount: number; status: string; failureMessage: string | null }>()).results;
const sumOf = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const item = (bulkId: string, paymentId: string, notify = false): BulkRefundItemMessage => ({ type: "refund.bulk_item", bulkId, paymentId, reason: "service_issue", notify });

beforeEach(async () => {
  await call("POST", "/admin/emergency/resume-payments");
  await env.DB.prepare("DELETE FROM settings WHERE key = 'gateways.sandbox.faults'").run();
  dropSettingsCache();
  sent = [];
  batches = [];
  webhookSent = [];
});

describe("POST /api/v1/refunds", () => {
  it("refunds in part, then the rest, then refuses an over-refund without changing anything", async () => {
    const p = await payment("25.00");
    expect(p).toMatchObject({ status: "succeeded", amountMinor: 2500, gateway: "sandbox" });

    const partial = await refund({ paymentId: p.id, amount: 10, reason: "customer_request" });
    expect(partial.status).toBe(201);
    expect(partial.body).toMatchObject({ paymentId: p.id, amount: "10.00", amountMinor: 1000, currency: "USD", status: "succeeded", gateway: "sandbox", remainingRefundable: "15.00", remainingRefundableMinor: 1500, createdBy: "test-finance" });
    expect(partial.body.id).toMatch(/^re_/);
    expect(partial.body.gatewayRefundId).toBeTruthy();

    const over = await refund({ paymentId: p.id, amount: "15.01", reason: "customer_request" });
    expect(over.status).toBe(422);
    expect(over.body.errors[0].path).toBe("amount");
    expect(over.body.errors[0].message).toContain("15.00 USD");
    expect((await getPayment(p.id)).amountRefundedMinor).toBe(1000);
    expect(await refundRows(p.id)).toHaveLength(1);

    const rest = await refund({ paymentId: p.id, reason: "customer_request" });
    expect(rest.status).toBe(201);
    expect(rest.body).toMatchObject({ amount: "15.00", amountMinor: 1500, status: "succeeded", remainingRefundable: "0.00", remainingRefundableMinor: 0 });

    const again = await refund({ paymentId: p.id, amount: "0.01" });
    expect(again.status).toBe(422);
    expect(again.body.errors[0]).toMatchObject({ path: "amount" });
    expect((await refund({ paymentId: p.id })).status).toBe(422);

    expect(await getPayment(p.id)).toMatchObject({ amountRefunded: "25.00", amountRefundedMinor: 2500 });
    expect(await ledgerRefunds(p.gatewayPaymentId)).toEqual([1000, 1500]);
    expect((await refundRows(p.id)).map((r) => r.status)).toEqual(["succeeded", "succeeded"]);

    const one = await call("GET", `/api/v1/refunds/${partial.body.id}`, undefined, { role: "viewer" });
    expect(one.body).toMatchObject({ id: partial.body.id, amount: "10.00", status: "succeeded", remainingRefundable: "0.00" });
    const list = await call("GET", `/api/v1/refunds?paymentId=${p.id}&limit=1`, undefined, { role: "viewer" });
    expect(list.body).toMatchObject({ data: [{ id: rest.body.id }], hasMore: true, nextCursor: rest.body.id });
    const next = await call("GET", `/api/v1/refunds?paymentId=${p.id}&limit=1&startingAfter=${rest.body.id}`);
    expect(next.body).toMatchObject({ data: [{ id: partial.body.id }], hasMore: false });

    const audit = await env.DB.prepare("SELECT action FROM audit_log WHERE target_id = ? ORDER BY seq").bind(partial.body.id).all<{ action: string }>();
    expect(audit.results.map((a) => a.action)).toEqual(["refund.requested", "refund.processed"]);
    const metric = await env.DB.prepare("SELECT value FROM metric_counters WHERE name = 'billing_refunds_total' AND labels = ?").bind('gateway="sandbox",reason="customer_request"').first<{ value: number }>();
    expect(metric!.value).toBeGreaterThanOrEqual(2);
  });

  it("validates the amount against the payment's currency", async () => {
    const p = await payment("5.00");
    for (const amount of ["1.005", 0, "-1", "abc"]) {
      const r = await refund({ paymentId: p.id, amount });
      expect(r.status, String(amount)).toBe(400);
      expect(r.body.errors[0].path).toBe("amount");
    }
    expect((await getPayment(p.id)).amountRefundedMinor).toBe(0);
  });

  it("never overdraws a payment when refunds race", async () => {
    const p = await payment("25.00");
    const results = await Promise.all(Array.from({ length: 5 }, () => refund({ paymentId: p.id, amount: "8.00", reason: "duplicate" })));
    const won = results.filter((r) => r.status === 201);
    const lost = results.filter((r) => r.status !== 201);
    expect(won).toHaveLength(3);
    for (const r of lost) {
      expect(r.status).toBe(422);
      expect(r.body.errors[0].path).toBe("amount");
    }
    const ledger = await ledgerRefunds(p.gatewayPaymentId);
    expect(sumOf(ledger)).toBe(2400);
    expect((await getPayment(p.id)).amountRefundedMinor).toBe(2400);

    // Racing full refunds of what is left: exactly one wins.
    const full = await Promise.all(Array.from({ length: 4 }, () => refund({ paymentId: p.id })));
    expect(full.filter((r) => r.status === 201)).toHaveLength(1);
    expect(full.filter((r) => r.status === 201)[0]!.body.amountMinor).toBe(100);
    expect(sumOf(await ledgerRefunds(p.gatewayPaymentId))).toBe(2500);
    expect((await getPayment(p.id)).amountRefundedMinor).toBe(2500);
  });

  it("refuses a failed payment (422) and an unknown one (404)", async () => {
    const failed = await payment("9.00", "pm_card_chargeDeclinedExpiredCard");
    expect(failed.status).toBe("failed");
    const r = await refund({ paymentId: failed.id, amount: 1 });
    expect(r.status).toBe(422);
    expect(r.body.errors[0]).toMatchObject({ path: "paymentId" });
    expect(await refundRows(failed.id)).toHaveLength(0);
    expect((await refund({ paymentId: "pay_does_not_exist", amount: 1 })).status).toBe(404);
    expect((await call("GET", "/api/v1/refunds/re_nope")).status).toBe(404);
  });

  it("answers 423 while payments are frozen or queued, and gives the reservation back", async () => {
    const p = await payment("12.00");
    await call("POST", "/admin/emergency/freeze-payments", { reason: "Security incident detected" });
    const frozen = await refund({ paymentId: p.id, amount: 5 });
    expect(frozen.status).toBe(423);
    expect(frozen.body.detail).toContain("Security incident detected");
    expect((await getPayment(p.id)).amountRefundedMinor).toBe(0);
    // A refusal is decided before anything is written: no refund row, no reservation.
    expect(await refundRows(p.id)).toEqual([]);

    await call("POST", "/admin/emergency/queue-mode");
    expect((await refund({ paymentId: p.id })).status).toBe(423);
    expect((await getPayment(p.id)).amountRefundedMinor).toBe(0);
    expect(await ledgerRefunds(p.gatewayPaymentId)).toEqual([]);

    await call("POST", "/admin/emergency/resume-payments");
    const ok = await refund({ paymentId: p.id });
    expect(ok.body).toMatchObject({ amountMinor: 1200, status: "succeeded" });
    expect(await ledgerRefunds(p.gatewayPaymentId)).toEqual([1200]);
  });

  it("a 423 during a freeze does not consume the Idempotency-Key: the same key refunds after resume", async () => {
    const p = await payment("9.00");
    const key = unique("idem");
    await call("POST", "/admin/emergency/freeze-payments", { reason: "incident 42" });
    const frozen = await refund({ paymentId: p.id, amount: 4 }, "finance", { "idempotency-key": key });
    expect(frozen.status).toBe(423);
    const stored = await env.DB.prepare("SELECT count(*) AS n FROM idempotency_keys WHERE scoped_key = ?").bind(`test-finance:${key}`).first("n");
    expect(stored).toBe(0);

    await call("POST", "/admin/emergency/resume-payments");
    const retry = await refund({ paymentId: p.id, amount: 4 }, "finance", { "idempotency-key": key });
    expect(retry.status).toBe(201);
    expect(retry.headers.get("idempotent-replayed")).toBeNull();
    expect(retry.body).toMatchObject({ amountMinor: 400, status: "succeeded" });
    expect(await ledgerRefunds(p.gatewayPaymentId)).toEqual([400]);
    // From now on the key answers with that refund.
    const again = await refund({ paymentId: p.id, amount: 4 }, "finance", { "idempotency-key": key });
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(again.body.id).toBe(retry.body.id);
    expect(await refundRows(p.id)).toHaveLength(1);
  });

  it("a 5xx before anything is written (PaymentGuard unreachable) does not consume the key or hold money", async () => {
    const p = await payment("8.00");
    const key = unique("idem");
    const brokenGuard = { idFromName: () => ({}), get: () => ({ admit: () => Promise.reject(new Error("guard unreachable")), release: async () => {} }) };
    const ctx = createExecutionContext();
    const res = await worker.fetch(
      new Request("http://localhost/api/v1/refunds", {
        method: "POST",
        headers: { authorization: `Bearer ${await tokenFor("finance")}`, "content-type": "application/json", "idempotency-key": key },
        body: JSON.stringify({ paymentId: p.id, amount: 3 }),
      }),
      { ...testEnv(), PAYMENT_GUARD: brokenGuard } as unknown as Env,
      ctx,
    );
    await waitOnExecutionContext(ctx);
    expect(res.status).toBe(500);
    expect((await getPayment(p.id)).amountRefundedMinor).toBe(0);
    expect(await refundRows(p.id)).toEqual([]);

    const retry = await refund({ paymentId: p.id, amount: 3 }, "finance", { "idempotency-key": key });
    expect(retry.status).toBe(201);
    expect(retry.headers.get("idempotent-replayed")).toBeNull();
    expect(retry.body).toMatchObject({ amountMinor: 300, status: "succeeded" });
  });

  it("keeps the reservation and the key when the gateway does not answer; the hourly sweep settles it once", async () => {
    const p = await payment("7.00");
    await env.DB.prepare("INSERT OR REPLACE INTO settings (key, value, updated_by, updated_at) VALUES ('gateways.sandbox.faults', '{\"failureRate\":1}', 'test', 0)").run();
    dropSettingsCache();
    const r = await refund({ paymentId: p.id, amount: 3 });
    expect(r.status).toBe(202);
    expect(r.body).toMatchObject({ status: "pending", amountMinor: 300 });
    // Still reserved: a second refund cannot take the same money while the first one's outcome is unknown.
    expect((await getPayment(p.id)).amountRefundedMinor).toBe(300);
    expect(await ledgerRefunds(p.gatewayPaymentId)).toEqual([]);

    await env.DB.prepare("DELETE FROM settings WHERE key = 'gateways.sandbox.faults'").run();
    dropSettingsCache();
    const { settlePendingRefunds } = await import("../../src/modules/refunds/service");
    const { dbOf } = await import("../../src/db/client");
    const actor = { id: "system:test", kind: "system" as const, role: "system" as const, scopes: [] };
    const swept = await settlePendingRefunds(servicesOf({ actor, now: Date.now() }), 0);
    expect(swept.settled).toBeGreaterThanOrEqual(1);
    expect((await refundRows(p.id))[0]).toMatchObject({ status: "succeeded" });
    expect((await getPayment(p.id)).amountRefundedMinor).toBe(300);
    expect(await ledgerRefunds(p.gatewayPaymentId)).toHaveLength(1);
    // A second sweep finds nothing to do.
    expect((await settlePendingRefunds(servicesOf({ actor, now: Date.now() }), 0)).settled).toBe(0);
  });

  it("queues a refund.issued notification when asked", async () => {
    const p = await payment("20.00");
    const r = await refund({ paymentId: p.id, amount: "4.50", notify: true, reason: "service_issue" });
    expect(r.status).toBe(201);
    const n = await env.DB.prepare("SELECT id, kind, customer_id AS customerId, template, status, payload FROM notifications WHERE dedupe_key = ?").bind(`refund:${r.body.id}`).first<any>();
    expect(n).toMatchObject({ kind: "refund.issued", customerId: p.customerId, template: "refund_issued", status: "queued" });
    expect(JSON.parse(n.payload)).toMatchObject({ refundId: r.body.id, amount: "4.50", amountMinor: 450, currency: "USD", reason: "service_issue" });
    expect(await notificationEventCount(n.id)).toBe(1);

    const quiet = await refund({ paymentId: p.id, amount: 1 });
    expect(await env.DB.prepare("SELECT count(*) AS n FROM notifications WHERE dedupe_key = ?").bind(`refund:${quiet.body.id}`).first("n")).toBe(0);
  });

  it("replays a request sent again with the same Idempotency-Key", async () => {
    const p = await payment("30.00");
    const key = unique("idem");
    const first = await refund({ paymentId: p.id, amount: 10 }, "finance", { "idempotency-key": key });
    const second = await refund({ paymentId: p.id, amount: 10 }, "finance", { "idempotency-key": key });
    expect(first.status).toBe(201);
    expect(second.status).toBe(201);
    expect(second.headers.get("idempotent-replayed")).toBe("true");
    expect(second.body).toEqual(first.body);
    expect(await ledgerRefunds(p.gatewayPaymentId)).toEqual([1000]);
    expect((await refund({ paymentId: p.id, amount: 11 }, "finance", { "idempotency-key": key })).status).toBe(422);
  });

  it("is for finance and admin; everyone may read", async () => {
    const p = await payment("3.00");
    expect((await refund({ paymentId: p.id, amount: 1 }, "viewer")).status).toBe(403);
    expect((await refund({ paymentId: p.id, amount: 1 }, "support")).status).toBe(403);
    expect((await call("POST", "/api/v1/refunds/bulk", { paymentIds: [p.id] }, { role: "viewer" })).status).toBe(403);
    expect((await call("GET", "/api/v1/refunds/report?startDate=2024-06-01", undefined, { role: "viewer" })).status).toBe(403);
    expect((await call("GET", "/api/v1/refunds", undefined, { role: "viewer" })).status).toBe(200);
    expect((await getPayment(p.id)).amountRefundedMinor).toBe(0);
    expect((await refund({ paymentId: p.id, amount: 1 }, "admin")).status).toBe(201);
  });

  it("is described in /openapi.json", async () => {
    const ctx = createExecutionContext();
    const res = await worker.fetch(new Request("http://localhost/openapi.json"), testEnv(), ctx);
    const paths = ((await res.json()) as { paths: Record<string, Record<string, unknown>> }).paths;
    for (const [path, method] of [["/api/v1/refunds", "post"], ["/api/v1/refunds", "get"], ["/api/v1/refunds/{id}", "get"], ["/api/v1/refunds/bulk", "post"], ["/api/v1/refunds/bulk/{bulkId}", "get"], ["/api/v1/refunds/report", "get"]]) {
      expect(paths[path!]?.[method!], `${method} ${path}`).toBeTruthy();
    }
  });
});

describe("bulk refunds", () => {
  it("queues one message per payment, refunds each in full through the handler, once, and reports per payment", async () => {
    const a = await payment("10.00");
    const b = await payment("20.00");
    const c = await payment("30.00");
    const declined = await payment("5.00", "pm_card_chargeDeclinedExpiredCard");
    await refund({ paymentId: c.id, amount: "12.50" }); // bulk refunds what is left
    const ids = [a.id, b.id, c.id, declined.id, "pay_unknown", a.id];
    sent = [];

    const r = await call("POST", "/api/v1/refunds/bulk", { paymentIds: ids, reason: "service_issue", notifyCustomers: true }, { role: "finance" });
    expect(r.status).toBe(202);
    expect(r.body.bulkId).toMatch(/^rfb_/);
    expect(r.body.queued).toBe(5);
    const bulkId = r.body.bulkId;
    expect(sent.map((m) => m.body)).toEqual([a.id, b.id, c.id, declined.id, "pay_unknown"].map((paymentId) => ({ type: "refund.bulk_item", bulkId, paymentId, reason: "service_issue", notify: true })));

    let status = await call("GET", `/api/v1/refunds/bulk/${bulkId}`, undefined, { role: "viewer" });
    expect(status.body.counts).toEqual({ total: 5, pending: 5, succeeded: 0, failed: 0 });
    expect(status.body.results[0]).toEqual({ paymentId: a.id, status: "pending", refundId: null, amount: null, amountMinor: null, currency: null, failureMessage: null });

    for (const m of sent) expect(await processBulkRefundItem(messageServicesOf(testEnv()), m.body)).toEqual({ status: "done" });
    // Redelivered, even twice at once: nothing more is refunded.
    expect(await processBulkRefundItem(messageServicesOf(testEnv()), item(bulkId, a.id, true))).toEqual({ status: "done" });
    await Promise.all([processBulkRefundItem(messageServicesOf(testEnv()), item(bulkId, b.id, true)), processBulkRefundItem(messageServicesOf(testEnv()), item(bulkId, b.id, true))]);

    expect(await ledgerRefunds(a.gatewayPaymentId)).toEqual([1000]);
    expect(await ledgerRefunds(b.gatewayPaymentId)).toEqual([2000]);
    expect(await ledgerRefunds(c.gatewayPaymentId)).toEqual([1250, 1750]);
    expect((await getPayment(c.id)).amountRefundedMinor).toBe(3000);

    status = await call("GET", `/api/v1/refunds/bulk/${bulkId}`);
    expect(status.body).toMatchObject({ bulkId, reason: "service_issue", notifyCustomers: true, requestedBy: "test-finance", counts: { total: 5, pending: 0, succeeded: 3, failed: 2 } });
    expect(status.body.refunded).toEqual([{ currency: "USD", amount: "47.50", amountMinor: 4750 }]);
    const byPayment = Object.fromEntries(status.body.results.map((x: any) => [x.paymentId, x]));
    expect(byPayment[a.id]).toMatchObject({ status: "succeeded", amount: "10.00", amountMinor: 1000, currency: "USD", failureMessage: null });
    expect(byPayment[c.id]).toMatchObject({ status: "succeeded", amount: "17.50" });
    expect(byPayment[declined.id]).toMatchObject({ status: "failed", amountMinor: 0 });
    expect(byPayment[declined.id].failureMessage).toContain("only succeeded payments can be refunded");
    expect(byPayment["pay_unknown"]).toMatchObject({ status: "failed", failureMessage: "payment pay_unknown does not exist" });

    const row = await call("GET", `/api/v1/refunds/${byPayment[a.id].refundId}`);
    expect(row.body).toMatchObject({ bulkId, reason: "service_issue", notify: true, createdBy: "test-finance" });
    const notices = await env.DB.prepare("SELECT count(*) AS n FROM notifications WHERE kind = 'refund.issued' AND dedupe_key IN (?, ?, ?)")
      .bind(...[a, b, c].map((p) => `refund:${byPayment[p.id].refundId}`))
      .first("n");
    expect(notices).toBe(3);
    expect((await call("GET", `/api/v1/refunds?bulkId=${bulkId}`)).body.data).toHaveLength(5);
    expect((await call("GET", "/api/v1/refunds/bulk/rfb_nope")).status).toBe(404);
  });

  it("waits while payments are frozen: requeued (no delivery attempt spent), nothing reserved, then refunded", async () => {
    const p = await payment("8.00");
    const { body } = await call("POST", "/api/v1/refunds/bulk", { paymentIds: [p.id], reason: "service_issue" }, { role: "finance" });
    await call("POST", "/admin/emergency/freeze-payments", { reason: "incident" });
    const waiting = await processBulkRefundItem(messageServicesOf(testEnv()), item(body.bulkId, p.id));
    expect(waiting).toMatchObject({ status: "requeue", reason: expect.stringContaining("incident") });
    expect((waiting as { delaySeconds: number }).delaySeconds).toBeGreaterThan(0);
    expect((await getPayment(p.id)).amountRefundedMinor).toBe(0);
    expect((await call("GET", `/api/v1/refunds/bulk/${body.bulkId}`)).body.counts.pending).toBe(1);

    await call("POST", "/admin/emergency/queue-mode");
    expect((await processBulkRefundItem(messageServicesOf(testEnv()), item(body.bulkId, p.id))).status).toBe("requeue");

    await call("POST", "/admin/emergency/resume-payments");
    expect(await processBulkRefundItem(messageServicesOf(testEnv()), item(body.bulkId, p.id))).toEqual({ status: "done" });
    expect(await ledgerRefunds(p.gatewayPaymentId)).toEqual([800]);
  });

  it("keeps a bulk item pending on a gateway error and finishes it on redelivery with the same key", async () => {
    const p = await payment("6.00");
    const { body } = await call("POST", "/api/v1/refunds/bulk", { paymentIds: [p.id] }, { role: "finance" });
    await env.DB.prepare("INSERT OR REPLACE INTO settings (key, value, updated_by, updated_at) VALUES ('gateways.sandbox.faults', '{\"failureRate\":1}', 'test', 0)").run();
    dropSettingsCache();
    expect(await processBulkRefundItem(messageServicesOf(testEnv()), item(body.bulkId, p.id))).toMatchObject({ status: "retry", reason: expect.stringContaining("injected") });
    expect((await getPayment(p.id)).amountRefundedMinor).toBe(600); // held by the pending refund
    expect(await refundRows(p.id)).toMatchObject([{ status: "pending", amount: 600 }]);
    await env.DB.prepare("DELETE FROM settings WHERE key = 'gateways.sandbox.faults'").run();
    dropSettingsCache();
    expect(await processBulkRefundItem(messageServicesOf(testEnv()), item(body.bulkId, p.id))).toEqual({ status: "done" });
    expect(await refundRows(p.id)).toMatchObject([{ status: "succeeded", amount: 600 }]);
    expect(await ledgerRefunds(p.gatewayPaymentId)).toEqual([600]);
  });

  it("sends up to 100 messages per batch and validates the request", async () => {
    const ids = Array.from({ length: 250 }, (_, i) => `pay_bulk_${i}`);
    const r = await call("POST", "/api/v1/refunds/bulk", { paymentIds: ids, reason: "service_issue" });
    expect(r.body.queued).toBe(250);
    expect(batches).toEqual([100, 100, 50]);
    const status = await call("GET", `/api/v1/refunds/bulk/${r.body.bulkId}`);
    expect(status.body.counts).toEqual({ total: 250, pending: 250, succeeded: 0, failed: 0 });
    expect((await call("POST", "/api/v1/refunds/bulk", { paymentIds: [] })).status).toBe(400);
    expect((await call("POST", "/api/v1/refunds/bulk", { paymentIds: Array.from({ length: 1001 }, (_, i) => `pay_${i}`) })).status).toBe(400);
  });
});

describe("GET /api/v1/refunds/report", () => {
  it("sums refunds per currency by status, reason and gateway, with the refund rate", async () => {
    const at = (s: string) => Date.parse(s);
    const pay = (amount: number, currency: string, status: string, createdAt: number) =>
      env.DB.prepare("INSERT INTO payments (id, invoice_id, customer_id, attempt, amount, currency, status, idempotency_key, amount_refunded, created_at, updated_at) VALUES (?, ?, 'cus_report', 1, ?, ?, ?, ?, 0, ?, ?)")
        .bind(unique("pay"), unique("inv"), amount, currency, status, unique("key"), createdAt, createdAt)
        .run();
    const ref = (amount: number, currency: string, status: string, reason: string, gateway: string | null, createdAt: number) =>
      env.DB.prepare("INSERT INTO refunds (id, payment_id, amount, currency, reason, status, gateway, idempotency_key, notify, created_by, created_at, updated_at) VALUES (?, 'pay_report', ?, ?, ?, ?, ?, ?, 0, 'test', ?, ?)")
        .bind(unique("re"), amount, currency, reason, status, gateway, unique("rk"), createdAt, createdAt)
        .run();
    await pay(10_000, "USD", "succeeded", at("1991-03-01T00:00:00Z"));
    await pay(5_000, "USD", "succeeded", at("1991-03-31T23:59:59.999Z"));
    await pay(9_999, "USD", "failed", at("1991-03-10T00:00:00Z")); // not captured
    await pay(20_000, "EUR", "succeeded", at("1991-03-15T00:00:00Z"));
    await pay(1_000, "JPY", "succeeded", at("1991-03-15T00:00:00Z"));
    await pay(7_000, "USD", "succeeded", at("1991-04-01T00:00:00Z")); // after the range
    await ref(1_500, "USD", "succeeded", "customer_request", "sandbox", at("1991-03-01T00:00:00Z"));
    await ref(1_000, "USD", "succeeded", "service_issue", "stripe", at("1991-03-31T23:59:59.999Z"));
    await ref(700, "USD", "failed", "customer_request", "sandbox", at("1991-03-20T00:00:00Z"));
    await ref(300, "USD", "pending", "service_issue", null, at("1991-03-21T00:00:00Z"));
    await ref(2_000, "EUR", "succeeded", "customer_request", "sandbox", at("1991-03-16T00:00:00Z"));
    await ref(4_444, "USD", "succeeded", "customer_request", "sandbox", at("1991-02-28T23:59:59.999Z")); // before
    await ref(5_555, "USD", "succeeded", "customer_request", "sandbox", at("1991-04-01T00:00:00Z")); // after

    const r = await call("GET", "/api/v1/refunds/report?startDate=1991-03-01&endDate=1991-03-31", undefined, { role: "finance" });
    expect(r.status).toBe(200);
    expect(r.body.startDate).toBe("1991-03-01");
    expect(r.body.endDate).toBe("1991-03-31");
    expect(r.body.currencies.map((c: any) => c.currency)).toEqual(["EUR", "JPY", "USD"]);
    const [eur, jpy, usd] = r.body.currencies;
    const b = (count: number, amount: string, amountMinor: number) => ({ count, amount, amountMinor });
    expect(usd).toEqual({
      currency: "USD",
      ...b(4, "35.00", 3_500),
      byStatus: { pending: b(1, "3.00", 300), succeeded: b(2, "25.00", 2_500), failed: b(1, "7.00", 700) },
      byReason: [
        { reason: "customer_request", ...b(2, "22.00", 2_200), byStatus: { pending: b(0, "0.00", 0), succeeded: b(1, "15.00", 1_500), failed: b(1, "7.00", 700) } },
        { reason: "service_issue", ...b(2, "13.00", 1_300), byStatus: { pending: b(1, "3.00", 300), succeeded: b(1, "10.00", 1_000), failed: b(0, "0.00", 0) } },
      ],
      byGateway: [
        { gateway: "none", ...b(1, "3.00", 300), byStatus: { pending: b(1, "3.00", 300), succeeded: b(0, "0.00", 0), failed: b(0, "0.00", 0) } },
        { gateway: "sandbox", ...b(2, "22.00", 2_200), byStatus: { pending: b(0, "0.00", 0), succeeded: b(1, "15.00", 1_500), failed: b(1, "7.00", 700) } },
        { gateway: "stripe", ...b(1, "10.00", 1_000), byStatus: { pending: b(0, "0.00", 0), succeeded: b(1, "10.00", 1_000), failed: b(0, "0.00", 0) } },
      ],
      refunded: b(2, "25.00", 2_500),
      captured: b(2, "150.00", 15_000),
      refundRate: "0.1667",
    });
    expect(eur).toMatchObject({ ...b(1, "20.00", 2_000), refunded: b(1, "20.00", 2_000), captured: b(1, "200.00", 20_000), refundRate: "0.1000" });
    expect(jpy).toMatchObject({ ...b(0, "0", 0), captured: b(1, "1000", 1_000), refundRate: "0.0000", byReason: [], byGateway: [] });

    const oneDay = await call("GET", "/api/v1/refunds/report?startDate=1991-03-31&endDate=1991-03-31", undefined, { role: "finance" });
    expect(oneDay.body.currencies).toMatchObject([{ currency: "USD", refunded: b(1, "10.00", 1_000), captured: b(1, "50.00", 5_000), refundRate: "0.2000" }]);
    const empty = await call("GET", "/api/v1/refunds/report?startDate=1990-01-01&endDate=1990-01-31", undefined, { role: "finance" });
    expect(empty.body.currencies).toEqual([]);

    expect((await call("GET", "/api/v1/refunds/report?startDate=1991-03-31&endDate=1991-03-01")).status).toBe(422);
    expect((await call("GET", "/api/v1/refunds/report?startDate=March")).status).toBe(400);
    expect((await call("GET", "/api/v1/refunds/report")).status).toBe(400);
    expect((await call("GET", "/api/v1/refunds/report?startDate=1991-03-01", undefined, { role: "support" })).status).toBe(403);
  });
});

// The failures the refund use case and routes return (Outcome) are answered exactly as when they were thrown.
describe("refund failures as problem+json", () => {
  const problemOf = (r: { status: number; body: any }) => ({ status: r.status, detail: r.body.detail, errors: r.body.errors });

  it("unknown payment, refund or bulk refund: 404 naming it; a report ending before it starts: 422 on endDate", async () => {
    expect(problemOf(await refund({ paymentId: "pay_nope", reason: "requested_by_customer" }))).toEqual({ status: 404, detail: "payment pay_nope does not exist", errors: undefined });
    expect(problemOf(await call("GET", "/api/v1/refunds/re_nope"))).toEqual({ status: 404, detail: "refund re_nope does not exist", errors: undefined });
    expect(problemOf(await call("GET", "/api/v1/refunds/bulk/rfb_nope"))).toEqual({ status: 404, detail: "bulk refund rfb_nope does not exist", errors: undefined });
    expect(problemOf(await call("GET", "/api/v1/refunds/report?startDate=2024-06-02&endDate=2024-06-01"))).toEqual({
      status: 422,
      detail: "endDate: must not be before startDate",
      errors: [{ path: "endDate", message: "must not be before startDate" }],
    });
  });

  it("an amount that is not exact money is a 400 on amount; more than what is left, a 422 saying what is left", async () => {
    const p = await payment("10.00");
    expect(problemOf(await refund({ paymentId: p.id, amount: "1.001", reason: "requested_by_customer" }))).toMatchObject({ status: 400, errors: [{ path: "amount" }] });
    expect(problemOf(await refund({ paymentId: p.id, amount: "0", reason: "requested_by_customer" }))).toEqual({ status: 400, detail: "amount: must be greater than 0", errors: [{ path: "amount", message: "must be greater than 0" }] });
    expect(problemOf(await refund({ paymentId: p.id, amount: "10.01", reason: "requested_by_customer" }))).toEqual({
      status: 422,
      detail: `amount 10.01 USD exceeds the remaining refundable amount 10.00 USD of payment ${p.id}`,
      errors: [{ path: "amount", message: "exceeds the remaining refundable amount 10.00 USD" }],
    });
    expect((await refund({ paymentId: p.id, reason: "requested_by_customer" })).status).toBe(201);
    const message = `payment ${p.id} is already fully refunded`;
    expect(problemOf(await refund({ paymentId: p.id, reason: "requested_by_customer" }))).toEqual({ status: 422, detail: `amount: ${message}`, errors: [{ path: "amount", message }] });
  });
});
