import { beforeEach, describe, expect, it, vi } from "vitest";
import { env } from "cloudflare:workers";
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import entry from "../../src/index";
import { dropSettingsCache } from "../../src/platform/settings";
import { CHARGES_IN_FLIGHT } from "../../queues/payments";
import { unique, api, attemptPayment, messageServicesOf } from "../helpers";

const worker: Required<Pick<ExportedHandler<Env>, "fetch" | "queue">> = entry;

/** Messages the code sent to the payments queue (kept out of the real queue so tests decide when they run). */
let sent: { body: any; delaySeconds?: number }[] = [];
const spyQueue = {
  send: async (body: unknown, opts?: { delaySeconds?: number }) => void sent.push({ body, ...(opts?.delaySeconds !== undefined ? { delaySeconds: opts.delaySeconds } : {}) }),
  sendBatch: async (msgs: { body: unknown }[]) => void sent.push(...msgs.map((m) => ({ body: m.body }))),
} as unknown as Queue;
const testEnv = () => ({ ...env, PAYMENT_QUEUE: spyQueue }) as Env;

const call = (method: string, path: string, body?: unknown, opts: { role?: "admin" | "finance" | "viewer"; contentType?: string | null } = {}) =>
  api(method, path, { body, as: opts.role, contentType: opts.contentType, env: testEnv() });

let msgSeq = 0;
const attempt = (invoiceId: string, n: number) => attemptPayment(invoiceId, n, { env: testEnv() });

async function subscriptionWith(paymentMethod: string, amount = "25.00") {
  const customer = await call("POST", "/api/v1/customers", { email: `${unique("p")}@example.com`, currency: "USD", metadata: { alternatePaymentMethod: "pm_card_mastercard" } });
  const plan = await call("POST", "/api/v1/plans", { name: "Paid", currency: "USD", interval: "month", prices: [{ type: "flat", amount }] });
  const sub = await call("POST", "/api/v1/subscriptions", { customerId: customer.body.id, planId: plan.body.id, paymentMethod });
  expect(sub.status).toBe(201);
  const invoices = await call("GET", `/api/v1/invoices?subscriptionId=${sub.body.id}`);
  return { sub: sub.body, invoice: invoices.body.data[0] };
}

const ledgerCharges = async (invoiceId: string) =>
  (await env.DB.prepare("SELECT count(*) AS n FROM sandbox_ledger WHERE kind = 'charge' AND idempotency_key LIKE ?").bind(`${invoiceId}:%`).first<{ n: number }>())!.n;
const invoiceStatus = async (id: string) => (await call("GET", `/api/v1/invoices/${id}`)).body;

beforeEach(async () => {
  sent = [];
  await call("POST", "/admin/emergency/resume-payments");
  await env.DB.prepare("DELETE FROM settings WHERE key IN ('payments.retry', 'gateways.sandbox.faults')").run();
  dropSettingsCache();
  sent = [];
});

describe("collection through the payments queue", () => {
  it("finalizing an invoice queues its first attempt, which charges it once and marks it paid", async () => {
    const counter = async (name: string, labels: string) =>
      (await env.DB.prepare("SELECT value FROM metric_counters WHERE name = ? AND labels = ?").bind(name, labels).first<{ value: number }>())?.value ?? 0;
    const before = {
      total: await counter("billing_payments_total", 'gateway="sandbox",status="succeeded"'),
      duration: await counter("billing_payment_duration_seconds_count", 'gateway="sandbox",status="succeeded"'),
    };
    const { invoice, sub } = await subscriptionWith("pm_card_visa");
    const revenueBefore = await counter("billing_revenue_total", `currency="USD",gateway="sandbox",plan="${sub.planId}"`);
    expect(invoice.status).toBe("open");
    expect(sent).toContainEqual({ body: { type: "payment.attempt", invoiceId: invoice.id, attempt: 1 } });
    const result = await attempt(invoice.id, 1);
    expect(result.explicitAcks).toHaveLength(1);
    const paid = await invoiceStatus(invoice.id);
    expect(paid).toMatchObject({ status: "paid", amountDue: { amountMinor: 0 }, amountPaid: { amountMinor: 2500 } });
    const pays = await call("GET", `/api/v1/payments?invoiceId=${invoice.id}`);
    expect(pays.body.data).toMatchObject([{ status: "succeeded", attempt: 1, gateway: "sandbox", amountMinor: 2500, currency: "USD" }]);
    // A redelivered message charges nothing more, and counts nothing more.
    await attempt(invoice.id, 1);
    expect(await ledgerCharges(invoice.id)).toBe(1);
    expect(await counter("billing_payments_total", 'gateway="sandbox",status="succeeded"')).toBe(before.total + 1);
    expect(await counter("billing_payment_duration_seconds_count", 'gateway="sandbox",status="succeeded"')).toBe(before.duration + 1);
    expect(await counter("billing_revenue_total", `currency="USD",gateway="sandbox",plan="${sub.planId}"`)).toBe(revenueBefore + 2500);
    const audit = await call("GET", `/api/v1/audit/search?action=payment.processed&target=${pays.body.data[0].id}`);
    expect(audit.body.data).toHaveLength(1);
  });

  it("recovers a crash between the gateway's success and the local write without charging twice", async () => {
    const { invoice } = await subscriptionWith("pm_card_visa");
    // The worker died after the gateway charged: the gateway holds the charge, our attempt row says processing.
    const { SandboxGateway } = await import("../../src/gateways/sandbox");
    const { dbOf } = await import("../../src/db/client");
    await new SandboxGateway(dbOf(env)).charge({ amountMinor: 2500, currency: "USD", customerId: invoice.customerId, paymentMethod: "pm_card_visa", invoiceId: invoice.id, idempotencyKey: `${invoice.id}:attempt:1` });
    await env.DB.prepare("INSERT INTO payments (id, invoice_id, customer_id, attempt, amount, currency, status, payment_method, idempotency_key, amount_refunded, created_at, updated_at) VALUES (?, ?, ?, 1, 2500, 'USD', 'processing', 'pm_card_visa', ?, 0, ?, ?)")
      .bind(unique("pay"), invoice.id, invoice.customerId, `${invoice.id}:attempt:1`, Date.now(), Date.now())
      .run();
    await attempt(invoice.id, 1);
    expect((await invoiceStatus(invoice.id)).status).toBe("paid");
    expect(await ledgerCharges(invoice.id)).toBe(1);
  });

  it("retries a decline with the configured backoff, then gives up: past_due, failure notice", async () => {
    const cfg = await call("PUT", "/api/v1/payments/retry-config", { maxAttempts: 3, backoffMultiplier: 2, initialDelay: 600 }, { role: "finance" });
    expect(cfg.body).toMatchObject({ maxAttempts: 3, backoffMultiplier: 2, initialDelay: 600, gracePeriodDays: 7 });
    const { sub, invoice } = await subscriptionWith("pm_card_chargeDeclined");
    sent = [];
    await attempt(invoice.id, 1);
    expect(sent).toEqual([{ body: { type: "payment.attempt", invoiceId: invoice.id, attempt: 2 }, delaySeconds: 600 }]);
    let inv = await invoiceStatus(invoice.id);
    expect(inv).toMatchObject({ status: "open", attemptCount: 1, lastError: "card_declined: Your card was declined." });
    const queue = await call("GET", "/api/v1/payments/retry-queue");
    expect(queue.body.data.find((p: any) => p.invoiceId === invoice.id)).toMatchObject({ attempt: 1, nextAttempt: 2, attemptsLeft: 2, failureCode: "card_declined" });
    sent = [];
    await attempt(invoice.id, 2);
    expect(sent).toEqual([{ body: { type: "payment.attempt", invoiceId: invoice.id, attempt: 3 }, delaySeconds: 1200 }]);
    sent = [];
    await attempt(invoice.id, 3);
    expect(sent).toEqual([]);
    inv = await invoiceStatus(invoice.id);
    expect(inv).toMatchObject({ status: "open", attemptCount: 3 });
    expect((await call("GET", `/api/v1/subscriptions/${sub.id}`)).body.status).toBe("past_due");
    const notice = await env.DB.prepare("SELECT kind, template FROM notifications WHERE invoice_id = ?").bind(invoice.id).all();
    expect(notice.results).toEqual([{ kind: "payment.failed_final", template: "payment_failed" }]);
    const count = await call("GET", "/api/v1/payments/failed/count");
    expect(count.body.count).toBeGreaterThanOrEqual(1);
    expect(count.body.byFailureCode.card_declined).toBeGreaterThanOrEqual(1);

    // A manual retry with the customer's alternate method succeeds and brings the subscription back.
    const pays = await call("GET", `/api/v1/payments?invoiceId=${invoice.id}&limit=1`);
    const retry = await call("POST", `/api/v1/payments/${pays.body.data[0].id}/retry`, { useAlternateMethod: true }, { role: "finance" });
    expect(retry.status).toBe(200);
    expect(retry.body).toMatchObject({ outcome: "succeeded", payment: { attempt: 4, paymentMethod: "pm_card_mastercard" } });
    expect((await call("GET", `/api/v1/subscriptions/${sub.id}`)).body.status).toBe("active");
  });

  it("does not retry a decline that cannot succeed (expired card)", async () => {
    const { invoice } = await subscriptionWith("pm_card_chargeDeclinedExpiredCard");
    sent = [];
    await attempt(invoice.id, 1);
    expect(sent).toEqual([]);
    expect((await call("GET", `/api/v1/payments?invoiceId=${invoice.id}`)).body.data[0]).toMatchObject({ status: "failed", failureCode: "expired_card", nextRetryAt: null });
  });

  it("validates the retry configuration", async () => {
    const bad = await call("PUT", "/api/v1/payments/retry-config", { maxAttempts: 0 }, { role: "finance" });
    expect(bad.status).toBe(400);
    expect(bad.body.errors[0].path).toBe("maxAttempts");
    expect((await call("PUT", "/api/v1/payments/retry-config", { maxAttempts: 2 }, { role: "viewer" })).status).toBe(403);
  });

  it("requeues every failed payment on request", async () => {
    const { invoice } = await subscriptionWith("pm_card_chargeDeclined");
    await attempt(invoice.id, 1);
    sent = [];
    const r = await call("POST", "/admin/payments/queue-failed");
    expect(r.status).toBe(200);
    expect(r.body.invoiceIds).toContain(invoice.id);
    expect(sent).toContainEqual({ body: { type: "payment.attempt", invoiceId: invoice.id, attempt: 2 } });
  });
});

describe("payment freeze", () => {
  it("freezes with the runbook's curl (no Content-Type): direct charges get 423, queued ones are parked, resume releases them", async () => {
    const { invoice } = await subscriptionWith("pm_card_chargeDeclined");
    await attempt(invoice.id, 1);
    const frozen = await call("POST", "/admin/emergency/freeze-payments", '{"reason": "Security incident detected"}', { contentType: "application/x-www-form-urlencoded" });
    expect(frozen.status).toBe(200);
    expect(frozen.body).toMatchObject({ mode: "frozen", reason: "Security incident detected", previous: "normal", drained: true });
    const pays = await call("GET", `/api/v1/payments?invoiceId=${invoice.id}`);
    const direct = await call("POST", `/api/v1/payments/${pays.body.data[0].id}/retry`, { paymentMethod: "pm_card_visa" }, { role: "finance" });
    expect(direct.status).toBe(423);
    expect(direct.body.detail).toContain("Security incident detected");

    const other = await subscriptionWith("pm_card_visa");
    await attempt(other.invoice.id, 1);
    expect(await ledgerCharges(other.invoice.id)).toBe(0);
    expect((await call("GET", `/api/v1/payments?invoiceId=${other.invoice.id}`)).body.data[0].status).toBe("parked");

    expect((await call("POST", "/admin/emergency/queue-mode", undefined, { contentType: null })).body.mode).toBe("queue");
    const parkedDirect = await call("POST", `/api/v1/payments/${pays.body.data[0].id}/retry`, { paymentMethod: "pm_card_visa" }, { role: "finance" });
    expect(parkedDirect.status).toBe(202);

    sent = [];
    const resumed = await call("POST", "/admin/emergency/resume-payments", undefined, { contentType: null });
    expect(resumed.body).toMatchObject({ mode: "normal", released: 2 });
    expect(sent.map((m) => m.body.invoiceId).sort()).toEqual([invoice.id, other.invoice.id].sort());
    for (const m of sent) await attempt(m.body.invoiceId, m.body.attempt);
    expect((await invoiceStatus(other.invoice.id)).status).toBe("paid");
    expect((await invoiceStatus(invoice.id)).status).toBe("paid");
    const audit = await call("GET", "/api/v1/audit/search?target=global");
    expect(audit.body.data.slice(0, 3).map((a: any) => a.action)).toEqual(["payments.resumed", "payments.queue_mode", "payments.frozen"]);
  });

  it("a freeze during a batch lets the charge in flight finish and starts no other", async () => {
    const subs: Awaited<ReturnType<typeof subscriptionWith>>[] = [];
    // More charges than a batch runs at once, so the last ones have not started when the freeze lands.
    const n = CHARGES_IN_FLIGHT + 2;
    for (let i = 0; i < n; i++) subs.push(await subscriptionWith("pm_card_visa", "3.00"));
    await env.DB.prepare("INSERT OR REPLACE INTO settings (key, value, updated_by, updated_at) VALUES ('gateways.sandbox.faults', '{\"latencyMs\":1500}', 'test', 0)").run();
    dropSettingsCache();
    const batch = createMessageBatch(
      "billing-payments",
      subs.map((s, i) => ({ id: `fb${i}-${msgSeq++}`, timestamp: new Date(), attempts: 1, body: { type: "payment.attempt", invoiceId: s.invoice.id, attempt: 1 } })),
    );
    const ctx = createExecutionContext();
    const running = worker.queue(batch, testEnv(), ctx);
    // Charges in flight: started, waiting on the (slow) gateway.
    const statusOf = async (invoiceId: string) => (await env.DB.prepare("SELECT status FROM payments WHERE invoice_id = ?").bind(invoiceId).first<{ status: string }>())?.status;
    await vi.waitFor(async () => expect((await Promise.all(subs.map((s) => statusOf(s.invoice.id)))).filter((x) => x === "processing").length).toBeGreaterThanOrEqual(1), { timeout: 10_000, interval: 5 });
    const frozen = await call("POST", "/admin/emergency/freeze-payments", { reason: "incident" });
    expect(frozen.body.drained).toBe(true);
    const chargedAtFreeze = (await Promise.all(subs.map((s) => ledgerCharges(s.invoice.id)))).reduce((a, b) => a + b, 0);
    await running;
    const statuses = [];
    for (const s of subs) statuses.push((await call("GET", `/api/v1/payments?invoiceId=${s.invoice.id}`)).body.data[0].status);
    const charged = (await Promise.all(subs.map((s) => ledgerCharges(s.invoice.id)))).reduce((a, b) => a + b, 0);
    expect(charged).toBe(chargedAtFreeze);
    expect(statuses.filter((s) => s === "succeeded")).toHaveLength(charged);
    expect(statuses.filter((s) => s === "parked")).toHaveLength(n - charged);
    expect(charged).toBeGreaterThanOrEqual(1);
    expect(charged).toBeLessThan(n);
  });

  it("concurrent resumes release each parked charge exactly once, in the order parked", async () => {
    await call("POST", "/admin/emergency/queue-mode", { reason: "maintenance" });
    const parked = [];
    for (let i = 0; i < 6; i++) {
      const { invoice } = await subscriptionWith("pm_card_visa", "2.00");
      await attempt(invoice.id, 1);
      parked.push(invoice.id);
    }
    for (const id of parked) expect((await call("GET", `/api/v1/payments?invoiceId=${id}`)).body.data[0].status).toBe("parked");
    sent = [];
    const resumes = await Promise.all(Array.from({ length: 5 }, () => call("POST", "/admin/emergency/resume-payments")));
    expect(resumes.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    const released = sent.filter((m) => m.body.type === "payment.attempt").map((m) => m.body.invoiceId);
    expect(released.sort()).toEqual([...parked].sort());
    expect(resumes.reduce((n, r) => n + r.body.released, 0)).toBe(parked.length);
    for (const id of parked) expect((await call("GET", `/api/v1/payments?invoiceId=${id}`)).body.data[0].status).toBe("pending");
  });

  it("releases a backlog larger than a page in pages, continuing through the payments queue, in order", async () => {
    const { releaseParked, RELEASE_PAGE } = await import("../../src/modules/payments/service");
    const { dbOf } = await import("../../src/db/client");
    const now = Date.now();
    const n = RELEASE_PAGE * 2 + 3;
    const ids = Array.from({ length: n }, (_, i) => ({ id: `pay_bk${msgSeq}_${String(i).padStart(4, "0")}`, invoiceId: `inv_bk${msgSeq}_${String(i).padStart(4, "0")}`, at: now - n + i }));
    msgSeq++;
    for (let i = 0; i < ids.length; i += 20) {
      await env.DB.batch(
        ids.slice(i, i + 20).map((p) =>
          env.DB.prepare("INSERT INTO payments (id, invoice_id, customer_id, attempt, amount, currency, status, payment_method, idempotency_key, amount_refunded, created_at, updated_at) VALUES (?, ?, 'cus_bk', 1, 100, 'USD', 'parked', NULL, ?, 0, ?, ?)").bind(p.id, p.invoiceId, `${p.invoiceId}:attempt:1`, p.at, p.at),
        ),
      );
    }
    sent = [];
    const first = await releaseParked(messageServicesOf(testEnv()));
    expect(first).toBe(RELEASE_PAGE);
    const attempts = () => sent.filter((m) => m.body.type === "payment.attempt").map((m) => m.body.invoiceId);
    expect(attempts()).toEqual(ids.slice(0, RELEASE_PAGE).map((p) => p.invoiceId));
    const continuations = sent.filter((m) => m.body.type === "payments.release_parked");
    expect(continuations).toHaveLength(1);
    // The continuation runs as a queue message: each delivery releases the next page, then hands on again.
    for (let round = 0; round < 5; round++) {
      const next = sent.filter((m) => m.body.type === "payments.release_parked");
      if (!next.length) break;
      sent = sent.filter((m) => m.body.type !== "payments.release_parked");
      for (const m of next) {
        const batch = createMessageBatch("billing-payments", [{ id: `rp${msgSeq++}`, timestamp: new Date(), attempts: 1, body: m.body }]);
        const ctx = createExecutionContext();
        await worker.queue(batch, testEnv(), ctx);
        expect((await getQueueResult(batch, ctx)).explicitAcks).toHaveLength(1);
      }
    }
    expect(attempts()).toEqual(ids.map((p) => p.invoiceId));
    const left = await env.DB.prepare("SELECT count(*) AS n FROM payments WHERE customer_id = 'cus_bk' AND status = 'parked'").first<{ n: number }>();
    expect(left!.n).toBe(0);
  });

  it("keeps its mode across a restart of the guard object", async () => {
    await call("POST", "/admin/emergency/freeze-payments", { reason: "persisted" });
    const { runInDurableObject } = await import("cloudflare:test");
    const { PaymentGuard } = await import("../../durable-objects/payment-guard");
    const stub = env.PAYMENT_GUARD.get(env.PAYMENT_GUARD.idFromName("global"));
    const mode = await runInDurableObject(stub, async (_i, state) => {
      const fresh = new PaymentGuard(state, env);
      await state.blockConcurrencyWhile(async () => {});
      return fresh.state();
    });
    expect(mode).toMatchObject({ mode: "frozen", reason: "persisted" });
    expect((await call("GET", "/admin/emergency/status")).body.mode).toBe("frozen");
    expect((await call("POST", "/admin/emergency/freeze-payments", { reason: "x" }, { role: "finance" })).status).toBe(403);
  });
});

describe("dead letters", () => {
  it("are visible to admins", async () => {
    const batch = createMessageBatch("billing-dlq", [{ id: `dl-${msgSeq++}`, timestamp: new Date(), attempts: 6, body: { type: "payment.attempt", invoiceId: "inv_gone", attempt: 9 } }]);
    const ctx = createExecutionContext();
    await worker.queue(batch, env, ctx);
    await getQueueResult(batch, ctx);
    const r = await call("GET", "/admin/dlq");
    expect(r.body.data.find((d: any) => d.body.invoiceId === "inv_gone")).toMatchObject({ attempts: 6 });
    expect((await call("GET", "/admin/dlq", undefined, { role: "viewer" })).status).toBe(403);
  });
});

describe("a gateway that does not answer", () => {
  it("keeps the attempt processing and asks again with the same key, never a new charge", async () => {
    const { invoice } = await subscriptionWith("pm_card_visa");
    await env.DB.prepare("INSERT OR REPLACE INTO settings (key, value, updated_by, updated_at) VALUES ('gateways.sandbox.faults', '{\"failureRate\":1}', 'test', 0)").run();
    dropSettingsCache();
    const first = await attempt(invoice.id, 1);
    expect(first.explicitAcks).toHaveLength(0);
    expect(first.retryMessages).toHaveLength(1);
    const row = (await call("GET", `/api/v1/payments?invoiceId=${invoice.id}`)).body.data[0];
    expect(row).toMatchObject({ attempt: 1, status: "processing", failureCode: "gateway_error", gateway: "sandbox" });
    expect((await invoiceStatus(invoice.id)).status).toBe("open");
    // A manual retry asks the same attempt again rather than opening attempt 2.
    const manual = await call("POST", `/api/v1/payments/${row.id}/retry`, {}, { role: "finance" });
    expect(manual.body).toMatchObject({ outcome: "unknown", payment: { attempt: 1 } });
    await env.DB.prepare("DELETE FROM settings WHERE key = 'gateways.sandbox.faults'").run();
    dropSettingsCache();
    const second = await attempt(invoice.id, 1);
    expect(second.explicitAcks).toHaveLength(1);
    expect((await invoiceStatus(invoice.id)).status).toBe("paid");
    expect(await ledgerCharges(invoice.id)).toBe(1);
    expect((await call("GET", `/api/v1/payments?invoiceId=${invoice.id}`)).body.data).toHaveLength(1);
  });
});
