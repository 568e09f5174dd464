import { afterEach, describe, expect, it, vi } from "vitest";
import { env } from "cloudflare:workers";
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { CRON, cronServices, cronTasks } from "../../src/scheduled";
import entry from "../../src/index";
import { app } from "../../src/app";
import { dbOf } from "../../src/db/client";
import { events } from "../../src/db/schema";
import { change, commit } from "../../src/platform/change-set";
import { eventRow, toEvent, type EventType } from "../../src/platform/events";
import { retryDelaySeconds } from "../../src/modules/webhook-endpoints/delivery";
import { api, createSubscription, tokenFor, unique } from "../helpers";

const worker: Required<Pick<ExportedHandler<Env>, "queue">> = entry;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

// ---- a receiver, as an application would write one ----------------------------------------------------------------

type Hit = { url: string; headers: Record<string, string>; body: string };
/** Fake receivers by URL: each answers its statuses in turn (the last repeats). Other URLs get 404 and are not recorded. */
function receivers(routes: Record<string, number[]>) {
  const hits: Record<string, Hit[]> = Object.fromEntries(Object.keys(routes).map((u) => [u, []]));
  vi.stubGlobal("fetch", async (input: RequestInfo | URL, init?: RequestInit) => {
    const req = new Request(input, init);
    const statuses = routes[req.url];
    if (!statuses) return new Response("unknown", { status: 404 });
    hits[req.url]!.push({ url: req.url, headers: Object.fromEntries(req.headers), body: await req.text() });
    const status = statuses[Math.min(hits[req.url]!.length - 1, statuses.length - 1)]!;
    return new Response(status >= 400 ? "receiver error" : "ok", { status });
  });
  return hits;
}

/** Standard Webhooks verification as a receiver does it: HMAC-SHA256 of `id.timestamp.body` under the secret's bytes. */
async function signedBy(secret: string, hit: Hit): Promise<boolean> {
  const keyBytes = Uint8Array.from(atob(secret.slice("whsec_".length)), (c) => c.charCodeAt(0));
  const key = await crypto.subtle.importKey("raw", keyBytes, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const signed = `${hit.headers["webhook-id"]}.${hit.headers["webhook-timestamp"]}.${hit.body}`;
  const expected = btoa(String.fromCharCode(...new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(signed)))));
  return hit.headers["webhook-signature"]!.split(" ").some((s) => s === `v1,${expected}`);
}

// ---- queues, clock, rows ------------------------------------------------------------------------------------------

/** An env whose webhooks queue records what is sent (with delays) instead of delivering it. */
function recordingEnv() {
  const sent: { body: any; delaySeconds: number | undefined }[] = [];
  const queue = {
    send: async (body: unknown, o?: QueueSendOptions) => void sent.push({ body, delaySeconds: o?.delaySeconds }),
    sendBatch: async (msgs: Iterable<MessageSendRequest>) => {
      for (const m of msgs) sent.push({ body: m.body, delaySeconds: m.delaySeconds });
    },
  };
  return { sent, env: { ...env, WEBHOOK_QUEUE: queue } as unknown as Env };
}

let seq = 0;
async function runQueue(body: unknown, e: Env) {
  const message = { id: `we-msg-${seq++}`, timestamp: new Date(), attempts: 1, body };
  const batch = createMessageBatch("billing-webhooks", [message]);
  const ctx = createExecutionContext();
  await worker.queue(batch, e, ctx);
  const result = await getQueueResult(batch, ctx);
  expect(result.explicitAcks).toEqual([message.id]);
}

async function insertEvent(type: EventType, now = Date.now(), object: unknown = { id: unique("obj"), amount: "10.00" }) {
  const row = eventRow({ type, objectType: "test_object", objectId: unique("obj"), object }, { now, requestId: "req_test" });
  await dbOf(env).insert(events).values(row);
  return row;
}

async function createEndpoint(body: Record<string, unknown>) {
  const r = await api("POST", "/api/v1/webhook-endpoints", { body: { url: `https://${unique("rcv")}.example.test/hook`, enabledEvents: ["invoice.paid"], ...body } });
  expect(r.status).toBe(201);
  return r.body as { id: string; url: string; secret: string };
}

const delivery = (eventId: string, endpointId: string) =>
  env.DB.prepare("SELECT * FROM webhook_deliveries WHERE event_id = ? AND endpoint_id = ?").bind(eventId, endpointId).first<Record<string, any>>();

/** The latest message sent for the (event, endpoint) delivery. */
async function nextFor(sent: { body: any; delaySeconds: number | undefined }[], eventId: string, endpointId: string) {
  const d = await delivery(eventId, endpointId);
  return sent.filter((m) => m.body.deliveryId === d!.id).at(-1)!;
}

afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

// ---- endpoints ----------------------------------------------------------------------------------------------------

describe("webhook endpoints: CRUD, validation, roles", () => {
  it("creates, lists, reads, updates and deletes; admin writes, every role reads", async () => {
    const created = await createEndpoint({ enabledEvents: ["invoice.*", "payment.succeeded"], description: "CRM", metadata: { team: "ops" } });
    expect(created).toMatchObject({ object: "webhook_endpoint", enabledEvents: ["invoice.*", "payment.succeeded"], description: "CRM", metadata: { team: "ops" }, disabled: false });
    expect(created.id).toMatch(/^we_/);
    expect(created.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(atob(created.secret.slice(6))).toHaveLength(32);

    expect((await api("POST", "/api/v1/webhook-endpoints", { as: "finance", body: { url: "https://x.example.test", enabledEvents: ["*"] } })).status).toBe(403);
    const got = await api("GET", `/api/v1/webhook-endpoints/${created.id}`, { as: "viewer" });
    expect(got.status).toBe(200);
    expect(got.body).not.toHaveProperty("secret");
    const list = await api("GET", "/api/v1/webhook-endpoints?limit=100", { as: "viewer" });
    expect(list.status).toBe(200);
    expect(list.body.data.map((e: { id: string }) => e.id)).toContain(created.id);
    expect(JSON.stringify(list.body)).not.toContain("whsec_");

    expect((await api("PATCH", `/api/v1/webhook-endpoints/${created.id}`, { as: "support", body: { disabled: true } })).status).toBe(403);
    const patched = await api("PATCH", `/api/v1/webhook-endpoints/${created.id}`, { body: { enabledEvents: ["*"], disabled: true, metadata: { env: "prod" } } });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ enabledEvents: ["*"], disabled: true, metadata: { team: "ops", env: "prod" } });

    expect((await api("DELETE", `/api/v1/webhook-endpoints/${created.id}`, { as: "viewer" })).status).toBe(403);
    expect((await api("DELETE", `/api/v1/webhook-endpoints/${created.id}`)).body).toEqual({ id: created.id, object: "webhook_endpoint", deleted: true });
    expect((await api("GET", `/api/v1/webhook-endpoints/${created.id}`)).status).toBe(404);
    const actions = await env.DB.prepare("SELECT action FROM audit_log WHERE target_id = ? ORDER BY seq").bind(created.id).all<{ action: string }>();
    expect(actions.results.map((r) => r.action)).toEqual(["webhook_endpoint.created", "webhook_endpoint.updated", "webhook_endpoint.deleted"]);
  });

  it("refuses unknown event types with 422 naming the field; accepts types, prefix.* patterns and *", async () => {
    const r = await api("POST", "/api/v1/webhook-endpoints", { body: { url: "https://a.example.test/h", enabledEvents: ["invoice.paid", "invoice.exploded", "nope.*"] } });
    expect(r.status).toBe(422);
    expect(r.body.errors.map((e: { path: string }) => e.path)).toEqual(["enabledEvents.1", "enabledEvents.2"]);
    for (const enabledEvents of [["*"], ["customer.subscription.*"], ["charge.refunded", "payments.*"]]) await createEndpoint({ enabledEvents });
    expect((await api("POST", "/api/v1/webhook-endpoints", { body: { url: "https://a.example.test/h", enabledEvents: [] } })).status).toBe(400);
    const patch = await api("PATCH", `/api/v1/webhook-endpoints/${(await createEndpoint({})).id}`, { body: { enabledEvents: ["invoices.paid"] } });
    expect(patch.status).toBe(422);
    expect(patch.body.errors[0].path).toBe("enabledEvents.0");
  });

  it("takes http URLs in development (local receivers) but only public https ones in production", async () => {
    expect((await createEndpoint({ url: "http://localhost:4000/webhooks" })).url).toBe("http://localhost:4000/webhooks");
    expect((await api("POST", "/api/v1/webhook-endpoints", { body: { url: "not a url", enabledEvents: ["*"] } })).status).toBe(422);
    const production = { ...env, ENVIRONMENT: "production" } as Env;
    const post = async (url: string) => {
      const res = await app.request(
        "/api/v1/webhook-endpoints",
        { method: "POST", headers: { authorization: `Bearer ${await tokenFor("admin")}`, "content-type": "application/json" }, body: JSON.stringify({ url, enabledEvents: ["*"] }) },
        production,
        createExecutionContext(),
      );
      return { status: res.status, body: (await res.json()) as any };
    };
    const http = await post("http://hooks.example.test/h");
    expect(http.status).toBe(422);
    expect(http.body.errors).toEqual([{ path: "url", message: "must be https in production" }]);
    expect((await post("https://127.0.0.1/h")).status).toBe(422);
    expect((await post("https://hooks.example.test/h")).status).toBe(201);
  });
});

describe("the signing secret is shown once", () => {
  it("is never stored in plaintext, never in audit rows, and a replay of the create is a 409 without it", async () => {
    const key = unique("idem");
    const body = { url: "https://once.example.test/h", enabledEvents: ["invoice.paid"] };
    const first = await api("POST", "/api/v1/webhook-endpoints", { body, headers: { "idempotency-key": key } });
    expect(first.status).toBe(201);
    const secret = first.body.secret as string;
    const replay = await api("POST", "/api/v1/webhook-endpoints", { body, headers: { "idempotency-key": key } });
    expect(replay.status).toBe(409);
    expect(replay.body.detail).toContain(first.body.id);
    expect(JSON.stringify(replay.body)).not.toContain("whsec_");

    const rotated = await api("POST", `/api/v1/webhook-endpoints/${first.body.id}/rotate-secret`, { headers: { "idempotency-key": `${key}-rot` } });
    expect(rotated.status).toBe(200);
    expect(rotated.body.secret).toMatch(/^whsec_/);
    expect(rotated.body.secret).not.toBe(secret);
    expect((await api("POST", `/api/v1/webhook-endpoints/${first.body.id}/rotate-secret`, { headers: { "idempotency-key": `${key}-rot` } })).status).toBe(409);

    // Nothing in D1 holds either secret (or its key bytes in base64) in plaintext.
    for (const s of [secret, rotated.body.secret as string]) {
      const raw = s.slice("whsec_".length);
      for (const table of ["webhook_endpoints", "audit_log", "idempotency_keys", "events"]) {
        const rows = await env.DB.prepare(`SELECT * FROM ${table}`).all();
        expect(JSON.stringify(rows.results)).not.toContain(raw);
      }
    }
    const row = await env.DB.prepare("SELECT secret_ciphertext, previous_secret_ciphertext FROM webhook_endpoints WHERE id = ?").bind(first.body.id).first<Record<string, string>>();
    expect(atob(row!.secret_ciphertext!)).toContain('"alg":"AES-256-GCM"');
    expect(row!.previous_secret_ciphertext).toBeTruthy();
  });
});

// ---- delivery -----------------------------------------------------------------------------------------------------

describe("delivery", () => {
  it("fans an event out to the subscribed endpoints only and POSTs it signed as Standard Webhooks", async () => {
    const paid = await createEndpoint({ enabledEvents: ["invoice.*"] });
    const other = await createEndpoint({ enabledEvents: ["refund.created"] });
    const hits = receivers({ [paid.url]: [200], [other.url]: [200] });
    const { sent, env: e } = recordingEnv();
    const event = await insertEvent("invoice.paid");

    await runQueue({ type: "events.fanout", eventIds: [event.id] }, e);
    expect(await delivery(event.id, other.id)).toBeNull();
    const d = await delivery(event.id, paid.id);
    expect(d).toMatchObject({ status: "pending", attempts: 0 });
    // (Endpoints of earlier tests that take every type get their own deliveries too.)
    const mine = () => sent.filter((s) => s.body.deliveryId === d!.id);
    expect(mine()).toEqual([{ body: { type: "webhook.deliver", deliveryId: d!.id }, delaySeconds: undefined }]);
    // A second fan-out of the same event (at-least-once) creates no second delivery.
    const count = sent.length;
    await runQueue({ type: "events.fanout", eventIds: [event.id] }, e);
    expect(sent).toHaveLength(count);

    await runQueue(mine()[0]!.body, e);
    expect(hits[paid.url]).toHaveLength(1);
    const hit = hits[paid.url]![0]!;
    expect(hit.headers["webhook-id"]).toBe(event.id);
    expect(Math.abs(Number(hit.headers["webhook-timestamp"]) - Date.now() / 1000)).toBeLessThan(60);
    expect(await signedBy(paid.secret, hit)).toBe(true);
    expect(await signedBy(other.secret, hit)).toBe(false);
    expect(JSON.parse(hit.body)).toEqual(toEvent(event));
    expect(await delivery(event.id, paid.id)).toMatchObject({ status: "succeeded", attempts: 1, last_status_code: 200, next_attempt_at: null });

    // A redelivered message does not POST again.
    await runQueue(mine()[0]!.body, e);
    expect(hits[paid.url]).toHaveLength(1);
    const listed = await api("GET", `/api/v1/webhook-endpoints/${paid.id}/deliveries`, { as: "viewer" });
    expect(listed.body.data).toEqual([
      expect.objectContaining({ eventId: event.id, eventType: "invoice.paid", status: "succeeded", attemptCount: 1, attempts: [expect.objectContaining({ statusCode: 200, error: null, latencyMs: expect.any(Number) })] }),
    ]);
  });

  it("an event committed anywhere reaches a subscribed endpoint through the real queue", async () => {
    const ep = await createEndpoint({ enabledEvents: ["payments.resumed"] });
    const hits = receivers({ [ep.url]: [204] });
    const { events: written } = await commit(
      dbOf(env),
      change({ events: [{ type: "payments.resumed", objectType: "payment_guard", objectId: "guard", object: { mode: "normal" } }] }),
      { actor: { id: "test", kind: "system", role: "system", scopes: [] }, now: Date.now() },
    );
    await vi.waitFor(() => expect(hits[ep.url]).toHaveLength(1), { timeout: 10_000, interval: 100 });
    expect(hits[ep.url]![0]!.headers["webhook-id"]).toBe(written[0]!.id);
    expect(await signedBy(ep.secret, hits[ep.url]![0]!)).toBe(true);
  });

  it("a subscription's first invoice and its subscription events reach an endpoint without waiting for the sweep", async () => {
    const ep = await createEndpoint({ enabledEvents: ["invoice.created", "invoice.paid", "customer.subscription.created"] });
    const hits = receivers({ [ep.url]: [200, 200, 200, 200, 200, 200] });
    const sub = await createSubscription();
    const types = () => (hits[ep.url] ?? []).map((h) => JSON.parse(h.body).type as string).sort();
    await vi.waitFor(() => expect(types()).toEqual(["customer.subscription.created", "invoice.created", "invoice.paid"]), { timeout: 10_000, interval: 100 });
    expect(JSON.parse(hits[ep.url]!.find((h) => JSON.parse(h.body).type === "customer.subscription.created")!.body).data.object.id).toBe(sub.id);
  });

  it("an event of an object on a test clock, stamped in the clock's past, still reaches an endpoint that existed when it was written", async () => {
    const ep = await createEndpoint({ enabledEvents: ["customer.subscription.created"] });
    const clock = await api("POST", "/api/v1/test-clocks", { body: { frozenTime: "2024-03-01T00:00:00Z", name: unique("clock") } });
    expect(clock.status).toBe(201);
    const customer = await api("POST", "/api/v1/customers", { body: { email: `${unique("clock")}@example.test`, currency: "USD", testClockId: clock.body.id } });
    expect(customer.status).toBe(201);
    const sub = await createSubscription({ customerId: customer.body.id });
    const event = (await env.DB.prepare("SELECT * FROM events WHERE object_id = ? AND type = 'customer.subscription.created'").bind(sub.id).first<Record<string, any>>())!;
    expect(event).toMatchObject({ created_at: Date.parse("2024-03-01T00:00:00Z"), livemode: 0 });
    const { env: e } = recordingEnv();
    await runQueue({ type: "events.fanout", eventIds: [event.id] }, e);
    expect(await delivery(event.id, ep.id)).toMatchObject({ status: "pending" });
  });

  it("after a rotation signs with both secrets for 24 h, then with the new one only", async () => {
    const ep = await createEndpoint({ enabledEvents: ["invoice.voided"] });
    const hits = receivers({ [ep.url]: [200] });
    const { sent, env: e } = recordingEnv();
    const rotated = (await api("POST", `/api/v1/webhook-endpoints/${ep.id}/rotate-secret`)).body as { secret: string; previousSecretExpiresAt: string };
    expect(Date.parse(rotated.previousSecretExpiresAt) - Date.now()).toBeGreaterThan(23 * HOUR);

    const first = await insertEvent("invoice.voided");
    await runQueue({ type: "events.fanout", eventIds: [first.id] }, e);
    await runQueue((await nextFor(sent, first.id, ep.id)).body, e);
    const during = hits[ep.url]![0]!;
    expect(during.headers["webhook-signature"]!.split(" ")).toHaveLength(2);
    expect(await signedBy(rotated.secret, during)).toBe(true);
    expect(await signedBy(ep.secret, during)).toBe(true);

    vi.useFakeTimers({ toFake: ["Date"], now: Date.now() + DAY + HOUR });
    const second = await insertEvent("invoice.voided");
    await runQueue({ type: "events.fanout", eventIds: [second.id] }, e);
    await runQueue((await nextFor(sent, second.id, ep.id)).body, e);
    const after = hits[ep.url]![1]!;
    expect(after.headers["webhook-signature"]!.split(" ")).toHaveLength(1);
    expect(await signedBy(rotated.secret, after)).toBe(true);
    expect(await signedBy(ep.secret, after)).toBe(false);
  });

  it("retries a receiver answering 500 with growing delays, then succeeds; every attempt is listed", async () => {
    const ep = await createEndpoint({ enabledEvents: ["payment.failed"] });
    const hits = receivers({ [ep.url]: [500, 500, 500, 200] });
    const { sent, env: e } = recordingEnv();
    let now = Date.now();
    vi.useFakeTimers({ toFake: ["Date"], now });
    const event = await insertEvent("payment.failed", now);
    await runQueue({ type: "events.fanout", eventIds: [event.id] }, e);
    await runQueue((await nextFor(sent, event.id, ep.id)).body, e);

    const delays: (number | undefined)[] = [];
    while ((await delivery(event.id, ep.id))!.status === "pending") {
      const next = (await nextFor(sent, event.id, ep.id));
      delays.push(next.delaySeconds);
      // A message arriving early (a duplicate) does not POST.
      const before = hits[ep.url]!.length;
      await runQueue(next.body, e);
      expect(hits[ep.url]!.length).toBe(before);
      now += next.delaySeconds! * 1000;
      vi.setSystemTime(now);
      await runQueue(next.body, e);
    }
    expect(delays).toEqual([300, 600, 1200]);
    expect(hits[ep.url]).toHaveLength(4);
    expect(await delivery(event.id, ep.id)).toMatchObject({ status: "succeeded", attempts: 4, last_status_code: 200 });
    vi.useRealTimers();
    const listed = (await api("GET", `/api/v1/webhook-endpoints/${ep.id}/deliveries`)).body.data[0];
    expect(listed.attempts.map((a: { statusCode: number }) => a.statusCode)).toEqual([500, 500, 500, 200]);
    expect(listed.attempts[0].error).toBe("answered 500: receiver error");
    const gaps = listed.attempts.slice(1).map((a: { at: string }, i: number) => Date.parse(a.at) - Date.parse(listed.attempts[i].at));
    expect(gaps).toEqual([300_000, 600_000, 1_200_000]);
  });

  it("gives up after about three days, and disables an endpoint failing for three days with an event and an audit row", async () => {
    const ep = await createEndpoint({ enabledEvents: ["invoice.finalized"] });
    const watcher = await createEndpoint({ enabledEvents: ["webhook_endpoint.disabled"] });
    const hits = receivers({ [ep.url]: [503], [watcher.url]: [200] });
    const { sent, env: e } = recordingEnv();
    const t0 = Date.now();
    let now = t0;
    vi.useFakeTimers({ toFake: ["Date"], now });
    const event = await insertEvent("invoice.finalized", now);
    await runQueue({ type: "events.fanout", eventIds: [event.id] }, e);
    await runQueue((await nextFor(sent, event.id, ep.id)).body, e);
    while ((await delivery(event.id, ep.id))!.status === "pending") {
      const next = (await nextFor(sent, event.id, ep.id));
      expect(next.delaySeconds).toBeLessThanOrEqual(12 * 3600);
      now += next.delaySeconds! * 1000;
      vi.setSystemTime(now);
      await runQueue(next.body, e);
    }
    const given = await delivery(event.id, ep.id);
    expect(given).toMatchObject({ status: "failed", last_status_code: 503, next_attempt_at: null });
    expect(hits[ep.url]!.length).toBe(given!.attempts);
    expect(now - t0).toBeGreaterThan(2.5 * DAY);
    expect(now - t0).toBeLessThan(3 * DAY);
    // 5 min doubling, capped at 12 h: the attempts that fit in three days.
    let attempts = 1;
    for (let waited = retryDelaySeconds(1) * 1000; waited <= 3 * DAY; waited += retryDelaySeconds(attempts) * 1000) attempts++;
    expect(given!.attempts).toBe(attempts);

    // Still failing three days after the first failure: the endpoint is disabled, once.
    now = t0 + 3 * DAY + HOUR;
    vi.setSystemTime(now);
    const later = await insertEvent("invoice.finalized", now);
    await runQueue({ type: "events.fanout", eventIds: [later.id] }, e);
    await runQueue((await nextFor(sent, later.id, ep.id)).body, e);
    const row = await env.DB.prepare("SELECT disabled, disabled_reason FROM webhook_endpoints WHERE id = ?").bind(ep.id).first<{ disabled: number; disabled_reason: string }>();
    expect(row).toEqual({ disabled: 1, disabled_reason: `deliveries failing since ${new Date(t0).toISOString()}` });
    const disabledEvents = await env.DB.prepare("SELECT * FROM events WHERE type = 'webhook_endpoint.disabled' AND object_id = ?").bind(ep.id).all<Record<string, any>>();
    expect(disabledEvents.results).toHaveLength(1);
    expect(JSON.parse(disabledEvents.results[0]!.data)).toMatchObject({ object: { id: ep.id, disabled: true }, previousAttributes: { disabled: false } });
    expect(JSON.stringify(disabledEvents.results)).not.toContain("whsec_");
    const audit = await env.DB.prepare("SELECT actor FROM audit_log WHERE action = 'webhook_endpoint.disabled' AND target_id = ?").bind(ep.id).all();
    expect(audit.results).toEqual([{ actor: "system:webhooks" }]);
    // The event reaches endpoints subscribed to it: its fan-out went to the invocation's webhooks queue (recorded
    // here), and the watcher's delivery from it.
    const disabledId = disabledEvents.results[0]!.id as string;
    const fanout = await vi.waitFor(() => {
      const m = sent.find((x) => x.body.type === "events.fanout" && x.body.eventIds.includes(disabledId));
      expect(m).toBeDefined();
      return m!;
    });
    await runQueue(fanout.body, e);
    await runQueue((await nextFor(sent, disabledId, watcher.id)).body, e);
    expect(hits[watcher.url]!.map((h) => JSON.parse(h.body).type)).toEqual(["webhook_endpoint.disabled"]);

    // Nothing more is POSTed to a disabled endpoint; its pending deliveries are closed when their message comes.
    const third = await insertEvent("invoice.finalized", now);
    await env.DB.prepare("INSERT INTO webhook_deliveries (id, event_id, endpoint_id, status, attempts, next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, 'pending', 0, ?, ?, ?)")
      .bind(`wd_closed_${seq}`, third.id, ep.id, now, now, now)
      .run();
    const posts = hits[ep.url]!.length;
    await runQueue({ type: "webhook.deliver", deliveryId: `wd_closed_${seq}` }, e);
    expect(hits[ep.url]!.length).toBe(posts);
    expect(await delivery(third.id, ep.id)).toMatchObject({ status: "failed", last_error: "the endpoint is disabled" });
  });
});

describe("resend, test event and the hourly sweep", () => {
  it("POST /api/v1/events/{id}/resend sends an event to one endpoint again, now", async () => {
    const ep = await createEndpoint({ enabledEvents: ["refund.succeeded"] });
    const hits = receivers({ [ep.url]: [200, 200, 500] });
    const event = await insertEvent("refund.succeeded");
    const r = await api("POST", `/api/v1/events/${event.id}/resend?endpoint=${ep.id}`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ eventId: event.id, endpointId: ep.id, status: "succeeded", attemptCount: 1 });
    expect(await signedBy(ep.secret, hits[ep.url]![0]!)).toBe(true);
    const again = await api("POST", `/api/v1/events/${event.id}/resend?endpoint=${ep.id}`);
    expect(again.body).toMatchObject({ id: r.body.id, attemptCount: 2 });
    expect(again.body.attempts).toHaveLength(2);
    expect(hits[ep.url]).toHaveLength(2);
    // A failed resend of a delivery the receiver already had leaves it succeeded, with no retries scheduled.
    const failed = await api("POST", `/api/v1/events/${event.id}/resend?endpoint=${ep.id}`);
    expect(failed.body).toMatchObject({ status: "succeeded", attemptCount: 3, nextAttemptAt: null, lastStatusCode: 500 });

    expect((await api("POST", `/api/v1/events/evt_missing/resend?endpoint=${ep.id}`)).status).toBe(404);
    expect((await api("POST", `/api/v1/events/${event.id}/resend?endpoint=we_missing`)).status).toBe(404);
    expect((await api("POST", `/api/v1/events/${event.id}/resend`)).status).toBe(400);
    expect((await api("POST", `/api/v1/events/${event.id}/resend?endpoint=${ep.id}`, { as: "viewer" })).status).toBe(403);
  });

  it("POST /{id}/test sends a test.webhook event to that endpoint only", async () => {
    const ep = await createEndpoint({ enabledEvents: ["invoice.paid"] });
    const everything = await createEndpoint({ enabledEvents: ["*"] });
    const hits = receivers({ [ep.url]: [200], [everything.url]: [200] });
    const r = await api("POST", `/api/v1/webhook-endpoints/${ep.id}/test`);
    expect(r.status).toBe(200);
    expect(r.body.event).toMatchObject({ type: "test.webhook", data: { object: { id: ep.id, object: "webhook_endpoint" } } });
    expect(r.body.delivery).toMatchObject({ status: "succeeded", attempts: [expect.objectContaining({ statusCode: 200 })] });
    expect(JSON.parse(hits[ep.url]![0]!.body)).toMatchObject({ id: r.body.event.id, type: "test.webhook" });
    expect(await signedBy(ep.secret, hits[ep.url]![0]!)).toBe(true);
    // Not fanned out to the endpoint that takes every type, now or by the sweep.
    await runQueue({ type: "events.fanout", eventIds: [r.body.event.id] }, recordingEnv().env);
    expect(await delivery(r.body.event.id, everything.id)).toBeNull();
    expect(hits[everything.url]).toEqual([]);
  });

  it("a disabled endpoint refuses a test event and a resend (409, declared), and sends nothing", async () => {
    const ep = await createEndpoint({ enabledEvents: ["invoice.paid"], disabled: true });
    const hits = receivers({ [ep.url]: [200] });
    const event = await insertEvent("invoice.paid");
    const detail = `webhook endpoint ${ep.id} is disabled; enable it first (PATCH disabled: false)`;
    for (const path of [`/api/v1/webhook-endpoints/${ep.id}/test`, `/api/v1/events/${event.id}/resend?endpoint=${ep.id}`]) {
      const r = await api("POST", path);
      expect(r.status).toBe(409);
      expect(r.body).toMatchObject({ detail, errors: [{ path: "disabled", message: "is true" }] });
    }
    expect(hits[ep.url]).toEqual([]);
    expect((await api("POST", `/api/v1/webhook-endpoints/we_missing/test`)).status).toBe(404);
  });

  it("the hourly sweep re-fans events of the last day that missed their fan-out and re-sends lost deliveries", async () => {
    const ep = await createEndpoint({ enabledEvents: ["customer.subscription.*"] });
    receivers({ [ep.url]: [200] });
    // Events from after the endpoint was created (the clock moves on an hour); one event is older than a day.
    const now = Date.now() + 2 * HOUR;
    const missed = await insertEvent("customer.subscription.paused", now - HOUR);
    const unrelated = await insertEvent("invoice.paid", now - HOUR);
    const stale = await insertEvent("customer.subscription.resumed", now - 2 * DAY);
    const lost = await insertEvent("customer.subscription.deleted", now - HOUR);
    await env.DB.prepare("INSERT INTO webhook_deliveries (id, event_id, endpoint_id, status, attempts, next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, 'pending', 1, ?, ?, ?)")
      .bind(`wd_lost_${seq}`, lost.id, ep.id, now - HOUR, now - HOUR, now - HOUR)
      .run();
    const { sent, env: e } = recordingEnv();
    vi.useFakeTimers({ toFake: ["Date"], now });
    // The hourly cron's task (the other hourly tasks are not this file's business).
    const sweep = cronTasks[CRON.hourly]!.find((t) => t.name === "webhook_endpoints.sweep")!;
    // (Counts include what earlier tests of this file left pending.)
    expect(await sweep.run(cronServices(e, CRON.hourly, sweep.name, now), now)).toEqual({ resent: expect.any(Number), refanned: expect.any(Number) });
    const refanned = await delivery(missed.id, ep.id);
    expect(refanned).toMatchObject({ status: "pending" });
    expect(await delivery(unrelated.id, ep.id)).toBeNull();
    expect(await delivery(stale.id, ep.id)).toBeNull();
    const bodies = sent.map((s) => s.body);
    expect(bodies).toContainEqual({ type: "webhook.deliver", deliveryId: `wd_lost_${seq}` });
    expect(bodies).toContainEqual({ type: "webhook.deliver", deliveryId: refanned!.id });
  });
});
