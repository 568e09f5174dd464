import { afterEach, describe, expect, it, vi } from "vitest";
import { env } from "cloudflare:workers";
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import entry from "../../src/index";
import { MAX_DELIVERY_ATTEMPTS, signatureHeader } from "../../src/modules/notifications/delivery";
import { api, createCustomer, createPlan, createSubscription, unique } from "../helpers";

const worker: Required<Pick<ExportedHandler<Env>, "queue">> = entry;
const HOOK = "https://hooks.example.test/billing";
const SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const configured = { ...env, NOTIFY_WEBHOOK_URL: HOOK, NOTIFY_WEBHOOK_SECRET: SECRET } as Env;

type Received = { url: string; headers: Record<string, string>; body: string };

/** The notification webhook's receiver: answers with `statuses` in turn (the last one repeats), or throws. */
function receiver(...statuses: (number | "network-error")[]) {
  const received: Received[] = [];
  vi.stubGlobal("fetch", async (input: RequestInfo | URL, init?: RequestInit) => {
    const req = new Request(input, init);
    received.push({ url: req.url, headers: Object.fromEntries(req.headers), body: await req.text() });
    const status = statuses[Math.min(received.length - 1, statuses.length - 1)]!;
    if (status === "network-error") throw new TypeError("connection refused");
    return new Response(status === 204 ? null : status >= 400 ? "nope" : "ok", { status });
  });
  return received;
}
afterEach(() => vi.unstubAllGlobals());

let seq = 0;
async function deliver(notificationId: string, e: Env = configured, attempts = 1) {
  const message = { id: `ntf-msg-${Date.now()}-${seq++}`, timestamp: new Date(), attempts, body: { type: "notification.send", notificationId } };
  const batch = createMessageBatch("billing-webhooks", [message]);
  const ctx = createExecutionContext();
  await worker.queue(batch, e, ctx);
  const result = await getQueueResult(batch, ctx);
  return { acked: result.explicitAcks.includes(message.id), retried: result.retryMessages.some((m) => m.msgId === message.id) };
}

async function queuedNotification(customerId: string, invoiceId: string | null = null) {
  const id = unique("ntf");
  await env.DB.prepare("INSERT INTO notifications (id, kind, customer_id, invoice_id, template, payload, dedupe_key, status, created_at) VALUES (?, 'invoice.reminder', ?, ?, 'reminder-1', ?, ?, 'queued', ?)")
    .bind(id, customerId, invoiceId, JSON.stringify({ daysOverdue: 3 }), `test:${id}`, Date.parse("2026-11-20T10:00:00Z"))
    .run();
  return id;
}
const row = (id: string) => env.DB.prepare("SELECT status, sent_at, attempts, last_error FROM notifications WHERE id = ?").bind(id).first<{ status: string; sent_at: number | null; attempts: number; last_error: string | null }>();
const auditCount = (action: string, id: string) =>
  env.DB.prepare("SELECT count(*) AS n FROM audit_log WHERE action = ? AND target_id = ?").bind(action, id).first<{ n: number }>().then((r) => r!.n);

describe("notification webhook signature", () => {
  it("matches the Standard Webhooks specification's published example", async () => {
    expect(await signatureHeader(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}')).toBe("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
  });
});

describe("notification.send delivery", () => {
  it("POSTs one signed envelope with the customer and the message, marks it sent, and never sends it again", async () => {
    const customer = await createCustomer({ name: "Ada Lovelace" });
    const id = await queuedNotification(customer.id);
    const received = receiver(204);

    expect(await deliver(id)).toEqual({ acked: true, retried: false });
    expect(received).toHaveLength(1);
    const [hit] = received;
    expect(hit!.url).toBe(HOOK);
    expect(hit!.headers["webhook-id"]).toBe(id);
    expect(hit!.headers["webhook-signature"]).toBe(await signatureHeader(SECRET, id, Number(hit!.headers["webhook-timestamp"]), hit!.body));
    expect(Math.abs(Number(hit!.headers["webhook-timestamp"]) - Date.now() / 1000)).toBeLessThan(60);
    expect(JSON.parse(hit!.body)).toEqual({
      id,
      type: "invoice.reminder",
      template: "reminder-1",
      createdAt: "2026-11-20T10:00:00.000Z",
      customer: { id: customer.id, email: customer.email, name: "Ada Lovelace" },
      invoice: null,
      data: { daysOverdue: 3 },
    });
    expect(await row(id)).toMatchObject({ status: "sent", attempts: 1, last_error: null });

    // A redelivered message is acked without a second POST, and the audit chain has one entry.
    expect(await deliver(id)).toEqual({ acked: true, retried: false });
    expect(received).toHaveLength(1);
    expect(await auditCount("notification.sent", id)).toBe(1);
  });

  it("carries the invoice's number, figures and its hosted page and PDF links, so the mailer needs no call back", async () => {
    const plan = await createPlan({ name: "Notify flat", prices: [{ type: "flat", amount: "10.00" }] });
    const sub = await createSubscription({ planId: plan.id });
    const invoice = (await api("GET", `/api/v1/invoices?subscriptionId=${sub.id}`)).body.data[0];
    const id = await queuedNotification(sub.customerId, invoice.id);
    const received = receiver(200);
    expect(await deliver(id)).toEqual({ acked: true, retried: false });
    expect(JSON.parse(received[0]!.body).invoice).toEqual({
      id: invoice.id,
      number: invoice.number,
      status: invoice.status,
      currency: "USD",
      total: "10.00",
      totalMinor: 1000,
      amountDue: expect.any(String),
      amountDueMinor: expect.any(Number),
      dueAt: invoice.dueAt ?? null,
      hostedUrl: expect.stringMatching(/^\/i\/[0-9a-f]{64}$/),
      pdfUrl: expect.stringMatching(/^\/i\/[0-9a-f]{64}\/pdf$/),
    });
    // The link in the message opens the invoice (no login).
    const { hostedUrl } = JSON.parse(received[0]!.body).invoice;
    expect((await api("GET", hostedUrl, { as: null })).status).toBe(200);
  });

  it("retries a receiver that is down (5xx, 429, network error), keeping the reason, and gives up after the last attempt", async () => {
    const customer = await createCustomer();
    const id = await queuedNotification(customer.id);
    const received = receiver(503, 429, "network-error");

    expect(await deliver(id)).toEqual({ acked: false, retried: true });
    expect(await row(id)).toMatchObject({ status: "queued", attempts: 1, last_error: "webhook answered 503: nope" });
    expect(await deliver(id, configured, 2)).toEqual({ acked: false, retried: true });
    expect(await deliver(id, configured, 3)).toEqual({ acked: false, retried: true });
    expect(await row(id)).toMatchObject({ status: "queued", attempts: 3, last_error: "delivery failed: connection refused" });

    await env.DB.prepare("UPDATE notifications SET attempts = ? WHERE id = ?").bind(MAX_DELIVERY_ATTEMPTS - 1, id).run();
    expect(await deliver(id, configured, 4)).toEqual({ acked: true, retried: false });
    const failed = await row(id);
    expect(failed).toMatchObject({ status: "failed", attempts: MAX_DELIVERY_ATTEMPTS, sent_at: null });
    expect(failed!.last_error).toBe(`delivery failed: connection refused (gave up after ${MAX_DELIVERY_ATTEMPTS} attempts)`);
    expect(await auditCount("notification.failed", id)).toBe(1);
    expect(received).toHaveLength(4);
  });

  it("fails a notification the receiver refuses (4xx) at once, without retrying", async () => {
    const customer = await createCustomer();
    const id = await queuedNotification(customer.id);
    const received = receiver(400);
    expect(await deliver(id)).toEqual({ acked: true, retried: false });
    expect(await row(id)).toMatchObject({ status: "failed", attempts: 1, last_error: "webhook answered 400: nope" });
    expect(await deliver(id)).toEqual({ acked: true, retried: false });
    expect(received).toHaveLength(1);
  });

  it("never marks a notification sent when delivery is not configured, and never sends unsigned", async () => {
    const customer = await createCustomer();
    const received = receiver(200);
    const noUrl = await queuedNotification(customer.id);
    expect(await deliver(noUrl, { ...env, NOTIFY_WEBHOOK_URL: "" } as Env)).toEqual({ acked: true, retried: false });
    expect(await row(noUrl)).toMatchObject({ status: "failed", last_error: expect.stringContaining("set NOTIFY_WEBHOOK_URL") });

    const noSecret = await queuedNotification(customer.id);
    expect(await deliver(noSecret, { ...configured, NOTIFY_WEBHOOK_SECRET: "" } as Env)).toEqual({ acked: true, retried: false });
    expect(await row(noSecret)).toMatchObject({ status: "failed", last_error: expect.stringContaining("never sent unsigned") });

    // A secret receivers' libraries could not use (not base64) is a configuration error, not a signature they reject.
    const badSecret = await queuedNotification(customer.id);
    expect(await deliver(badSecret, { ...configured, NOTIFY_WEBHOOK_SECRET: "whsec_not base64!" } as Env)).toEqual({ acked: true, retried: false });
    expect(await row(badSecret)).toMatchObject({ status: "failed", last_error: expect.stringContaining("whsec_ followed by base64") });
    expect(received).toHaveLength(0);
  });

  it("acks a message whose notification does not exist", async () => {
    const received = receiver(200);
    expect(await deliver("ntf_missing")).toEqual({ acked: true, retried: false });
    expect(received).toHaveLength(0);
  });
});

describe("GET /admin/notifications and POST /admin/notifications/:id/resend", () => {
  async function notificationIn(customerId: string, status: "failed" | "sent", lastError: string | null) {
    const id = await queuedNotification(customerId);
    await env.DB.prepare("UPDATE notifications SET status = ?, attempts = 3, last_error = ? WHERE id = ?").bind(status, lastError, id).run();
    return id;
  }

  it("lists a customer's failed notifications with the reason, for support", async () => {
    const customer = await createCustomer();
    const failed = await notificationIn(customer.id, "failed", "webhook answered 410: gone");
    await notificationIn(customer.id, "sent", null);
    const r = await api("GET", `/admin/notifications?customerId=${customer.id}&status=failed`, { as: "support" });
    expect(r.status).toBe(200);
    expect(r.body.data).toEqual([expect.objectContaining({ id: failed, status: "failed", attempts: 3, lastError: "webhook answered 410: gone", kind: "invoice.reminder", createdAt: "2026-11-20T10:00:00.000Z" })]);
    expect((await api("GET", `/admin/notifications?customerId=${customer.id}`)).body.data).toHaveLength(2);
    expect((await api("GET", "/admin/notifications", { as: "viewer" })).status).toBe(403);
  });

  it("queues a failed notification again with fresh attempts (audited), and refuses anything else", async () => {
    const customer = await createCustomer();
    const failed = await notificationIn(customer.id, "failed", "notification delivery is not configured");
    const r = await api("POST", `/admin/notifications/${failed}/resend`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ id: failed, status: "queued", attempts: 0, lastError: null });
    expect(await auditCount("notification.resend", failed)).toBe(1);

    const sent = await notificationIn(customer.id, "sent", null);
    const conflict = await api("POST", `/admin/notifications/${sent}/resend`);
    expect(conflict.status).toBe(409);
    expect(conflict.body.errors[0].path).toBe("id");
    expect((await api("POST", "/admin/notifications/ntf_nope/resend")).status).toBe(404);
    expect((await api("POST", `/admin/notifications/${failed}/resend`, { as: "viewer" })).status).toBe(403);
  });
});
