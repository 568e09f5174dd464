import { describe, expect, it, vi } from "vitest";
import { env } from "cloudflare:workers";
import { api, createApiKey, createCustomer, createPlan, createSubscription, unique } from "../helpers";
import { directoryStub, dropRoutingCache, routingEntryOf } from "../../src/modules/usage/routing";
import { and, eq } from "drizzle-orm";
import { dbOf } from "../../src/db/client";
import { plans, subscriptions } from "../../src/db/schema";
import { SYSTEM_ACTOR } from "../../src/platform/actor";

const meteredPlan = (extra: Record<string, unknown> = {}) =>
  createPlan({
    prices: [
      { type: "flat", amount: "10" },
      { type: "metered", meterId: "api_calls", eventName: "api_request", aggregation: "sum", pricingModel: "per_unit", unitAmount: "0.001", ...extra },
      { type: "metered", meterId: "tokens", eventName: "prompt", valueProperty: "$.usage.tokens", groupBy: { model: "$.model" }, aggregation: "sum", pricingModel: "per_unit", unitAmount: "0.0001" },
    ],
  });

async function setup() {
  const stripeId = unique("cus_stripe");
  const customer = await createCustomer({ metadata: { stripeCustomerId: stripeId } });
  const plan = await meteredPlan();
  const sub = await createSubscription({ customerId: customer.id, planId: plan.id });
  const { key } = await createApiKey(["usage:write", "usage:read"]);
  return { customer, plan, sub, stripeId, key };
}

const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
const stripePost = (key: string, fields: Record<string, string>, headers: Record<string, string> = {}) =>
  api("POST", "/v1/billing/meter_events", { auth: `Bearer ${key}`, rawBody: form(fields), headers: { "content-type": "application/x-www-form-urlencoded", ...headers } });
const summaryOf = async (subId: string, meterId: string) => {
  const r = await api("GET", `/api/v1/usage/${subId}/summary`);
  return r.body.meters.find((m: { meterId: string }) => m.meterId === meterId) as { value: string; eventCount: number };
};

describe("Stripe meter events (POST /v1/billing/meter_events)", () => {
  it("maps event_name and the Stripe customer id to the subscription's meter and answers Stripe's object", async () => {
    const { sub, stripeId, key } = await setup();
    const ts = Math.floor(Date.now() / 1000) - 60;
    const r = await stripePost(key, { event_name: "api_request", "payload[stripe_customer_id]": stripeId, "payload[value]": "25", identifier: "idem-1", timestamp: String(ts) });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ object: "billing.meter_event", event_name: "api_request", identifier: "idem-1", livemode: false, timestamp: ts, payload: { stripe_customer_id: stripeId, value: "25" } });
    // A retry of the identifier answers the same and is counted once.
    expect((await stripePost(key, { event_name: "api_request", "payload[stripe_customer_id]": stripeId, "payload[value]": "25", identifier: "idem-1" })).status).toBe(200);
    expect(await summaryOf(sub.id, "api_calls")).toMatchObject({ value: "25", eventCount: 1 });
  });

  it("keeps a payload's other keys as the event's metadata, and none when there are none", async () => {
    const { sub, stripeId, key } = await setup();
    expect((await stripePost(key, { event_name: "api_request", "payload[stripe_customer_id]": stripeId, "payload[value]": "2", "payload[region]": "eu", identifier: "m1" })).status).toBe(200);
    expect((await stripePost(key, { event_name: "api_request", "payload[stripe_customer_id]": stripeId, "payload[value]": "3", identifier: "m2" })).status).toBe(200);
    const listed = await api("GET", `/api/v1/usage/${sub.id}/events?meterId=api_calls`);
    expect(listed.status).toBe(200);
    const byId = Object.fromEntries(listed.body.data.map((e: { eventId: string; metadata: unknown }) => [e.eventId, e.metadata]));
    expect(byId).toEqual({ m1: { region: "eu" }, m2: null });
  });

  it("accepts our customer id in place of a Stripe id", async () => {
    const { sub, customer, key } = await setup();
    const r = await stripePost(key, { event_name: "api_request", "payload[stripe_customer_id]": customer.id, "payload[value]": "3" });
    expect(r.status).toBe(200);
    expect(r.body.identifier).toBeTruthy();
    expect((await summaryOf(sub.id, "api_calls")).value).toBe("3");
  });

  it("answers Stripe's error shape: missing parameter, unknown customer, unknown event name, bad key, missing scope", async () => {
    const { stripeId, key } = await setup();
    const missing = await stripePost(key, { event_name: "api_request", "payload[value]": "1" });
    expect(missing.status).toBe(400);
    expect(missing.body.error).toMatchObject({ type: "invalid_request_error", code: "parameter_missing", param: "payload[stripe_customer_id]" });

    const long = await stripePost(key, { event_name: "api_request", "payload[stripe_customer_id]": `cus_${"x".repeat(197)}`, "payload[value]": "1" });
    expect(long.status).toBe(400);
    expect(long.body.error).toMatchObject({ code: "parameter_invalid_string", param: "payload[stripe_customer_id]" });

    const unknown = await stripePost(key, { event_name: "api_request", "payload[stripe_customer_id]": "cus_nobody", "payload[value]": "1" });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error).toMatchObject({ type: "invalid_request_error", code: "resource_missing", param: "payload[stripe_customer_id]" });

    const noMeter = await stripePost(key, { event_name: "no_such_event", "payload[stripe_customer_id]": stripeId, "payload[value]": "1" });
    expect(noMeter.status).toBe(400);
    expect(noMeter.body.error).toMatchObject({ code: "resource_missing", param: "event_name" });

    const badValue = await stripePost(key, { event_name: "api_request", "payload[stripe_customer_id]": stripeId, "payload[value]": "abc" });
    expect(badValue.body.error).toMatchObject({ code: "parameter_invalid", param: "payload[value]" });

    const future = await stripePost(key, { event_name: "api_request", "payload[stripe_customer_id]": stripeId, "payload[value]": "1", timestamp: String(Math.floor(Date.now() / 1000) + 3600) });
    expect(future.body.error).toMatchObject({ code: "timestamp_in_future", param: "timestamp" });

    const badKey = await stripePost("bek_not_a_key", { event_name: "api_request", "payload[stripe_customer_id]": stripeId });
    expect(badKey.status).toBe(401);
    expect(badKey.body.error.type).toBe("authentication_error");

    const readOnly = (await createApiKey(["usage:read"])).key;
    const refused = await stripePost(readOnly, { event_name: "api_request", "payload[stripe_customer_id]": stripeId, "payload[value]": "1" });
    expect(refused.status).toBe(403);
    expect(refused.body.error).toMatchObject({ type: "permission_error" });
    expect(refused.body.error.message).toContain("usage:write");
  });

  it("follows a change of the customer's Stripe id", async () => {
    const { customer, sub, stripeId, key } = await setup();
    const next = unique("cus_stripe_next");
    expect((await api("PATCH", `/api/v1/customers/${customer.id}`, { body: { metadata: { stripeCustomerId: next } } })).status).toBe(200);
    dropRoutingCache(); // as another isolate would, once its cache entry expires
    expect((await stripePost(key, { event_name: "api_request", "payload[stripe_customer_id]": next, "payload[value]": "2" })).status).toBe(200);
    expect((await stripePost(key, { event_name: "api_request", "payload[stripe_customer_id]": stripeId, "payload[value]": "2" })).status).toBe(400);
    expect((await summaryOf(sub.id, "api_calls")).value).toBe("2");
  });

  it("routes to the customer's new subscription after the cached one was canceled", async () => {
    const { customer, plan, sub, stripeId, key } = await setup();
    expect((await stripePost(key, { event_name: "api_request", "payload[stripe_customer_id]": stripeId, "payload[value]": "1" })).status).toBe(200);
    expect((await api("POST", `/api/v1/subscriptions/${sub.id}/cancel`, { body: { reason: "test", cancelAtPeriodEnd: false } })).status).toBe(200);
    const next = await createSubscription({ customerId: customer.id, planId: plan.id });
    const r = await stripePost(key, { event_name: "api_request", "payload[stripe_customer_id]": stripeId, "payload[value]": "4" });
    expect(r.status).toBe(200);
    expect((await summaryOf(next.id, "api_calls")).value).toBe("4");
  });
});

describe("a Stripe id change the directory did not take", () => {
  it("leaves the customer's subscriptions behind, so the resync pushes the id again", async () => {
    const { syncStripeCustomerId } = await import("../../src/modules/usage/routing");
    const { customer, sub } = await setup();
    const versions = () => env.DB.prepare("SELECT meter_synced_version AS synced, config_version AS config FROM subscriptions WHERE id = ?").bind(sub.id).first<{ synced: number; config: number }>();
    const before = (await versions())!;
    expect(before.synced).toBe(before.config);
    const down = { ...env, INGEST_DIRECTORY: { idFromName: () => ({}), get: () => ({ setAlias: async () => { throw new Error("directory down"); }, setStripeCustomerId: async () => { throw new Error("directory down"); } }) } } as unknown as Env;
    const { messageServicesOf } = await import("../helpers");
    await syncStripeCustomerId(messageServicesOf({ INGEST_DIRECTORY: down.INGEST_DIRECTORY }), customer.id, unique("cus_new"));
    const after = (await versions())!;
    expect(after.synced).toBeLessThan(after.config);
  });

  it("stays behind when a queue batch's acknowledgement of its meter lands after the mark", async () => {
    const { syncStripeCustomerId } = await import("../../src/modules/usage/routing");
    const { pushMeterConfig } = await import("../../src/modules/usage/meter-config");
    const { servicesFor, trailingWritesFor } = await import("../../src/platform/services");
    const { messageServicesOf } = await import("../helpers");
    const { customer, sub } = await setup();
    const versions = () => env.DB.prepare("SELECT meter_synced_version AS synced, config_version AS config FROM subscriptions WHERE id = ?").bind(sub.id).first<{ synced: number; config: number }>();
    // A change (as a renewal commits it) and its meter push in a queue batch: the acknowledgement trails.
    await env.DB.prepare("UPDATE subscriptions SET config_version = config_version + 1 WHERE id = ?").bind(sub.id).run();
    const row = (await dbOf(env).select().from(subscriptions).where(eq(subscriptions.id, sub.id)).get())!;
    const plan = (await dbOf(env).select().from(plans).where(and(eq(plans.id, row.planId), eq(plans.version, row.planVersion))).get())!;
    const trailing = trailingWritesFor(env);
    expect(await pushMeterConfig(servicesFor(env, { actor: SYSTEM_ACTOR, now: Date.now() }, {}, trailing), row, plan)).toBe(true);
    // Meanwhile the customer's new Stripe id does not reach the directory: its subscriptions are marked behind ...
    const down = { setAlias: async () => { throw new Error("directory down"); }, setStripeCustomerId: async () => { throw new Error("directory down"); } };
    await syncStripeCustomerId(messageServicesOf({ INGEST_DIRECTORY: { idFromName: () => ({}), get: () => down } as unknown as Env["INGEST_DIRECTORY"] }), customer.id, unique("cus_new"));
    // ... and the batch's acknowledgement, written after, does not take that back: the resync still pushes the id.
    expect(await trailing.flush()).toBe(1);
    const after = (await versions())!;
    expect(after.synced).toBeLessThan(after.config);
  });
});

describe("a route cached by another isolate", () => {
  it("is read again from the directory when the meter refuses it, and the event reaches the new subscription", async () => {
    const { customer, sub, stripeId, key } = await setup();
    expect((await stripePost(key, { event_name: "api_request", "payload[stripe_customer_id]": stripeId, "payload[value]": "1" })).status).toBe(200);
    // What another isolate's push would do, without dropping this isolate's cache: cancel the cached subscription
    // (meter and directory) and give the customer a new one.
    const meterOf = (id: string) => env.USAGE_METER.get(env.USAGE_METER.idFromName(id));
    const config = (await meterOf(sub.id).getConfig())!;
    const canceled = { ...config, status: "canceled" as const, version: config.version + 1 };
    await meterOf(sub.id).configure(canceled);
    const nextId = unique("sub_next");
    const next = { ...config, subscriptionId: nextId, version: 1 };
    await meterOf(nextId).configure(next);
    await directoryStub(env, `customer:${customer.id}`).upsertSubscription(customer.id, stripeId, routingEntryOf(canceled));
    await directoryStub(env, `customer:${customer.id}`).upsertSubscription(customer.id, stripeId, routingEntryOf(next));
    vi.useFakeTimers({ toFake: ["Date"], now: Date.now() + 2_000 }); // the cached route is now 2 s old
    try {
      const r = await stripePost(key, { event_name: "api_request", "payload[stripe_customer_id]": stripeId, "payload[value]": "7" });
      expect(r.status).toBe(200);
    } finally {
      vi.useRealTimers();
    }
    expect((await summaryOf(nextId, "api_calls")).value).toBe("7");
    expect((await summaryOf(sub.id, "api_calls")).value).toBe("1");
  });
});

describe("Stripe v2 meter event stream (POST /v2/billing/meter_event_stream)", () => {
  it("stores a batch, dedupes identifiers and lists the events it did not store", async () => {
    const { sub, stripeId, key } = await setup();
    const events = [
      { event_name: "api_request", identifier: "s1", payload: { stripe_customer_id: stripeId, value: "5" }, timestamp: new Date().toISOString() },
      { event_name: "api_request", identifier: "s2", payload: { stripe_customer_id: stripeId, value: "7" } },
      { event_name: "api_request", identifier: "s1", payload: { stripe_customer_id: stripeId, value: "5" } },
      { event_name: "nope", identifier: "s3", payload: { stripe_customer_id: stripeId, value: "1" } },
    ];
    const r = await api("POST", "/v2/billing/meter_event_stream", { auth: `Bearer ${key}`, body: { events } });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ accepted: 2, duplicates: 1, rejected: 1 });
    expect(r.body.results).toEqual([
      { index: 2, identifier: "s1", status: "duplicate" },
      expect.objectContaining({ index: 3, identifier: "s3", status: "rejected", code: "resource_missing" }),
    ]);
    expect((await summaryOf(sub.id, "api_calls")).value).toBe("12");
    // A payload whose other keys (kept as metadata) are over 32 KB as JSON is refused alone; the rest is stored.
    const big = await api("POST", "/v2/billing/meter_event_stream", {
      auth: `Bearer ${key}`,
      body: { events: [{ ...events[1], identifier: "s4" }, { event_name: "api_request", identifier: "s5", payload: { stripe_customer_id: stripeId, value: "1", note: '"'.repeat(600 * 1024) } }] },
    });
    expect(big.body).toMatchObject({ accepted: 1, rejected: 1 });
    expect(big.body.results).toEqual([expect.objectContaining({ index: 1, identifier: "s5", status: "rejected", message: expect.stringContaining("32768") })]);
    expect((await summaryOf(sub.id, "api_calls")).value).toBe("19");
    const tooMany = await api("POST", "/v2/billing/meter_event_stream", { auth: `Bearer ${key}`, body: { events: Array.from({ length: 101 }, () => events[1]) } });
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.error.param).toBe("events");
  });
});

describe("CloudEvents (OpenMeter compatible) under /openmeter", () => {
  const ce = (subject: string, id: string, data: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({ specversion: "1.0", id, source: "test", type: "prompt", subject, data, ...extra });
  const post = (key: string, body: unknown, type: string) => api("POST", "/openmeter/api/v1/events", { auth: `Bearer ${key}`, rawBody: JSON.stringify(body), headers: { "content-type": type } });

  it("ingests one event and a batch with the meter's valueProperty and groupBy, deduped by id", async () => {
    const { customer, sub, key } = await setup();
    expect((await post(key, ce(customer.id, "e1", { usage: { tokens: 100 }, model: "gpt" }), "application/cloudevents+json")).status).toBe(204);
    const batch = [ce(customer.id, "e1", { usage: { tokens: 100 } }), ce(sub.id, "e2", { usage: { tokens: 50 }, model: "small" }), ce(customer.id, "e3", { model: "x" })];
    const r = await post(key, batch, "application/cloudevents-batch+json");
    expect(r.status).toBe(207);
    expect(r.body).toMatchObject({ accepted: 1, duplicates: 1, rejected: 1 });
    expect(r.body.results[1]).toMatchObject({ index: 2, id: "e3", status: "rejected", reason: "invalid_event" });
    expect(await summaryOf(sub.id, "tokens")).toMatchObject({ value: "150", eventCount: 2 });

    const listed = await api("GET", `/openmeter/api/v1/events?subject=${customer.id}`, { auth: `Bearer ${key}` });
    expect(listed.status).toBe(200);
    expect(listed.body.map((e: { event: { id: string } }) => e.event.id).sort()).toEqual(["e1", "e2"]);
    expect(listed.body.find((e: { event: { id: string } }) => e.event.id === "e1").event).toMatchObject({ type: "prompt", subject: customer.id, data: { tokens: 100, model: "gpt" } });
  });

  it("refuses a groupBy value JSON reads as Infinity, naming its path, instead of storing it as null", async () => {
    const { customer, sub, key } = await setup();
    // 1e999 is only sayable in the request's text: JSON.stringify would write null.
    const rawBody = JSON.stringify(ce(customer.id, "inf1", { usage: { tokens: 5 }, model: "__INF__" })).replace('"__INF__"', "1e999");
    const r = await api("POST", "/openmeter/api/v1/events", { auth: `Bearer ${key}`, rawBody, headers: { "content-type": "application/cloudevents+json" } });
    expect(r.status).toBe(422);
    expect(r.body).toMatchObject({ reason: "invalid_event", detail: "$.model must be a finite number" });
    expect(await summaryOf(sub.id, "tokens")).toMatchObject({ value: "0", eventCount: 0 });
  });

  it("keeps the native per-event reasons: unknown subject 404, future time 422, wrong content type 415", async () => {
    const { customer, key } = await setup();
    const unknown = await post(key, ce("cus_nobody", "u1", { usage: { tokens: 1 } }), "application/cloudevents+json");
    expect(unknown.status).toBe(404);
    expect(unknown.body.reason).toBe("unknown_subscription");
    const future = await post(key, ce(customer.id, "f1", { usage: { tokens: 1 } }, { time: new Date(Date.now() + 3_600_000).toISOString() }), "application/cloudevents+json");
    expect(future.status).toBe(422);
    expect(future.body.reason).toBe("timestamp_in_future");
    expect((await post(key, ce(customer.id, "t1", {}), "text/plain")).status).toBe(415);
  });

  it("needs usage:write to ingest and usage:read to list", async () => {
    const { customer } = await setup();
    const readOnly = (await createApiKey(["usage:read"])).key;
    const refused = await post(readOnly, ce(customer.id, "r1", { usage: { tokens: 1 } }), "application/cloudevents+json");
    expect(refused.status).toBe(403);
    expect(refused.body.detail).toContain("usage:write");
    const writeOnly = (await createApiKey(["usage:write"])).key;
    const list = await api("GET", `/openmeter/api/v1/events?subject=${customer.id}`, { auth: `Bearer ${writeOnly}` });
    expect(list.status).toBe(403);
    expect(list.body.detail).toContain("usage:read");
  });
});
