import { afterEach, describe, expect, it, vi } from "vitest";
import { env } from "cloudflare:workers";
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { Webhook } from "standardwebhooks";
import entry from "../../src/index";
import { dbOf } from "../../src/db/client";
import { signatureHeader } from "../../src/modules/notifications/delivery";
import { NOTIFICATIONS_ENDPOINT_ID, notificationInserts, type NewNotification } from "../../src/modules/notifications/outbox";
import { renderPrometheus } from "../../src/modules/metrics/exposition";
import { cronServices, cronTasks, CRON } from "../../src/scheduled";
import { api, createCustomer, createPlan, createSubscription, unique } from "../helpers";

const worker: Required<Pick<ExportedHandler<Env>, "queue">> = entry;
const HOOK = "https://hooks.example.test/billing";
const SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

type Hit = { url: string; headers: Record<string, string>; body: string };

/** The notification webhook's receiver: answers with `statuses` in turn (the last one repeats), or throws. */
function receiver(...statuses: (number | "network-error")[]) {
  const received: Hit[] = [];
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

/** An env configured for notifications whose webhooks queue records what is sent instead of delivering it. */
function configured(overrides: Partial<Env> = {}) {
  const sent: any[] = [];
  const queue = {
    send: async (body: unknown) => void sent.push(body),
    sendBatch: async (msgs: Iterable<MessageSendRequest>) => {
      for (const m of msgs) sent.push(m.body);
    },
  };
  return { sent, env: { ...env, NOTIFY_WEBHOOK_URL: HOOK, NOTIFY_WEBHOOK_SECRET: SECRET, WEBHOOK_QUEUE: queue, ...overrides } as unknown as Env };
}

let seq = 0;
async function runQueue(body: unknown, e: Env) {
  const message = { id: `ntf-msg-${seq++}`, timestamp: new Date(), attempts: 1, body };
  const batch = createMessageBatch("billing-webhooks", [message]);
  const ctx = createExecutionContext();
  await worker.queue(batch, e, ctx);
  const result = await getQueueResult(batch, ctx);
  expect(result.explicitAcks).toEqual([message.id]);
}

/** A notification written as the writers write it (row and event in one batch); its hand-off is left to the test. */
async function queuedNotification(customerId: string, invoiceId: string | null = null) {
  const id = unique("ntf");
  const row: NewNotification = { id, kind: "invoice.reminder", customerId, invoiceId, template: "reminder-1", payload: { daysOverdue: 3 }, dedupeKey: `test:${id}`, status: "queued", createdAt: Date.parse("2026-11-20T10:00:00Z") };
  const db = dbOf(env);
  const { statements, eventIds } = notificationInserts(db, [row], { now: Date.now() });
  await db.batch(statements as [any, ...any[]]);
  return { id, eventId: eventIds[0]! };
}

/** Fan-out, then every delivery message it produced (and their retries, when `due`), through the webhooks queue. */
async function fanOutAndDeliver(eventId: string, e: ReturnType<typeof configured>) {
  await runQueue({ type: "events.fanout", eventIds: [eventId] }, e.env);
  const deliver = e.sent.filter((m) => m.type === "webhook.deliver");
  e.sent.length = 0;
  for (const m of deliver) await runQueue(m, e.env);
  return deliver.map((m) => m.deliveryId as string);
}
/** What the queue's delayed retry would do: the delivery is due now, and its message arrives. */
async function retryNow(deliveryId: string, e: ReturnType<typeof configured>) {
  await env.DB.prepare("UPDATE webhook_deliveries SET next_attempt_at = ? WHERE id = ?").bind(Date.now(), deliveryId).run();
  e.sent.length = 0;
  await runQueue({ type: "webhook.deliver", deliveryId }, e.env);
}

const row = (id: string) => env.DB.prepare("SELECT status, sent_at, attempts, last_error FROM notifications WHERE id = ?").bind(id).first<{ status: string; sent_at: number | null; attempts: number; last_error: string | null }>();
const auditCount = (action: string, id: string) =>
  env.DB.prepare("SELECT count(*) AS n FROM audit_log WHERE action = ? AND target_id = ?").bind(action, id).first<{ n: number }>().then((r) => r!.n);
const metric = async (status: string) => {
  const line = (await renderPrometheus(dbOf(env), Date.now())).split("\n").find((l) => l.startsWith(`billing_notifications{status="${status}"}`))!;
  return Number(line.split(" ")[1]);
};

describe("notification webhook signature", () => {
  it("matches the Standard Webhooks specification's published example", async () => {
    expect(await signatureHeader(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}')).toBe("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
  });
});

describe("customer notifications through the event stream (built-in endpoint we_notifications)", () => {
  it("a receiver failing then recovering gets the notification, signed, once; the row, the admin list and the metric follow", async () => {
    const customer = await createCustomer({ name: "Ada Lovelace" });
    const { id, eventId } = await queuedNotification(customer.id);
    const e = configured();
    const received = receiver(503, 204);
    const [sentBefore, queuedBefore] = [await metric("sent"), await metric("queued")];

    // The event is in the stream, its object the notification as the admin API shows it.
    const event = await api("GET", `/api/v1/events/${eventId}`, { as: "viewer" });
    expect(event.body).toMatchObject({ type: "customer.notification", data: { object: { id, kind: "invoice.reminder", status: "queued", customerId: customer.id } } });

    const [deliveryId] = await fanOutAndDeliver(eventId, e);
    expect(received).toHaveLength(1);
    expect(await row(id)).toMatchObject({ status: "queued", attempts: 1, last_error: "answered 503: nope" });
    // Retried with the endpoints' backoff (5 minutes first), as a delayed message.
    expect(e.sent).toEqual([{ type: "webhook.deliver", deliveryId }]);

    await retryNow(deliveryId!, e);
    expect(received).toHaveLength(2);
    expect(await row(id)).toMatchObject({ status: "sent", attempts: 2, last_error: null });
    expect(await auditCount("notification.sent", id)).toBe(1);
    // A duplicate message is no second POST.
    await runQueue({ type: "webhook.deliver", deliveryId }, e.env);
    expect(received).toHaveLength(2);

    // What the receiver got: today's envelope, webhook-id the notification id, verified by a Standard Webhooks library.
    const wh = new Webhook(SECRET);
    for (const hit of received) {
      expect(hit.url).toBe(HOOK);
      expect(hit.headers["webhook-id"]).toBe(id);
      expect(hit.headers["user-agent"]).toBe("billing-engine-notifications/1");
      expect(wh.verify(hit.body, hit.headers)).toEqual({
        id,
        type: "invoice.reminder",
        template: "reminder-1",
        createdAt: "2026-11-20T10:00:00.000Z",
        customer: { id: customer.id, email: customer.email, name: "Ada Lovelace" },
        invoice: null,
        data: { daysOverdue: 3 },
      });
    }
    expect(new Set(received.map((h) => h.headers["webhook-id"])).size).toBe(1);

    // Support and monitoring see it.
    const listed = await api("GET", `/admin/notifications?customerId=${customer.id}`, { as: "support" });
    expect(listed.body.data).toEqual([expect.objectContaining({ id, status: "sent", attempts: 2, lastError: null })]);
    expect(await metric("sent")).toBe(sentBefore + 1);
    expect(await metric("queued")).toBe(queuedBefore - 1);
    // The endpoints' deliveries log has both attempts.
    const deliveries = await api("GET", `/api/v1/webhook-endpoints/${NOTIFICATIONS_ENDPOINT_ID}/deliveries`, { as: "viewer" });
    const delivery = deliveries.body.data.find((d: { id: string }) => d.id === deliveryId);
    expect(delivery).toMatchObject({ status: "succeeded", attempts: [{ statusCode: 503 }, { statusCode: 204 }] });
  });

  it("carries the invoice's number, figures and its hosted page and PDF links, so the mailer needs no call back", async () => {
    const plan = await createPlan({ name: "Notify flat", prices: [{ type: "flat", amount: "10.00" }] });
    const sub = await createSubscription({ planId: plan.id });
    const invoice = (await api("GET", `/api/v1/invoices?subscriptionId=${sub.id}`)).body.data[0];
    const { eventId } = await queuedNotification(sub.customerId, invoice.id);
    const received = receiver(200);
    await fanOutAndDeliver(eventId, configured());
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
    const { hostedUrl } = JSON.parse(received[0]!.body).invoice;
    expect((await api("GET", hostedUrl, { as: null })).status).toBe(200);
  });

  it("fails a notification the receiver refuses (4xx) at once, without retrying; the metric counts it", async () => {
    const customer = await createCustomer();
    const { id, eventId } = await queuedNotification(customer.id);
    const e = configured();
    const received = receiver(400);
    const failedBefore = await metric("failed");
    await fanOutAndDeliver(eventId, e);
    expect(await row(id)).toMatchObject({ status: "failed", attempts: 1, last_error: "answered 400: nope", sent_at: null });
    expect(e.sent).toEqual([]); // no retry scheduled
    expect(received).toHaveLength(1);
    expect(await auditCount("notification.failed", id)).toBe(1);
    expect(await metric("failed")).toBe(failedBefore + 1);
    const failed = await api("GET", `/admin/notifications?customerId=${customer.id}&status=failed`, { as: "support" });
    expect(failed.body.data).toEqual([expect.objectContaining({ id, status: "failed", lastError: "answered 400: nope" })]);
  });

  it("keeps retrying 429 and network errors (queued, with the reason), like any endpoint", async () => {
    const customer = await createCustomer();
    const { id, eventId } = await queuedNotification(customer.id);
    const e = configured();
    receiver(429, "network-error");
    const [deliveryId] = await fanOutAndDeliver(eventId, e);
    expect(await row(id)).toMatchObject({ status: "queued", attempts: 1, last_error: "answered 429: nope" });
    await retryNow(deliveryId!, e);
    expect(await row(id)).toMatchObject({ status: "queued", attempts: 2, last_error: "delivery failed: connection refused" });
    expect(e.sent).toEqual([{ type: "webhook.deliver", deliveryId }]);
  });

  it("never marks a notification sent when delivery is not configured, and never sends unsigned", async () => {
    const customer = await createCustomer();
    const received = receiver(200);
    const noUrl = await queuedNotification(customer.id);
    await fanOutAndDeliver(noUrl.eventId, configured({ NOTIFY_WEBHOOK_URL: "" }));
    expect(await row(noUrl.id)).toMatchObject({ status: "failed", last_error: expect.stringContaining("set NOTIFY_WEBHOOK_URL") });

    const noSecret = await queuedNotification(customer.id);
    await fanOutAndDeliver(noSecret.eventId, configured({ NOTIFY_WEBHOOK_SECRET: "" }));
    expect(await row(noSecret.id)).toMatchObject({ status: "failed", last_error: expect.stringContaining("never sent unsigned") });

    const badSecret = await queuedNotification(customer.id);
    await fanOutAndDeliver(badSecret.eventId, configured({ NOTIFY_WEBHOOK_SECRET: "whsec_not base64!" }));
    expect(await row(badSecret.id)).toMatchObject({ status: "failed", last_error: expect.stringContaining("whsec_ followed by base64") });
    expect(received).toHaveLength(0);
  });

  it("an application endpoint subscribed to customer.notification gets the Stripe-shaped event; the built-in one stays its own", async () => {
    const customer = await createCustomer();
    const created = await api("POST", "/api/v1/webhook-endpoints", { body: { url: "https://crm.example.test/hook", enabledEvents: ["customer.notification"] } });
    expect(created.status).toBe(201);
    const { id, eventId } = await queuedNotification(customer.id);
    const hits: Hit[] = [];
    vi.stubGlobal("fetch", async (input: RequestInfo | URL, init?: RequestInit) => {
      const req = new Request(input, init);
      hits.push({ url: req.url, headers: Object.fromEntries(req.headers), body: await req.text() });
      return new Response(null, { status: 204 });
    });
    await fanOutAndDeliver(eventId, configured());
    const crm = hits.find((h) => h.url === "https://crm.example.test/hook")!;
    expect(new Webhook(created.body.secret).verify(crm.body, crm.headers)).toMatchObject({ id: eventId, type: "customer.notification", data: { object: { id } } });
    expect(hits.find((h) => h.url === HOOK)!.headers["webhook-id"]).toBe(id);
    await api("DELETE", `/api/v1/webhook-endpoints/${created.body.id}`);

    // The built-in endpoint is configured by the wrangler secrets, not the API.
    for (const [method, path] of [
      ["PATCH", `/api/v1/webhook-endpoints/${NOTIFICATIONS_ENDPOINT_ID}`],
      ["DELETE", `/api/v1/webhook-endpoints/${NOTIFICATIONS_ENDPOINT_ID}`],
      ["POST", `/api/v1/webhook-endpoints/${NOTIFICATIONS_ENDPOINT_ID}/rotate-secret`],
    ] as const) {
      const r = await api(method, path, method === "PATCH" ? { body: { disabled: true } } : {});
      expect(r.status).toBe(409);
      expect(r.body.detail).toContain("NOTIFY_WEBHOOK_URL");
    }
    expect((await api("GET", `/api/v1/webhook-endpoints/${NOTIFICATIONS_ENDPOINT_ID}`, { as: "viewer" })).body).toMatchObject({ enabledEvents: ["customer.notification"], disabled: false });
  });

  it("a notification without its event (written before this change) gets one from the hourly sweep", async () => {
    const customer = await createCustomer();
    const id = unique("ntf");
    await env.DB.prepare("INSERT INTO notifications (id, kind, customer_id, template, payload, dedupe_key, status, created_at) VALUES (?, 'invoice.reminder', ?, 'r', '{}', ?, 'queued', ?)")
      .bind(id, customer.id, `legacy:${id}`, Date.now() - 60_000)
      .run();
    const task = cronTasks[CRON.hourly]!.find((t) => t.name === "notifications.sweep")!;
    await task.run(cronServices(env, CRON.hourly, task.name, Date.now()), Date.now());
    const events = await api("GET", `/api/v1/events?objectId=${id}`, { as: "viewer" });
    expect(events.body.data.map((x: { type: string }) => x.type)).toEqual(["customer.notification"]);
    await task.run(cronServices(env, CRON.hourly, task.name, Date.now()), Date.now());
    expect((await api("GET", `/api/v1/events?objectId=${id}`, { as: "viewer" })).body.data).toHaveLength(1);
  });
});

describe("GET /admin/notifications and POST /admin/notifications/:id/resend", () => {
  async function notificationIn(customerId: string, status: "failed" | "sent", lastError: string | null) {
    const { id } = await queuedNotification(customerId);
    await env.DB.prepare("UPDATE notifications SET status = ?, attempts = 3, last_error = ? WHERE id = ?").bind(status, lastError, id).run();
    return id;
  }

  it("lists a customer's failed notifications with the reason, for support", async () => {
    const customer = await createCustomer();
    const failed = await notificationIn(customer.id, "failed", "answered 410: gone");
    await notificationIn(customer.id, "sent", null);
    const r = await api("GET", `/admin/notifications?customerId=${customer.id}&status=failed`, { as: "support" });
    expect(r.status).toBe(200);
    expect(r.body.data).toEqual([expect.objectContaining({ id: failed, status: "failed", attempts: 3, lastError: "answered 410: gone", kind: "invoice.reminder", createdAt: "2026-11-20T10:00:00.000Z" })]);
    expect((await api("GET", `/admin/notifications?customerId=${customer.id}`)).body.data).toHaveLength(2);
    expect((await api("GET", "/admin/notifications", { as: "viewer" })).status).toBe(403);
  });

  it("queues a failed notification again with a new event (delivered afresh, same webhook-id), and refuses anything else", async () => {
    const customer = await createCustomer();
    const failed = await notificationIn(customer.id, "failed", "notification delivery is not configured");
    const r = await api("POST", `/admin/notifications/${failed}/resend`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ id: failed, status: "queued", attempts: 0, lastError: null });
    expect(await auditCount("notification.resend", failed)).toBe(1);
    const events = (await api("GET", `/api/v1/events?objectId=${failed}`, { as: "viewer" })).body.data;
    expect(events).toHaveLength(2);
    expect(events[0]).toMatchObject({ type: "customer.notification", data: { object: { status: "queued", attempts: 0 } } });
    // Through the real queue (the worker's own env, where NOTIFY_WEBHOOK_URL is empty): the hand-off fans the event
    // out to the built-in endpoint, whose attempt fails the notification with the reason.
    await vi.waitFor(async () => expect(await row(failed)).toMatchObject({ status: "failed", attempts: 1, last_error: expect.stringContaining("not configured") }), { timeout: 10_000, interval: 100 });
    const log = await env.DB.prepare("SELECT endpoint_id AS endpointId, status FROM webhook_deliveries WHERE event_id = ?").bind(events[0].id).all();
    expect(log.results).toEqual([{ endpointId: NOTIFICATIONS_ENDPOINT_ID, status: "failed" }]);


    const sent = await notificationIn(customer.id, "sent", null);
    const conflict = await api("POST", `/admin/notifications/${sent}/resend`);
    expect(conflict.status).toBe(409);
    expect(conflict.body.errors[0].path).toBe("id");
    expect((await api("POST", "/admin/notifications/ntf_nope/resend")).status).toBe(404);
    expect((await api("POST", `/admin/notifications/${failed}/resend`, { as: "viewer" })).status).toBe(403);
  });
});
