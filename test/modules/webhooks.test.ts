import { beforeEach, describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import Stripe from "stripe";
import entry from "../../src/index";
import { applyStripeEvent, cleanupWebhookEvents } from "../../src/modules/webhooks/routes";
import { notificationEventCount, unique, api, servicesOf, messageServicesOf } from "../helpers";

const worker: Required<Pick<ExportedHandler<Env>, "fetch">> = entry;
const SECRET = "whsec_test_secret";
const cryptoProvider = Stripe.createSubtleCryptoProvider();
const stripe = new Stripe("sk_test_unused", { httpClient: Stripe.createFetchHttpClient() });

/** What the code sent to the queues (kept out of the real queues so nothing runs behind the test's back). */
let sent: { queue: string; body: any; delaySeconds?: number }[] = [];
const spy = (queue: string) =>
  ({
    send: async (body: unknown, opts?: { delaySeconds?: number }) => void sent.push({ queue, body, ...(opts?.delaySeconds !== undefined ? { delaySeconds: opts.delaySeconds } : {}) }),
    sendBatch: async (msgs: { body: unknown }[]) => void sent.push(...msgs.map((m) => ({ queue, body: m.body }))),
  }) as unknown as Queue;
const testEnv = () => ({ ...env, WEBHOOK_QUEUE: spy("webhooks"), PAYMENT_QUEUE: spy("payments") }) as Env;
const queued = (queue: string) => sent.filter((m) => m.queue === queue);

const call = (method: string, path: string, body?: unknown, opts: { role?: "admin" | "finance" | "viewer" | null; contentType?: string | null } = {}) =>
  api(method, path, { body, as: opts.role, contentType: opts.contentType, env: testEnv() });

const nowSeconds = () => Math.floor(Date.now() / 1000);
const event = (type: string, object: Record<string, unknown>, id = unique("evt")) => ({ id, object: "event", api_version: "2024-06-20", created: nowSeconds(), livemode: false, type, data: { object } });

async function deliver(evt: object | string, sig: { secret?: string; timestamp?: number; header?: string | null; body?: string } = {}) {
  const payload = typeof evt === "string" ? evt : JSON.stringify(evt);
  const header = sig.header !== undefined ? sig.header : await stripe.webhooks.generateTestHeaderStringAsync({ payload, secret: sig.secret ?? SECRET, ...(sig.timestamp ? { timestamp: sig.timestamp } : {}), cryptoProvider });
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (header !== null) headers["stripe-signature"] = header;
  const ctx = createExecutionContext();
  const res = await worker.fetch(new Request("http://localhost/webhooks/stripe", { method: "POST", headers, body: sig.body ?? payload }), testEnv(), ctx);
  await waitOnExecutionContext(ctx);
  return { status: res.status, body: (await res.json()) as any, contentType: res.headers.get("content-type") };
}

/** Delivers the event (stored and queued) and applies it as the webhooks queue would. */
async function deliverAndApply(evt: { id: string }) {
  expect((await deliver(evt)).status).toBe(200);
  return applyStripeEvent(messageServicesOf(testEnv()), evt.id);
}

const stored = (id: string) => env.DB.prepare("SELECT * FROM webhook_events WHERE id = ?").bind(id).first<any>();
const paymentRow = (id: string) => env.DB.prepare("SELECT * FROM payments WHERE id = ?").bind(id).first<any>();
const auditOf = (action: string, target: string) => env.DB.prepare("SELECT * FROM audit_log WHERE action = ? AND target_id = ?").bind(action, target).all<any>().then((r) => r.results);

/** An open invoice of 25.00 USD (its first attempt message goes to the spy, so nothing charges it). */
async function openInvoice() {
  const customer = await call("POST", "/api/v1/customers", { email: `${unique("w")}@example.com`, currency: "USD" });
  const plan = await call("POST", "/api/v1/plans", { name: "Paid", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "25.00" }] });
  const sub = await call("POST", "/api/v1/subscriptions", { customerId: customer.body.id, planId: plan.body.id, paymentMethod: "pm_card_visa" });
  expect(sub.status).toBe(201);
  const invoices = await call("GET", `/api/v1/invoices?subscriptionId=${sub.body.id}`);
  const invoice = invoices.body.data[0];
  expect(invoice.status).toBe("open");
  sent = []; // the invoice's first attempt message: not what the tests look at
  return invoice as { id: string; customerId: string; subscriptionId: string };
}

/** A Stripe payment in flight: what the Stripe gateway leaves when an intent is still processing. */
async function stripePayment(opts: { status?: string; gatewayPaymentId?: string | null; attempt?: number } = {}) {
  const invoice = await openInvoice();
  const id = unique("pay");
  const ref = opts.gatewayPaymentId === undefined ? unique("pi") : opts.gatewayPaymentId;
  const attempt = opts.attempt ?? 1;
  const now = Date.now();
  await env.DB.prepare(
    "INSERT INTO payments (id, invoice_id, customer_id, attempt, amount, currency, status, gateway, gateway_payment_id, payment_method, idempotency_key, amount_refunded, created_at, updated_at) VALUES (?, ?, ?, ?, 2500, 'USD', ?, 'stripe', ?, 'pm_card_visa', ?, 0, ?, ?)",
  )
    .bind(id, invoice.id, invoice.customerId, attempt, opts.status ?? "processing", ref, `${invoice.id}:attempt:${attempt}`, now, now)
    .run();
  return { id, intent: ref ?? "", invoice, idempotencyKey: `${invoice.id}:attempt:${attempt}` };
}

const intent = (id: string, extra: Record<string, unknown> = {}) => ({ id, object: "payment_intent", amount: 2500, amount_received: 2500, currency: "usd", status: "succeeded", metadata: {}, ...extra });

beforeEach(() => {
  sent = [];
});

describe("POST /webhooks/stripe", () => {
  it("stores a verified event and queues it, without credentials", async () => {
    const evt = event("payment_intent.succeeded", intent(unique("pi")));
    const r = await deliver(evt);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ received: true });
    expect(queued("webhooks")).toEqual([{ queue: "webhooks", body: { type: "stripe.event", eventId: evt.id } }]);
    expect(await stored(evt.id)).toMatchObject({ id: evt.id, source: "stripe", type: "payment_intent.succeeded", status: "received", payload: JSON.stringify(evt), processed_at: null });
  });

  it("stores and queues a replayed event once", async () => {
    const evt = event("charge.refunded", { id: unique("ch") });
    expect((await deliver(evt)).body).toEqual({ received: true });
    const again = await deliver(evt);
    expect(again.status).toBe(200);
    expect(again.body).toEqual({ received: true, duplicate: true });
    expect(queued("webhooks")).toHaveLength(1);
    const rows = await env.DB.prepare("SELECT count(*) AS n FROM webhook_events WHERE id = ?").bind(evt.id).first<{ n: number }>();
    expect(rows!.n).toBe(1);
  });

  it("verifies the raw bytes as Stripe sent them (pretty-printed, charset in the Content-Type)", async () => {
    const evt = event("payment_intent.succeeded", intent(unique("pi")));
    const payload = JSON.stringify(evt, null, 2);
    const header = await stripe.webhooks.generateTestHeaderStringAsync({ payload, secret: SECRET, cryptoProvider });
    const ctx = createExecutionContext();
    const res = await worker.fetch(new Request("http://localhost/webhooks/stripe", { method: "POST", headers: { "content-type": "application/json; charset=utf-8", "stripe-signature": header }, body: payload }), testEnv(), ctx);
    await waitOnExecutionContext(ctx);
    expect(res.status).toBe(200);
    expect((await stored(evt.id)).payload).toBe(payload);
  });

  it("queues again a redelivery of an event stuck in received (the first delivery died before queueing it)", async () => {
    const evt = event("payment_intent.succeeded", intent(unique("pi")));
    await deliver(evt);
    await env.DB.prepare("UPDATE webhook_events SET received_at = ? WHERE id = ?").bind(Date.now() - 20 * 60_000, evt.id).run();
    sent = [];
    expect((await deliver(evt)).body).toEqual({ received: true, duplicate: true, requeued: true });
    expect(queued("webhooks")).toHaveLength(1);
  });

  it("refuses a forged signature (body changed after signing) without revealing the expected one", async () => {
    const evt = event("payment_intent.succeeded", intent(unique("pi")));
    const header = await stripe.webhooks.generateTestHeaderStringAsync({ payload: JSON.stringify(evt), secret: SECRET, cryptoProvider });
    const forged = JSON.stringify({ ...evt, data: { object: intent(evt.data.object.id as string, { amount: 1 }) } });
    const r = await deliver(evt, { header, body: forged });
    expect(r.status).toBe(400);
    expect(r.contentType).toContain("application/problem+json");
    expect(r.body).toMatchObject({ status: 400, title: "Bad request" });
    expect(JSON.stringify(r.body)).not.toMatch(/v1=|whsec|expected signature/i);
    expect(await stored(evt.id)).toBeNull();
    expect(sent).toEqual([]);
  });

  it("refuses a signature made with another secret", async () => {
    const evt = event("payment_intent.succeeded", intent(unique("pi")));
    const r = await deliver(evt, { secret: "whsec_someone_else" });
    expect(r.status).toBe(400);
    expect(await stored(evt.id)).toBeNull();
  });

  it("refuses a stale signature (older than 300 s) and one dated too far ahead", async () => {
    const evt = event("payment_intent.succeeded", intent(unique("pi")));
    expect((await deliver(evt, { timestamp: nowSeconds() - 301 })).status).toBe(400);
    expect((await deliver(evt, { timestamp: nowSeconds() + 600 })).status).toBe(400);
    // Inside the tolerance is fine.
    expect((await deliver(evt, { timestamp: nowSeconds() - 200 })).status).toBe(200);
  });

  it("refuses a missing or malformed Stripe-Signature header", async () => {
    const evt = event("payment_intent.succeeded", intent(unique("pi")));
    expect((await deliver(evt, { header: null })).status).toBe(400);
    expect((await deliver(evt, { header: "garbage" })).status).toBe(400);
    expect((await deliver(evt, { header: `t=${nowSeconds()},v1=${"0".repeat(64)}` })).status).toBe(400);
    expect(await stored(evt.id)).toBeNull();
  });

  it("refuses a signed payload that is not an event", async () => {
    const r = await deliver(JSON.stringify({ hello: "world" }));
    expect(r.status).toBe(400);
  });
});

describe("applyStripeEvent", () => {
  it("payment_intent.succeeded: the processing payment succeeds, its invoice is paid, audited once", async () => {
    const p = await stripePayment();
    const evt = event("payment_intent.succeeded", intent(p.intent));
    expect(await deliverAndApply(evt)).toEqual({ status: "done" });
    expect(await paymentRow(p.id)).toMatchObject({ status: "succeeded", gateway_payment_id: p.intent });
    const inv = await env.DB.prepare("SELECT status, amount_due, amount_paid FROM invoices WHERE id = ?").bind(p.invoice.id).first();
    expect(inv).toEqual({ status: "paid", amount_due: 0, amount_paid: 2500 });
    const row = await stored(evt.id);
    expect(row).toMatchObject({ status: "processed", error: null });
    expect(row.processed_at).toBeGreaterThan(0);
    // A second delivery of the queue message changes nothing.
    expect(await applyStripeEvent(messageServicesOf(testEnv()), evt.id)).toEqual({ status: "done" });
    const audit = await auditOf("payment.reconciled_by_webhook", p.id);
    expect(audit).toHaveLength(1);
    expect(JSON.parse(audit[0].after)).toMatchObject({ status: "succeeded", eventId: evt.id, invoiceStatus: "paid" });
  });

  it("payment_intent.succeeded finds the payment by the idempotency key in the intent's metadata", async () => {
    const p = await stripePayment({ gatewayPaymentId: null });
    const pi = unique("pi");
    await deliverAndApply(event("payment_intent.succeeded", intent(pi, { metadata: { invoiceId: p.invoice.id, idempotencyKey: p.idempotencyKey } })));
    expect(await paymentRow(p.id)).toMatchObject({ status: "succeeded", gateway_payment_id: pi });
  });

  it("payment_intent.succeeded recovers a payment marked failed, and leaves an amount it does not recognise alone", async () => {
    const failed = await stripePayment({ status: "failed" });
    await deliverAndApply(event("payment_intent.succeeded", intent(failed.intent)));
    expect((await paymentRow(failed.id)).status).toBe("succeeded");

    const other = await stripePayment();
    const evt = event("payment_intent.succeeded", intent(other.intent, { amount: 9999, amount_received: 9999 }));
    expect(await deliverAndApply(evt)).toEqual({ status: "done" });
    expect((await paymentRow(other.id)).status).toBe("processing");
    expect(await stored(evt.id)).toMatchObject({ status: "failed" });
    expect((await stored(evt.id)).error).toContain("9999");
  });

  it("payment_intent.payment_failed: a processing payment fails and its next attempt is scheduled", async () => {
    const p = await stripePayment();
    const evt = event("payment_intent.payment_failed", intent(p.intent, { status: "requires_payment_method", last_payment_error: { code: "card_declined", decline_code: "insufficient_funds", message: "Your card has insufficient funds." } }));
    expect(await deliverAndApply(evt)).toEqual({ status: "done" });
    const pay = await paymentRow(p.id);
    expect(pay).toMatchObject({ status: "failed", failure_code: "insufficient_funds", failure_message: "Your card has insufficient funds." });
    expect(pay.next_retry_at).toBeGreaterThan(Date.now());
    expect(queued("payments")).toEqual([{ queue: "payments", body: { type: "payment.attempt", invoiceId: p.invoice.id, attempt: 2 }, delaySeconds: 3600 }]);
    expect(await auditOf("payment.failed", p.id)).toHaveLength(1);
  });

  it("out of order: a failure arriving after the success does not downgrade the payment", async () => {
    const p = await stripePayment();
    await deliverAndApply(event("payment_intent.succeeded", intent(p.intent)));
    const late = event("payment_intent.payment_failed", intent(p.intent, { status: "requires_payment_method", last_payment_error: { code: "card_declined", message: "declined" } }));
    expect(await deliverAndApply(late)).toEqual({ status: "done" });
    expect(await paymentRow(p.id)).toMatchObject({ status: "succeeded", failure_code: null });
    expect((await env.DB.prepare("SELECT status FROM invoices WHERE id = ?").bind(p.invoice.id).first())!.status).toBe("paid");
    expect(await stored(late.id)).toMatchObject({ status: "ignored" });
    expect(queued("payments")).toEqual([]);
  });

  it("out of order: a success for a payment not known yet is retried, then applied once it exists", async () => {
    const invoice = await openInvoice();
    const pi = unique("pi");
    const evt = event("payment_intent.succeeded", intent(pi, { metadata: { invoiceId: invoice.id, idempotencyKey: `${invoice.id}:attempt:1` } }));
    const first = await deliverAndApply(evt);
    expect(first).toMatchObject({ status: "retry" });
    if (first.status === "retry") {
      expect(first.delaySeconds).toBeGreaterThanOrEqual(30);
      expect(first.reason).toContain(pi);
    }
    expect(await stored(evt.id)).toMatchObject({ status: "received", processed_at: null });
    expect((await stored(evt.id)).error).toContain("no local payment");

    // The charge call records its attempt now.
    const id = unique("pay");
    await env.DB.prepare(
      "INSERT INTO payments (id, invoice_id, customer_id, attempt, amount, currency, status, gateway, gateway_payment_id, payment_method, idempotency_key, amount_refunded, created_at, updated_at) VALUES (?, ?, ?, 1, 2500, 'USD', 'processing', 'stripe', ?, 'pm_card_visa', ?, 0, ?, ?)",
    )
      .bind(id, invoice.id, invoice.customerId, pi, `${invoice.id}:attempt:1`, Date.now(), Date.now())
      .run();
    expect(await applyStripeEvent(messageServicesOf(testEnv()), evt.id)).toEqual({ status: "done" });
    expect((await paymentRow(id)).status).toBe("succeeded");
    expect(await stored(evt.id)).toMatchObject({ status: "processed", error: null });
  });

  it("gives up (failed) on an event whose payment never appears", async () => {
    const evt = event("payment_intent.succeeded", intent(unique("pi")));
    await deliver(evt);
    await env.DB.prepare("UPDATE webhook_events SET received_at = ? WHERE id = ?").bind(Date.now() - 73 * 3600_000, evt.id).run();
    expect(await applyStripeEvent(messageServicesOf(testEnv()), evt.id)).toEqual({ status: "done" });
    expect(await stored(evt.id)).toMatchObject({ status: "failed" });
    expect((await stored(evt.id)).error).toContain("gave up");
    // Replayed by an operator after the payment still did not appear: one look, and it stays failed.
    expect(await applyStripeEvent(messageServicesOf(testEnv()), evt.id)).toEqual({ status: "done" });
    expect((await stored(evt.id)).error).toContain("still waiting");
  });

  it("charge.refunded creates the refund made in Stripe's dashboard and syncs the refunded amount", async () => {
    const p = await stripePayment({ status: "succeeded" });
    const charge = (refunds: { id: string; amount: number; status: string }[]) => ({
      id: `ch_${p.intent}`,
      object: "charge",
      payment_intent: p.intent,
      amount: 2500,
      amount_refunded: refunds.filter((r) => r.status === "succeeded").reduce((s, r) => s + r.amount, 0),
      currency: "usd",
      refunded: false,
      metadata: {},
      refunds: { object: "list", data: refunds.map((r) => ({ object: "refund", created: nowSeconds(), currency: "usd", metadata: {}, ...r })) },
    });
    const re1 = unique("re");
    expect(await deliverAndApply(event("charge.refunded", charge([{ id: re1, amount: 1000, status: "succeeded" }])))).toEqual({ status: "done" });
    let rows = (await env.DB.prepare("SELECT * FROM refunds WHERE payment_id = ?").bind(p.id).all<any>()).results;
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ amount: 1000, currency: "USD", status: "succeeded", reason: "stripe_dashboard", gateway: "stripe", gateway_refund_id: re1 });
    expect((await paymentRow(p.id)).amount_refunded).toBe(1000);
    expect(await auditOf("refund.created_by_webhook", rows[0].id)).toHaveLength(1);

    // A later event lists both refunds: only the new one is created.
    const re2 = unique("re");
    await deliverAndApply(event("charge.refunded", charge([{ id: re1, amount: 1000, status: "succeeded" }, { id: re2, amount: 500, status: "succeeded" }])));
    rows = (await env.DB.prepare("SELECT * FROM refunds WHERE payment_id = ? ORDER BY amount").bind(p.id).all<any>()).results;
    expect(rows.map((r) => [r.gateway_refund_id, r.amount])).toEqual([
      [re2, 500],
      [re1, 1000],
    ]);
    expect((await paymentRow(p.id)).amount_refunded).toBe(1500);

    // The older event delivered again late (new event id, same contents) undoes nothing.
    await deliverAndApply(event("charge.refunded", charge([{ id: re1, amount: 1000, status: "succeeded" }])));
    expect((await paymentRow(p.id)).amount_refunded).toBe(1500);
    expect((await env.DB.prepare("SELECT count(*) AS n FROM refunds WHERE payment_id = ?").bind(p.id).first<{ n: number }>())!.n).toBe(2);
  });

  it("charge.refunded moves our own pending refunds forward (matched by the idempotency key in Stripe's metadata)", async () => {
    const p = await stripePayment({ status: "succeeded" });
    const now = Date.now();
    const pending = async (amount: number) => {
      const id = unique("re");
      await env.DB.prepare("INSERT INTO refunds (id, payment_id, amount, currency, reason, status, gateway, idempotency_key, notify, created_by, created_at, updated_at) VALUES (?, ?, ?, 'USD', 'requested_by_customer', 'pending', 'stripe', ?, 0, 'test', ?, ?)")
        .bind(id, p.id, amount, id, now, now)
        .run();
      return id;
    };
    const ok = await pending(700);
    const bad = await pending(300);
    // The refunds module reserves pending refunds in amountRefunded.
    await env.DB.prepare("UPDATE payments SET amount_refunded = 1000 WHERE id = ?").bind(p.id).run();
    const [reOk, reBad] = [unique("re"), unique("re")];
    const charge = {
      id: unique("ch"),
      object: "charge",
      payment_intent: p.intent,
      amount: 2500,
      amount_refunded: 700,
      currency: "usd",
      metadata: {},
      refunds: {
        object: "list",
        data: [
          { id: reOk, object: "refund", amount: 700, currency: "usd", status: "succeeded", created: nowSeconds(), metadata: { idempotencyKey: ok } },
          { id: reBad, object: "refund", amount: 300, currency: "usd", status: "failed", created: nowSeconds(), metadata: { idempotencyKey: bad } },
        ],
      },
    };
    await deliverAndApply(event("charge.refunded", charge));
    const rows = (await env.DB.prepare("SELECT id, status, gateway_refund_id FROM refunds WHERE payment_id = ? ORDER BY status").bind(p.id).all()).results;
    expect(rows).toEqual([
      { id: bad, status: "failed", gateway_refund_id: reBad },
      { id: ok, status: "succeeded", gateway_refund_id: reOk },
    ]);
    expect((await paymentRow(p.id)).amount_refunded).toBe(700);
    expect(await auditOf("refund.synced_by_webhook", ok)).toHaveLength(1);
  });

  it("charge.refunded without a refund list (current API versions) records the difference once", async () => {
    const p = await stripePayment({ status: "succeeded" });
    const charge = { id: unique("ch"), object: "charge", payment_intent: p.intent, amount: 2500, amount_refunded: 2500, currency: "usd", refunded: true, metadata: {} };
    await deliverAndApply(event("charge.refunded", charge));
    await deliverAndApply(event("charge.refunded", charge));
    const rows = (await env.DB.prepare("SELECT amount, status, reason FROM refunds WHERE payment_id = ?").bind(p.id).all()).results;
    expect(rows).toEqual([{ amount: 2500, status: "succeeded", reason: "stripe_dashboard" }]);
    expect((await paymentRow(p.id)).amount_refunded).toBe(2500);
  });

  it("charge.dispute.created audits the dispute and queues a notification", async () => {
    const p = await stripePayment({ status: "succeeded" });
    const dispute = { id: unique("dp"), object: "dispute", charge: unique("ch"), payment_intent: p.intent, amount: 2500, currency: "usd", reason: "fraudulent", status: "needs_response", metadata: {}, evidence_details: { due_by: nowSeconds() + 7 * 86400 } };
    const evt = event("charge.dispute.created", dispute);
    expect(await deliverAndApply(evt)).toEqual({ status: "done" });
    const audit = await auditOf("payment.disputed", p.id);
    expect(audit).toHaveLength(1);
    expect(JSON.parse(audit[0].after)).toMatchObject({ disputeId: dispute.id, amount: "25.00", currency: "USD", reason: "fraudulent" });
    const notes = (await env.DB.prepare("SELECT * FROM notifications WHERE dedupe_key = ?").bind(`dispute:${dispute.id}`).all<any>()).results;
    expect(notes).toHaveLength(1);
    expect(notes[0]).toMatchObject({ kind: "payment.disputed", template: "payment_disputed", customer_id: p.invoice.customerId, status: "queued" });
    expect(await notificationEventCount(notes[0].id)).toBe(1);
  });

  it("marks other event types ignored", async () => {
    const evt = event("customer.created", { id: unique("cus") });
    expect(await deliverAndApply(evt)).toEqual({ status: "done" });
    expect(await stored(evt.id)).toMatchObject({ status: "ignored" });
    expect((await stored(evt.id)).processed_at).toBeGreaterThan(0);
  });

  it("answers done for an event that is not stored", async () => {
    expect(await applyStripeEvent(messageServicesOf(testEnv()), "evt_never_stored")).toEqual({ status: "done" });
  });
});

describe("webhook event admin", () => {
  async function seed(status: string, daysAgo: number) {
    const id = unique("evt");
    await env.DB.prepare("INSERT INTO webhook_events (id, source, type, payload, status, received_at, processed_at) VALUES (?, 'stripe', 'x.y', '{}', ?, ?, ?)")
      .bind(id, status, Date.now() - daysAgo * 86_400_000, status === "received" ? null : Date.now() - daysAgo * 86_400_000)
      .run();
    return id;
  }

  it("cleanup with the runbook's curl (no body, no Content-Type) deletes processed and ignored events older than 30 days", async () => {
    const old = [await seed("processed", 45), await seed("ignored", 31)];
    const kept = [await seed("processed", 5), await seed("failed", 60), await seed("received", 60)];
    const r = await call("POST", "/admin/webhooks/cleanup");
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ deleted: 2, olderThanDays: 30 });
    for (const id of old) expect(await stored(id)).toBeNull();
    for (const id of kept) expect(await stored(id)).not.toBeNull();
    const audit = await env.DB.prepare("SELECT after FROM audit_log WHERE action = 'webhooks.cleanup' ORDER BY seq DESC LIMIT 1").first<{ after: string }>();
    expect(JSON.parse(audit!.after)).toMatchObject({ deleted: 2, olderThanDays: 30 });
  });

  it("cleanup takes olderThanDays from a body of any Content-Type, and validates it", async () => {
    const id = await seed("processed", 8);
    const r = await call("POST", "/admin/webhooks/cleanup", '{"olderThanDays": 7}', { contentType: "application/x-www-form-urlencoded" });
    expect(r.body).toMatchObject({ deleted: 1, olderThanDays: 7 });
    expect(await stored(id)).toBeNull();
    expect((await call("POST", "/admin/webhooks/cleanup", { olderThanDays: 0 })).status).toBe(400);
    expect((await call("POST", "/admin/webhooks/cleanup", "{not json")).status).toBe(400);
  });

  it("cleanupWebhookEvents (the daily cron's entry) deletes in chunks", async () => {
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push(await seed("processed", 100));
    const r = await cleanupWebhookEvents(servicesOf(), 90);
    expect(r.deleted).toBe(3);
    for (const id of ids) expect(await stored(id)).toBeNull();
  });

  it("lists, shows and replays events (admin only)", async () => {
    const failed = await seed("failed", 1);
    const list = await call("GET", "/admin/webhooks/events?status=failed");
    expect(list.status).toBe(200);
    expect(list.body.data.map((e: any) => e.id)).toContain(failed);
    expect((await call("GET", `/admin/webhooks/events/${failed}`)).body).toMatchObject({ id: failed, status: "failed", payload: {} });
    const replay = await call("POST", `/admin/webhooks/events/${failed}/replay`);
    expect(replay.status).toBe(202);
    expect(queued("webhooks")).toEqual([{ queue: "webhooks", body: { type: "stripe.event", eventId: failed } }]);
    const done = await seed("processed", 1);
    expect((await call("POST", `/admin/webhooks/events/${done}/replay`)).status).toBe(409);
  });

  it("refuses non-admins and anonymous callers", async () => {
    expect((await call("POST", "/admin/webhooks/cleanup", undefined, { role: "finance" })).status).toBe(403);
    expect((await call("GET", "/admin/webhooks/events", undefined, { role: "viewer" })).status).toBe(403);
    expect((await call("POST", "/admin/webhooks/cleanup", undefined, { role: null })).status).toBe(401);
  });
});
