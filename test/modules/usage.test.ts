import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { ARRIVAL_SLOTS, DEDUP_RETENTION_MS, UsageMeter } from "../../durable-objects/usage-meter";
import type { MeterConfig } from "../../src/modules/usage/meter-config";
import { api, createApiKey, createCustomer, createPlan, createSubscription, messageServicesOf, unique } from "../helpers";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const isoAt = (ms: number) => new Date(ms).toISOString();

const meters: MeterConfig["meters"] = [
  { id: "price_sum", type: "metered", meterId: "m_sum", aggregation: "sum", pricingModel: "per_unit", unitAmount: "0.01" },
  { id: "price_count", type: "metered", meterId: "m_count", aggregation: "count", pricingModel: "per_unit", unitAmount: "1" },
  { id: "price_max", type: "metered", meterId: "m_max", aggregation: "max", pricingModel: "per_unit", unitAmount: "1" },
  { id: "price_uniq", type: "metered", meterId: "m_uniq", aggregation: "unique_count", aggregationField: "user", pricingModel: "per_unit", unitAmount: "1" },
  { id: "price_latest", type: "metered", meterId: "m_latest", aggregation: "latest", pricingModel: "per_unit", unitAmount: "1" },
];

/** A meter configured directly (as the subscription code would push it), so periods can be placed anywhere. */
async function configuredMeter(overrides: Partial<MeterConfig> = {}) {
  const now = Date.now();
  const subscriptionId = unique("sub");
  const config: MeterConfig = {
    subscriptionId,
    customerId: "cus_test",
    status: "active",
    currency: "USD",
    interval: "day",
    intervalCount: 1,
    billingAnchor: now - 12 * HOUR,
    currentPeriodStart: now - 12 * HOUR,
    currentPeriodEnd: now + 12 * HOUR,
    testClockId: null,
    meters,
    version: 1,
    ...overrides,
  };
  const stub = env.USAGE_METER.get(env.USAGE_METER.idFromName(subscriptionId));
  await stub.configure(config);
  return { subscriptionId, stub, config };
}

const ev = (subscriptionId: string, meterId: string, quantity: number | string, extra: Record<string, unknown> = {}) => ({
  subscriptionId,
  meterId,
  quantity,
  timestamp: isoAt(Date.now() - 1000),
  ...extra,
});

async function summary(subscriptionId: string, period = "current") {
  const r = await api("GET", `/api/v1/usage/${subscriptionId}/summary?period=${encodeURIComponent(period)}`);
  expect(r.status).toBe(200);
  return r.body;
}
const meterOf = (s: any, id: string) => s.meters.find((m: any) => m.meterId === id);

describe("POST /api/v1/usage", () => {
  it("records the runbook's single event through a real subscription and an API key", async () => {
    const sub = await createSubscription();
    const { key } = await createApiKey();
    const r = await api("POST", "/api/v1/usage", {
      auth: `Bearer ${key}`,
      body: { subscriptionId: sub.id, meterId: "api_calls", quantity: 1000, timestamp: isoAt(Date.now()), metadata: { endpoint: "/api/v1/products" } },
    });
    expect(r.status).toBe(202);
    expect(r.body).toMatchObject({ accepted: 1, duplicates: 0, rejected: 0, results: [] });
    const s = await summary(sub.id);
    expect(meterOf(s, "api_calls")).toMatchObject({ value: "1000", eventCount: 1 });
    // 1000 × 0.001 USD
    expect(meterOf(s, "api_calls").price).toMatchObject({ amount: "1.00", amountMinor: 100, currency: "USD" });
    expect(s.period.start).toBe(sub.currentPeriodStart);
  });

  it("counts a repeated eventId once, within a batch and across batches", async () => {
    const { subscriptionId } = await configuredMeter();
    const batch = { events: [ev(subscriptionId, "m_sum", 5, { eventId: "e1" }), ev(subscriptionId, "m_sum", 5, { eventId: "e1" }), ev(subscriptionId, "m_sum", 7, { eventId: "e2" })] };
    const first = await api("POST", "/api/v1/usage", { body: batch });
    expect(first.status).toBe(202);
    expect(first.body).toMatchObject({ accepted: 2, duplicates: 1, rejected: 0 });
    expect(first.body.results).toEqual([{ index: 1, eventId: "e1", status: "duplicate" }]);
    const again = await api("POST", "/api/v1/usage", { body: batch });
    expect(again.body).toMatchObject({ accepted: 0, duplicates: 3 });
    expect(meterOf(await summary(subscriptionId), "m_sum")).toMatchObject({ value: "12", eventCount: 2 });
  });

  it("dedupes a large batch exactly: repeats far apart in the batch, and events stored by an earlier request", async () => {
    const { subscriptionId } = await configuredMeter();
    await api("POST", "/api/v1/usage", { body: ev(subscriptionId, "m_sum", 100, { eventId: "old" }) });
    // 40 events are stored in several multi-row inserts; e3 repeats at index 35, "old" was stored already.
    const events = Array.from({ length: 40 }, (_, i) => ev(subscriptionId, "m_sum", 1, { eventId: i === 35 ? "e3" : i === 20 ? "old" : `e${i}` }));
    const r = await api("POST", "/api/v1/usage", { body: { events } });
    expect(r.status).toBe(202);
    expect(r.body).toMatchObject({ accepted: 38, duplicates: 2, rejected: 0 });
    expect(r.body.results).toEqual([
      { index: 20, eventId: "old", status: "duplicate" },
      { index: 35, eventId: "e3", status: "duplicate" },
    ]);
    expect(meterOf(await summary(subscriptionId), "m_sum")).toMatchObject({ value: "138", eventCount: 39 });
  });

  it("stores a batch too large for one insert statement in several, deduping across them and keeping metadata whole", async () => {
    const { subscriptionId } = await configuredMeter();
    // 30 events of 10 kB metadata each: the meter's rows go to storage in more than one statement (256 kB of rows per
    // statement), and e3 repeats at index 28, in a later statement than its first.
    const note = (i: number) => `${i}:${"x".repeat(10_000)}`;
    const events = Array.from({ length: 30 }, (_, i) => ev(subscriptionId, "m_sum", 2, { eventId: i === 28 ? "e3" : `e${i}`, metadata: { note: note(i), n: i } }));
    const r = await api("POST", "/api/v1/usage", { body: { events } });
    expect(r.body).toMatchObject({ accepted: 29, duplicates: 1, rejected: 0 });
    expect(r.body.results).toEqual([{ index: 28, eventId: "e3", status: "duplicate" }]);
    expect(meterOf(await summary(subscriptionId), "m_sum")).toMatchObject({ value: "58", eventCount: 29 });
    const listed = await api("GET", `/api/v1/usage/${subscriptionId}/events?limit=100`);
    expect(listed.body.data).toHaveLength(29);
    expect(listed.body.data.find((e: any) => e.eventId === "e29").metadata).toEqual({ note: note(29), n: 29 });
    expect(listed.body.data.find((e: any) => e.eventId === "e3").metadata).toEqual({ note: note(3), n: 3 });
  });

  it("keeps event ids with NUL characters and lone surrogates distinct, alike whether sent alone or in a batch", async () => {
    const { subscriptionId } = await configuredMeter();
    const ids = ["a\u0000b", "a\u0000c", "x\ud800y", "x\udc00y", "plain"];
    for (const eventId of ids) expect((await api("POST", "/api/v1/usage", { body: ev(subscriptionId, "m_sum", 1, { eventId }) })).body.accepted).toBe(1);
    const again = await api("POST", "/api/v1/usage", { body: { events: ids.map((eventId) => ev(subscriptionId, "m_sum", 1, { eventId })) } });
    expect(again.body).toMatchObject({ accepted: 0, duplicates: 5 });
    const fresh = ids.map((id) => `${id}!`);
    expect((await api("POST", "/api/v1/usage", { body: { events: fresh.map((eventId) => ev(subscriptionId, "m_sum", 1, { eventId })) } })).body.accepted).toBe(5);
    for (const eventId of fresh) expect((await api("POST", "/api/v1/usage", { body: ev(subscriptionId, "m_sum", 1, { eventId }) })).body.duplicates).toBe(1);
    expect(meterOf(await summary(subscriptionId), "m_sum")).toMatchObject({ value: "10", eventCount: 10 });
  });

  it("dedupes events without ids by Idempotency-Key and index", async () => {
    const { subscriptionId } = await configuredMeter();
    const body = { events: [ev(subscriptionId, "m_sum", 1), ev(subscriptionId, "m_sum", 2)] };
    const a = await api("POST", "/api/v1/usage", { body, headers: { "idempotency-key": "batch-42" } });
    const b = await api("POST", "/api/v1/usage", { body, headers: { "idempotency-key": "batch-42" } });
    expect(a.body.accepted).toBe(2);
    expect(b.body).toMatchObject({ accepted: 0, duplicates: 2 });
    expect(meterOf(await summary(subscriptionId), "m_sum").value).toBe("3");
    // Its length is bounded as on every route (each event's key carries it): 255 characters, and nothing is stored past it.
    const long = await api("POST", "/api/v1/usage", { body, headers: { "idempotency-key": "k".repeat(256) } });
    expect(long.status).toBe(400);
    expect(long.body.errors).toEqual([{ path: "Idempotency-Key", message: expect.stringContaining("255") }]);
    expect((await api("POST", "/api/v1/usage", { body, headers: { "idempotency-key": "k".repeat(255) } })).body.accepted).toBe(2);
    expect(meterOf(await summary(subscriptionId), "m_sum").value).toBe("6");
  });

  it("stores concurrent identical batches exactly once", async () => {
    const { subscriptionId } = await configuredMeter();
    const events = Array.from({ length: 50 }, (_, i) => ev(subscriptionId, "m_sum", "0.5", { eventId: `c${i}` }));
    const results = await Promise.all(Array.from({ length: 5 }, () => api("POST", "/api/v1/usage", { body: { events } })));
    expect(results.reduce((n, r) => n + r.body.accepted, 0)).toBe(50);
    expect(results.reduce((n, r) => n + r.body.duplicates, 0)).toBe(200);
    expect(meterOf(await summary(subscriptionId), "m_sum")).toMatchObject({ value: "25", eventCount: 50 });
  });

  it("aggregates exactly with every aggregation type", async () => {
    const { subscriptionId } = await configuredMeter();
    const t = Date.now() - 60_000;
    const events = ["m_sum", "m_count", "m_max", "m_uniq", "m_latest"].flatMap((m) => [
      ev(subscriptionId, m, 20, { timestamp: isoAt(t), metadata: { user: "u1" } }),
      ev(subscriptionId, m, 10, { timestamp: isoAt(t + 1000), metadata: { user: "u1" } }),
    ]);
    // decimals stay exact: 0.1 + 0.2 is 0.3 here
    events.push(ev(subscriptionId, "m_sum", "0.1"), ev(subscriptionId, "m_sum", 0.2));
    const r = await api("POST", "/api/v1/usage", { body: { events } });
    expect(r.body.accepted).toBe(12);
    const s = await summary(subscriptionId);
    expect(meterOf(s, "m_sum").value).toBe("30.3");
    expect(meterOf(s, "m_count").value).toBe("2");
    expect(meterOf(s, "m_max").value).toBe("20");
    expect(meterOf(s, "m_uniq").value).toBe("1");
    expect(meterOf(s, "m_latest").value).toBe("10");
    expect(meterOf(s, "m_sum").price.amount).toBe("0.30");
  });

  it("keeps every aggregate exact event after event, as stored and not only as held (a fresh instance reads the rows)", async () => {
    const { subscriptionId, stub } = await configuredMeter();
    const t = Date.now() - 60_000;
    // Each step moves a different part of the stored aggregate: the totals only, a new max, a later latest, a new
    // unique value, or nothing but the count (a smaller max, an earlier latest, a unique value seen before).
    const steps: [string, number, number, string][] = [
      ["m_max", 5, t, "u1"],
      ["m_max", 3, t + 1, "u1"],
      ["m_max", 9, t + 2, "u1"],
      ["m_latest", 4, t + 10, "u1"],
      ["m_latest", 8, t + 5, "u1"],
      ["m_latest", 6, t + 20, "u1"],
      ["m_uniq", 1, t, "u1"],
      ["m_uniq", 1, t, "u1"],
      ["m_uniq", 1, t, "u2"],
      ["m_sum", 2, t, "u1"],
      ["m_sum", 3, t, "u1"],
    ];
    for (const [m, q, at, user] of steps) {
      const r = await api("POST", "/api/v1/usage", { body: ev(subscriptionId, m, q, { timestamp: isoAt(at), metadata: { user } }) });
      expect(r.body.accepted).toBe(1);
    }
    const expected = { m_max: ["9", 3], m_latest: ["6", 3], m_uniq: ["2", 3], m_sum: ["5", 2] } as const;
    const s = await summary(subscriptionId);
    const fromRows = await runInDurableObject(stub, async (_i, state) => {
      const fresh = new UsageMeter(state, env);
      await state.blockConcurrencyWhile(async () => {});
      return fresh.summary({ kind: "current" }, Date.now());
    });
    for (const [m, [value, eventCount]] of Object.entries(expected)) {
      expect(meterOf(s, m)).toMatchObject({ value, eventCount });
      expect(fromRows.ok && fromRows.meters.find((x) => x.meterId === m)).toMatchObject({ value, eventCount });
    }
  });

  it("takes latest by event time, not arrival order", async () => {
    const { subscriptionId } = await configuredMeter();
    const t = Date.now() - 60_000;
    await api("POST", "/api/v1/usage", { body: ev(subscriptionId, "m_latest", 10, { timestamp: isoAt(t + 1000) }) });
    await api("POST", "/api/v1/usage", { body: ev(subscriptionId, "m_latest", 20, { timestamp: isoAt(t) }) });
    expect(meterOf(await summary(subscriptionId), "m_latest").value).toBe("10");
  });

  it("puts an event at exactly the period end into the next period", async () => {
    const now = Date.now();
    const end = now + 2 * 60_000;
    const { subscriptionId } = await configuredMeter({ billingAnchor: end - DAY, currentPeriodStart: end - DAY, currentPeriodEnd: end });
    const r = await api("POST", "/api/v1/usage", {
      body: { events: [ev(subscriptionId, "m_sum", 1, { timestamp: isoAt(end - 1) }), ev(subscriptionId, "m_sum", 100, { timestamp: isoAt(end) })] },
    });
    expect(r.body.accepted).toBe(2);
    const current = await summary(subscriptionId, "current");
    expect(current.period).toEqual({ start: isoAt(end - DAY), end: isoAt(end) });
    expect(meterOf(current, "m_sum").value).toBe("1");
    const next = await summary(subscriptionId, isoAt(end));
    expect(next.period).toEqual({ start: isoAt(end), end: isoAt(end + DAY) });
    expect(meterOf(next, "m_sum").value).toBe("100");
  });

  it("accepts late events within the grace window and refuses them after it", async () => {
    const now = Date.now();
    // Current period started 30 min ago; the one before it ended then (inside the 1 h grace)...
    const { subscriptionId } = await configuredMeter({ billingAnchor: now - 30 * 60_000, currentPeriodStart: now - DAY - 30 * 60_000, currentPeriodEnd: now - 30 * 60_000 });
    const inGrace = await api("POST", "/api/v1/usage", { body: ev(subscriptionId, "m_sum", 3, { timestamp: isoAt(now - 40 * 60_000) }) });
    expect(inGrace.status).toBe(202);
    // ...and one whose period ended 2 h ago is beyond it.
    const old = await configuredMeter({ billingAnchor: now - 2 * HOUR, currentPeriodStart: now - DAY - 2 * HOUR, currentPeriodEnd: now - 2 * HOUR });
    const late = await api("POST", "/api/v1/usage", { body: ev(old.subscriptionId, "m_sum", 3, { timestamp: isoAt(now - 3 * HOUR) }) });
    expect(late.status).toBe(422);
    expect(late.headers.get("content-type")).toContain("application/problem+json");
    expect(late.body).toMatchObject({ reason: "period_closed", errors: [{ path: "timestamp" }] });
  });

  it("attributes events stamped moments before the subscription began to its first period", async () => {
    const now = Date.now();
    const { subscriptionId } = await configuredMeter({ billingAnchor: now, currentPeriodStart: now, currentPeriodEnd: now + DAY });
    const skewed = await api("POST", "/api/v1/usage", { body: ev(subscriptionId, "m_sum", 2, { timestamp: isoAt(now - 2000) }) });
    expect(skewed.status).toBe(202);
    const before = await api("POST", "/api/v1/usage", { body: ev(subscriptionId, "m_sum", 2, { timestamp: isoAt(now - 10 * 60_000) }) });
    expect(before.status).toBe(422);
    expect(before.body.reason).toBe("before_subscription_start");
    expect(meterOf(await summary(subscriptionId), "m_sum").value).toBe("2");
  });

  it("refuses events more than 5 minutes in the future", async () => {
    const { subscriptionId } = await configuredMeter();
    const r = await api("POST", "/api/v1/usage", { body: ev(subscriptionId, "m_sum", 1, { timestamp: isoAt(Date.now() + 10 * 60_000) }) });
    expect(r.status).toBe(422);
    expect(r.body.reason).toBe("timestamp_in_future");
    const ok = await api("POST", "/api/v1/usage", { body: ev(subscriptionId, "m_sum", 1, { timestamp: isoAt(Date.now() + 60_000) }) });
    expect(ok.status).toBe(202);
  });

  it("names every rejection reason per event and keeps the good events of a batch", async () => {
    const { subscriptionId } = await configuredMeter();
    const canceled = await configuredMeter({ status: "canceled" });
    const r = await api("POST", "/api/v1/usage", {
      body: {
        events: [
          ev(subscriptionId, "m_sum", 1),
          ev("sub_does_not_exist", "m_sum", 1),
          ev(canceled.subscriptionId, "m_sum", 1),
          ev(subscriptionId, "no_such_meter", 1),
          ev(subscriptionId, "m_sum", -5),
          { subscriptionId, meterId: "m_sum", quantity: "Infinity" },
          ev(subscriptionId, "m_uniq", 1),
          { meterId: "m_sum", quantity: 1 },
        ],
      },
    });
    expect(r.status).toBe(207);
    expect(r.body).toMatchObject({ accepted: 1, rejected: 7 });
    const reasons = Object.fromEntries(r.body.results.map((x: any) => [x.index, x.reason]));
    expect(reasons).toEqual({
      1: "unknown_subscription",
      2: "subscription_canceled",
      3: "unknown_meter",
      4: "invalid_event",
      5: "invalid_event",
      6: "missing_unique_field",
      7: "invalid_event",
    });
    expect(r.body.results.find((x: any) => x.index === 4).detail).toContain("events.4.quantity: must not be negative");
    expect(r.body.results.find((x: any) => x.index === 7).detail).toContain("events.7.subscriptionId");
    expect(meterOf(await summary(subscriptionId), "m_sum").value).toBe("1");
  });

  it("reads a unique_count field from the event's own metadata only, and refuses a metadata number JSON reads as Infinity", async () => {
    const ctorMeter = { id: "price_ctor", type: "metered" as const, meterId: "m_ctor", aggregation: "unique_count" as const, aggregationField: "constructor", pricingModel: "per_unit" as const, unitAmount: "1" };
    const { subscriptionId } = await configuredMeter({ meters: [...meters, ctorMeter] });
    // Without the field, an object's inherited `constructor` used to count as the unique value (every such event
    // then counted as one more user than none).
    const events = [ev(subscriptionId, "m_ctor", 1, { metadata: { region: "eu" } }), ev(subscriptionId, "m_ctor", 1, { metadata: { constructor: "u1" } })];
    // 1e999 is only sayable in the request's text: JSON.stringify would write null.
    const body = JSON.stringify({ events: [...events, ev(subscriptionId, "m_uniq", 1, { metadata: { user: "__INF__" } })] }).replace('"__INF__"', "1e999");
    const r = await api("POST", "/api/v1/usage", { rawBody: body, headers: { "content-type": "application/json" } });
    expect(r.status).toBe(207);
    expect(r.body).toMatchObject({ accepted: 1, rejected: 2 });
    expect(r.body.results).toEqual([
      expect.objectContaining({ index: 0, reason: "missing_unique_field" }),
      expect.objectContaining({ index: 2, reason: "invalid_event", detail: "events.2.metadata.user: must be a finite number" }),
    ]);
    const s = await summary(subscriptionId);
    expect(meterOf(s, "m_ctor")).toMatchObject({ value: "1", eventCount: 1 });
    expect(meterOf(s, "m_uniq")).toMatchObject({ value: "0", eventCount: 0 });
  });

  it("refuses an event whose metadata is over 32 KB as JSON, alone (400 naming metadata) or in a batch, and stores the rest", async () => {
    const { subscriptionId } = await configuredMeter();
    const big = { note: "x".repeat(33 * 1024) };
    const alone = await api("POST", "/api/v1/usage", { body: ev(subscriptionId, "m_sum", 1, { eventId: "big", metadata: big }) });
    expect(alone.status).toBe(400);
    expect(alone.body.errors).toEqual([{ path: "metadata", message: expect.stringContaining("32768") }]);
    // 900 KB of quotes: 1.8 MB once escaped in the request, twice that in the meter's chunk of rows, past the 2 MB
    // Cloudflare allows one SQL value of a Durable Object (local workerd does not enforce it): on Cloudflare the whole
    // meter call would fail, every event of the batch "meter_unavailable", retried for ever.
    const quotes = { note: '"'.repeat(900 * 1024) };
    const r = await api("POST", "/api/v1/usage", {
      body: { events: [ev(subscriptionId, "m_sum", 2, { eventId: "ok" }), ev(subscriptionId, "m_sum", 3, { eventId: "quotes", metadata: quotes }), ev(subscriptionId, "m_sum", 4, { eventId: "big", metadata: big })] },
    });
    expect(r.status).toBe(207);
    expect(r.body).toMatchObject({ accepted: 1, duplicates: 0, rejected: 2 });
    expect(r.body.results).toEqual([
      { index: 1, eventId: "quotes", status: "rejected", reason: "invalid_event", detail: expect.stringContaining("events.1.metadata") },
      { index: 2, eventId: "big", status: "rejected", reason: "invalid_event", detail: expect.stringContaining("events.2.metadata") },
    ]);
    // Just under the limit is stored whole.
    const fits = { note: "y".repeat(32 * 1024 - 20) };
    expect((await api("POST", "/api/v1/usage", { body: ev(subscriptionId, "m_sum", 5, { eventId: "fits", metadata: fits }) })).body.accepted).toBe(1);
    expect(meterOf(await summary(subscriptionId), "m_sum")).toMatchObject({ value: "7", eventCount: 2 });
  });

  it("answers 400 for a malformed body and 404 for an unknown subscription", async () => {
    expect((await api("POST", "/api/v1/usage", { rawBody: "{oops" })).status).toBe(400);
    const notArray = await api("POST", "/api/v1/usage", { body: { events: "x" } });
    expect(notArray.status).toBe(400);
    expect(notArray.body.errors[0].path).toBe("events");
    const tooMany = await api("POST", "/api/v1/usage", { body: { events: Array.from({ length: 1001 }, () => ({})) } });
    expect(tooMany.status).toBe(400);
    const neg = await api("POST", "/api/v1/usage", { body: { subscriptionId: "sub_x", meterId: "m", quantity: -1 } });
    expect(neg.status).toBe(400);
    expect(neg.body.errors).toEqual([{ path: "quantity", message: "must not be negative" }]);
    const unknown = await api("POST", "/api/v1/usage", { body: ev("sub_nope", "m_sum", 1) });
    expect(unknown.status).toBe(404);
    expect(unknown.body.reason).toBe("unknown_subscription");
  });

  it("lets only usage:write keys and admin tokens ingest", async () => {
    const { subscriptionId } = await configuredMeter();
    const body = ev(subscriptionId, "m_sum", 1);
    expect((await api("POST", "/api/v1/usage", { body, as: null })).status).toBe(401);
    expect((await api("POST", "/api/v1/usage", { body, as: "viewer" })).status).toBe(403);
    const readKey = await createApiKey(["usage:read"]);
    expect((await api("POST", "/api/v1/usage", { body, auth: `Bearer ${readKey.key}` })).status).toBe(403);
    const writeKey = await createApiKey(["usage:write"]);
    expect((await api("POST", "/api/v1/usage", { body, auth: `Bearer ${writeKey.key}` })).status).toBe(202);
    await api("DELETE", `/admin/api-keys/${writeKey.id}`);
    expect((await api("POST", "/api/v1/usage", { body, auth: `Bearer ${writeKey.key}` })).status).toBe(401);
  });
});

describe("usage summary pricing", () => {
  it("prices graduated and volume tiers as Stripe's published example", async () => {
    const tiers = [
      { upTo: 5, unitAmount: "7" },
      { upTo: 10, unitAmount: "6.50" },
      { upTo: null, unitAmount: "6" },
    ];
    const customer = await createCustomer();
    const plan = await createPlan({
      prices: [
        { type: "metered", meterId: "seats_g", pricingModel: "graduated", tiers },
        { type: "metered", meterId: "seats_v", pricingModel: "volume", tiers },
      ],
    });
    const sub = await createSubscription({ customerId: customer.id, planId: plan.id });
    const now = { timestamp: isoAt(Date.now()) };
    const first = await api("POST", "/api/v1/usage", { body: { events: [ev(sub.id, "seats_g", 6, now), ev(sub.id, "seats_v", 6, now)] } });
    expect(first.status).toBe(202);
    let s = await summary(sub.id);
    expect(meterOf(s, "seats_g").price.amount).toBe("41.50");
    expect(meterOf(s, "seats_v").price.amount).toBe("39.00");
    expect(s.total).toEqual({ amount: "80.50", amountMinor: 8050, currency: "USD" });
    await api("POST", "/api/v1/usage", { body: { events: [ev(sub.id, "seats_g", 14, now), ev(sub.id, "seats_v", 14, now)] } });
    s = await summary(sub.id);
    expect(meterOf(s, "seats_g").price.amount).toBe("127.50");
    expect(meterOf(s, "seats_v").price.amount).toBe("120.00");
    expect(meterOf(s, "seats_g").price.tiers).toHaveLength(3);
  });

  it("refuses usage past what the price can bill; a dearer price later makes the summary a 409, not a failure", async () => {
    const { subscriptionId, stub, config } = await configuredMeter();
    // 0.01 USD a unit and at most 10^13 cents a period: 10^13 units, and not one more.
    const full = await api("POST", "/api/v1/usage", { body: { events: [ev(subscriptionId, "m_sum", "9999999999999", { eventId: "most" }), ev(subscriptionId, "m_sum", 1, { eventId: "last" }), ev(subscriptionId, "m_sum", 1, { eventId: "over" })] } });
    expect(full.body).toMatchObject({ accepted: 2, rejected: 1, results: [{ index: 2, eventId: "over", reason: "invalid_quantity" }] });
    // The refused event was taken back: sent again it is refused again, not a duplicate.
    const again = await api("POST", "/api/v1/usage", { body: ev(subscriptionId, "m_sum", 1, { eventId: "over" }) });
    expect(again.status).toBe(422);
    expect(again.body.errors).toEqual([{ path: "quantity", message: expect.stringContaining("more than its price can bill") }]);
    expect(meterOf(await summary(subscriptionId), "m_sum").price.amountMinor).toBe(10 ** 13);
    // The plan changes to 1,000 USD a unit: the period's total is now past any exact amount.
    await stub.configure({ ...config, meters: config.meters.map((m) => (m.meterId === "m_sum" ? { ...m, unitAmount: "1000" } : m)), version: 2 });
    const r = await api("GET", `/api/v1/usage/${subscriptionId}/summary`);
    expect(r.status).toBe(409);
    expect(r.body.detail).toContain("m_sum");
  });

  it("answers 404 for an unknown subscription and 400 for a bad period", async () => {
    expect((await api("GET", "/api/v1/usage/sub_missing/summary")).status).toBe(404);
    const { subscriptionId } = await configuredMeter();
    expect((await api("GET", `/api/v1/usage/${subscriptionId}/summary?period=yesterday`)).status).toBe(400);
  });
});

describe("GET /api/v1/usage/:subscriptionId/events", () => {
  it("lists a period's events newest first, by meter, paged even through events that arrived together", async () => {
    const { subscriptionId } = await configuredMeter();
    await api("POST", "/api/v1/usage", { body: ev(subscriptionId, "m_sum", 1, { eventId: "first", metadata: { region: "eu" } }) });
    // Five events of one batch share their arrival time; the cursor still pages through them exactly once.
    const batch = Array.from({ length: 5 }, (_, i) => ev(subscriptionId, i < 4 ? "m_sum" : "m_count", i + 2, { eventId: `b${i}` }));
    await api("POST", "/api/v1/usage", { body: { events: batch }, headers: { "idempotency-key": "k1" } });
    await api("POST", "/api/v1/usage", { body: { events: [ev(subscriptionId, "m_sum", "0.5")] }, headers: { "idempotency-key": "k2" } });

    const all = await api("GET", `/api/v1/usage/${subscriptionId}/events?limit=100`);
    expect(all.status).toBe(200);
    expect(all.body.data.map((e: any) => e.eventId)).toEqual([null, "b4", "b3", "b2", "b1", "b0", "first"]);
    expect(all.body.data[0]).toMatchObject({ dedupeKey: "idem:k2:0", meterId: "m_sum", quantity: "0.5", metadata: null });
    expect(all.body.data[6]).toMatchObject({ dedupeKey: "id:first", quantity: "1", metadata: { region: "eu" } });
    expect(all.body.period).toEqual((await summary(subscriptionId)).period);

    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: any = await api("GET", `/api/v1/usage/${subscriptionId}/events?meterId=m_sum&limit=2${cursor ? `&startingAfter=${cursor}` : ""}`);
      expect(page.status).toBe(200);
      seen.push(...page.body.data.map((e: any) => e.dedupeKey));
      cursor = page.body.nextCursor;
      expect(page.body.hasMore).toBe(cursor !== null);
    } while (cursor);
    expect(seen).toEqual(["idem:k2:0", "id:b3", "id:b2", "id:b1", "id:b0", "id:first"]);
  });

  it("lists the previous period's events, and names a bad cursor, an unknown subscription and a missing scope", async () => {
    const now = Date.now();
    const boundary = now - 30 * 60_000;
    const { subscriptionId, stub, config } = await configuredMeter({ billingAnchor: boundary, currentPeriodStart: boundary - DAY, currentPeriodEnd: boundary });
    await api("POST", "/api/v1/usage", { body: ev(subscriptionId, "m_max", 9, { eventId: "before", timestamp: isoAt(boundary - HOUR) }) });
    // The subscription renews at the boundary; a late event for the period just ended still arrives within the grace window.
    await stub.configure({ ...config, currentPeriodStart: boundary, currentPeriodEnd: boundary + DAY, version: 2 });
    await api("POST", "/api/v1/usage", { body: ev(subscriptionId, "m_max", 3, { eventId: "late", timestamp: isoAt(boundary - 60_000) }) });
    await api("POST", "/api/v1/usage", { body: ev(subscriptionId, "m_max", 4, { eventId: "after", timestamp: isoAt(now - 60_000) }) });

    const previous = await api("GET", `/api/v1/usage/${subscriptionId}/events?period=previous`);
    expect(previous.body.period).toEqual({ start: isoAt(boundary - DAY), end: isoAt(boundary) });
    expect(previous.body.data.map((e: any) => e.eventId)).toEqual(["late", "before"]);
    expect((await api("GET", `/api/v1/usage/${subscriptionId}/events`)).body.data.map((e: any) => e.eventId)).toEqual(["after"]);

    expect((await api("GET", `/api/v1/usage/${subscriptionId}/events?startingAfter=nope`)).body.errors[0].path).toBe("startingAfter");
    expect((await api("GET", "/api/v1/usage/sub_nope/events")).status).toBe(404);
    const writer = await createApiKey(["usage:write"]);
    expect((await api("GET", `/api/v1/usage/${subscriptionId}/events`, { auth: `Bearer ${writer.key}` })).status).toBe(403);
    const reader = await createApiKey(["usage:read"]);
    expect((await api("GET", `/api/v1/usage/${subscriptionId}/events`, { auth: `Bearer ${reader.key}` })).status).toBe(200);
  });

});

describe("the meter's events by arrival", () => {
  const raw = (key: string, meterId = "m_sum", quantity = "1") => ({ index: 0, eventKey: `id:${key}`, eventId: key, meterId, quantity, timestamp: null, metadata: null });
  const indexOf = (state: DurableObjectState) => state.storage.sql.exec("SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'events_received_idx'").toArray().length;

  it("stores each event under its arrival as rowid, with no arrival index, even past 1,024 events in one millisecond", async () => {
    const { stub } = await configuredMeter();
    const at = Date.now();
    const out = await runInDurableObject(stub, async (instance: UsageMeter, state) => {
      // Two batches stamped with the same "now": 1,200 arrivals in one millisecond.
      for (const [from, n] of [[0, 700], [700, 500]] as const) {
        const reply = await instance.ingest(Array.from({ length: n }, (_, i) => ({ ...raw(`a${from + i}`), index: i })), at);
        expect(reply.accepted).toHaveLength(n);
      }
      const rows = state.storage.sql.exec<{ seq: number; received_at: number; event_key: string }>("SELECT rowid AS seq, received_at, event_key FROM events ORDER BY rowid").toArray();
      return { rows, indexes: indexOf(state) };
    });
    expect(out.indexes).toBe(0);
    expect(out.rows.map((r) => r.event_key)).toEqual(Array.from({ length: 1200 }, (_, i) => `id:a${i}`));
    expect(out.rows[0]!.seq).toBe(at * ARRIVAL_SLOTS);
    for (const r of out.rows) expect(r.received_at).toBe(Math.floor(r.seq / ARRIVAL_SLOTS));
    // The first 1,024 arrive at `at`, the rest are recorded a millisecond later: still in order, none lost.
    expect(out.rows.filter((r) => r.received_at === at)).toHaveLength(ARRIVAL_SLOTS);
    expect(out.rows.filter((r) => r.received_at === at + 1)).toHaveLength(1200 - ARRIVAL_SLOTS);
  });

  it("numbers single events, keys bound as values and a restarted meter's events after what it stored", async () => {
    const { stub } = await configuredMeter();
    const at = Date.now();
    const keys = await runInDurableObject(stub, async (instance: UsageMeter, state) => {
      await instance.ingest([raw("one")], at); // a single event: its own statement
      // A key with a NUL is bound as a value between JSON chunks (jsonSafe): it takes its turn in the numbering.
      await instance.ingest([raw("b0"), { ...raw("nul\u0000key"), index: 1 }, { ...raw("b2"), index: 2 }], at);
      // After an eviction the next arrival continues from the largest stored rowid, even at the same millisecond.
      const fresh = new UsageMeter(state, env);
      await state.blockConcurrencyWhile(async () => {});
      const reply = await fresh.ingest([raw("after-restart"), { ...raw("and-one-more"), index: 1 }], at);
      expect(reply.accepted).toEqual([0, 1]);
      return state.storage.sql.exec<{ seq: number; event_key: string }>("SELECT rowid AS seq, event_key FROM events ORDER BY rowid").toArray();
    });
    expect(keys.map((k) => k.event_key)).toEqual(["id:one", "id:b0", "id:nul\u0000key", "id:b2", "id:after-restart", "id:and-one-more"]);
    expect(keys.map((k) => k.seq - at * ARRIVAL_SLOTS)).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it("stores a batch mixing meters, unique values and a stored duplicate with every column in place; its repeat stores nothing", async () => {
    const { subscriptionId, stub, config } = await configuredMeter();
    const t = Date.now() - 60_000;
    await api("POST", "/api/v1/usage", { body: ev(subscriptionId, "m_sum", 1, { eventId: "old", timestamp: isoAt(t) }) });
    // Several meters and a unique value: the meter's chunk carries meter, period and unique value per row.
    const batch = {
      events: [
        ev(subscriptionId, "m_sum", 2, { eventId: "a", timestamp: isoAt(t + 1), metadata: { region: "eu", n: 1 } }),
        ev(subscriptionId, "m_uniq", 1, { eventId: "b", timestamp: isoAt(t + 2), metadata: { user: "u1" } }),
        ev(subscriptionId, "m_sum", 1, { eventId: "old", timestamp: isoAt(t) }),
        ev(subscriptionId, "m_max", "7.5", { eventId: "c", timestamp: isoAt(t + 3) }),
      ],
    };
    const r = await api("POST", "/api/v1/usage", { body: batch });
    expect(r.body).toMatchObject({ accepted: 3, duplicates: 1, rejected: 0 });
    expect(r.body.results).toEqual([{ index: 2, eventId: "old", status: "duplicate" }]);
    expect((await api("POST", "/api/v1/usage", { body: batch })).body).toMatchObject({ accepted: 0, duplicates: 4, rejected: 0 });

    type Row = { seq: number; event_key: string; meter_id: string; period_start: number; quantity: string; ts: number; received_at: number; unique_value: string | null; metadata: string | null };
    const rows = await runInDurableObject(stub, (_i, state) =>
      state.storage.sql.exec<Row>("SELECT rowid AS seq, event_key, meter_id, period_start, quantity, ts, received_at, unique_value, metadata FROM events ORDER BY rowid").toArray(),
    );
    expect(rows.map(({ seq: _s, received_at: _r, ...row }) => row)).toEqual([
      { event_key: "id:old", meter_id: "m_sum", period_start: config.currentPeriodStart, quantity: "1", ts: t, unique_value: null, metadata: null },
      { event_key: "id:a", meter_id: "m_sum", period_start: config.currentPeriodStart, quantity: "2", ts: t + 1, unique_value: null, metadata: JSON.stringify({ region: "eu", n: 1 }) },
      { event_key: "id:b", meter_id: "m_uniq", period_start: config.currentPeriodStart, quantity: "1", ts: t + 2, unique_value: "u1", metadata: JSON.stringify({ user: "u1" }) },
      { event_key: "id:c", meter_id: "m_max", period_start: config.currentPeriodStart, quantity: "7.5", ts: t + 3, unique_value: null, metadata: null },
    ]);
    for (const row of rows) expect(row.received_at).toBe(Math.floor(row.seq / ARRIVAL_SLOTS));
    // "old" took the arrival between b and c in the batch, and left it unused.
    expect([rows[2]!.seq - rows[1]!.seq, rows[3]!.seq - rows[2]!.seq]).toEqual([1, 2]);
    const s = await summary(subscriptionId);
    expect([meterOf(s, "m_sum").value, meterOf(s, "m_uniq").value, meterOf(s, "m_max").value]).toEqual(["3", "1", "7.5"]);
  });

  it("finds a stored duplicate in the chunk after a key bound as a value, numbering the rest in order", async () => {
    const { stub } = await configuredMeter();
    const at = Date.now();
    const out = await runInDurableObject(stub, async (instance: UsageMeter, state) => {
      await instance.ingest([raw("stored")], at);
      // p1, p2 | the NUL key alone | p3, "stored" (a duplicate), p4: the duplicate is in the second chunk.
      const keys = ["p1", "p2", "nul\u0000key", "p3", "stored", "p4"];
      const reply = await instance.ingest(keys.map((k, index) => ({ ...raw(k), index })), at);
      const rows = state.storage.sql.exec<{ seq: number; event_key: string }>("SELECT rowid AS seq, event_key FROM events ORDER BY rowid").toArray();
      return { reply, rows };
    });
    expect(out.reply).toEqual({ accepted: [0, 1, 2, 3, 5], others: [{ index: 4, eventId: "stored", status: "duplicate" }] });
    expect(out.rows.map((r) => r.event_key)).toEqual(["id:stored", "id:p1", "id:p2", "id:nul\u0000key", "id:p3", "id:p4"]);
    expect(out.rows.map((r) => r.seq - at * ARRIVAL_SLOTS)).toEqual([0, 1, 2, 3, 4, 6]);
  });

  it("forgets an event id once it leaves the dedup window, and not before", async () => {
    const { subscriptionId, stub } = await configuredMeter();
    await api("POST", "/api/v1/usage", { body: ev(subscriptionId, "m_sum", 2, { eventId: "kept" }) });
    // An event that arrived just past the window, and one just inside it, as the meter would have stored them.
    await runInDurableObject(stub, (_i, state) => {
      const now = Date.now();
      for (const [key, receivedAt] of [["id:old", now - DEDUP_RETENTION_MS - 60_000], ["id:inside", now - DEDUP_RETENTION_MS + 60_000]] as const) {
        state.storage.sql.exec(
          "INSERT INTO events (rowid, event_key, meter_id, period_start, quantity, ts, received_at) VALUES (?, ?, 'm_sum', 0, '1', ?, ?)",
          receivedAt * ARRIVAL_SLOTS,
          key,
          receivedAt,
          receivedAt,
        );
      }
    });
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    const keys = await runInDurableObject(stub, (_i, state) => state.storage.sql.exec<{ event_key: string }>("SELECT event_key FROM events ORDER BY rowid").toArray().map((r) => r.event_key));
    expect(keys).toEqual(["id:inside", "id:kept"]);
    // The forgotten id counts again; the others are still duplicates.
    const again = await api("POST", "/api/v1/usage", { body: { events: ["old", "inside", "kept"].map((eventId) => ev(subscriptionId, "m_sum", 1, { eventId })) } });
    expect(again.body).toMatchObject({ accepted: 1, duplicates: 2 });
  });

  it("a meter from before arrival rowids lists and sweeps through its arrival index, then drops it with its last old row", async () => {
    const { stub, config } = await configuredMeter();
    const out = await runInDurableObject(stub, async (_instance, state) => {
      const sql = state.storage.sql;
      const now = Date.now();
      // As such a meter's storage looks: schema 1, the index, and rows numbered 1, 2, … stamped with their arrival.
      sql.exec("CREATE INDEX events_received_idx ON events (received_at)");
      sql.exec("UPDATE meta SET value = '1' WHERE key = 'schema'");
      for (const [rowid, key, ago] of [[1, "id:legacy1", 2 * HOUR], [2, "id:legacy2", HOUR]] as const) {
        sql.exec("INSERT INTO events (rowid, event_key, meter_id, period_start, quantity, ts, received_at) VALUES (?, ?, 'm_sum', ?, '1', ?, ?)", rowid, key, config.currentPeriodStart, now - ago, now - ago);
      }
      let meter = new UsageMeter(state, env);
      await state.blockConcurrencyWhile(async () => {});
      await meter.ingest([raw("new1"), { ...raw("new2"), index: 1 }], now);
      // A restart of the new code does not move the line between the old rows and its own.
      meter = new UsageMeter(state, env);
      await state.blockConcurrencyWhile(async () => {});
      const line = sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'arrival_from'").one().value;
      const pages: string[][] = [];
      let after: { receivedAt: number; seq: number } | null = null;
      do {
        const page = meter.events({ kind: "current" }, null, 3, after, now);
        if (!page.ok) throw new Error(page.error);
        pages.push(page.events.map((e) => e.dedupeKey));
        after = page.next;
      } while (after);
      const duplicate = await meter.ingest([raw("legacy2")], now);
      // A sweep while an old row is inside the window keeps the index; the one after the last old row left drops it.
      await meter.alarm();
      const indexedAfterFirstSweep = indexOf(state);
      sql.exec("UPDATE events SET received_at = ? WHERE rowid < 100", now - DEDUP_RETENTION_MS - 1);
      await meter.alarm();
      const listed = meter.events({ kind: "current" }, "m_sum", 10, null, now);
      return { line, pages, duplicate, indexedAfterFirstSweep, indexedAfter: indexOf(state), listed: listed.ok ? listed.events.map((e) => e.dedupeKey) : listed.error };
    });
    expect(out.line).toBe("3");
    expect(out.pages).toEqual([["id:new2", "id:new1", "id:legacy2"], ["id:legacy1"]]);
    expect(out.duplicate.others).toEqual([{ index: 0, eventId: "legacy2", status: "duplicate" }]);
    expect(out.indexedAfterFirstSweep).toBe(1);
    expect(out.indexedAfter).toBe(0);
    expect(out.listed).toEqual(["id:new2", "id:new1"]);
  });

  it("a repeated single event leaves the stored aggregate alone, as a restart shows", async () => {
    const { subscriptionId, stub } = await configuredMeter();
    expect((await api("POST", "/api/v1/usage", { body: ev(subscriptionId, "m_sum", 6, { eventId: "one" }) })).status).toBe(202);
    const repeat = await api("POST", "/api/v1/usage", { body: ev(subscriptionId, "m_sum", 6, { eventId: "one" }) });
    expect(repeat.body).toMatchObject({ accepted: 0, duplicates: 1 });
    expect((await api("POST", "/api/v1/usage", { body: ev(subscriptionId, "m_sum", "0.5", { eventId: "two" }) })).status).toBe(202);
    // A new instance reads the aggregate from storage only: it must hold both events and the repeat not at all.
    const stored = await runInDurableObject(stub, async (_instance, state) => {
      const fresh = new UsageMeter(state, env);
      await state.blockConcurrencyWhile(async () => {});
      const s = fresh.summary({ kind: "current" }, Date.now());
      const rows = state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM events").one().n;
      return { value: s.ok ? s.meters.find((m) => m.meterId === "m_sum")?.value : s.error, rows };
    });
    expect(stored).toEqual({ value: "6.5", rows: 2 });
  });
});

describe("POST /api/v1/usage/reset", () => {
  it("zeroes the open period, keeps the events and audits who did it", async () => {
    const { subscriptionId, stub } = await configuredMeter();
    await api("POST", "/api/v1/usage", { body: { events: [ev(subscriptionId, "m_sum", 40), ev(subscriptionId, "m_uniq", 1, { metadata: { user: "a" } })] } });
    const r = await api("POST", "/api/v1/usage/reset", { body: { subscriptionId, meterId: "m_sum", reason: "test data" } });
    expect(r.status).toBe(200);
    expect(r.body.before).toEqual({ value: "40", eventCount: 1 });
    let s = await summary(subscriptionId);
    expect(meterOf(s, "m_sum")).toMatchObject({ value: "0", eventCount: 0 });
    expect(meterOf(s, "m_sum").resetAt).not.toBeNull();
    expect(meterOf(s, "m_uniq").value).toBe("1");
    await api("POST", "/api/v1/usage", { body: ev(subscriptionId, "m_sum", 2) });
    s = await summary(subscriptionId);
    expect(meterOf(s, "m_sum").value).toBe("2");
    const stored = await runInDurableObject(stub, (_i, state) => state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM events WHERE meter_id = 'm_sum'").one().n);
    expect(stored).toBe(2);
    const audit = await api("GET", `/api/v1/audit/search?action=usage.reset&target=${subscriptionId}`);
    expect(audit.body.data).toHaveLength(1);
    expect(audit.body.data[0]).toMatchObject({ actor: "test-admin", reason: "test data", before: { meterId: "m_sum", value: "40" } });
  });

  it("is admin only and names unknown meters and subscriptions", async () => {
    const { subscriptionId } = await configuredMeter();
    expect((await api("POST", "/api/v1/usage/reset", { as: "finance", body: { subscriptionId, meterId: "m_sum" } })).status).toBe(403);
    const badMeter = await api("POST", "/api/v1/usage/reset", { body: { subscriptionId, meterId: "nope" } });
    expect(badMeter.status).toBe(422);
    expect(badMeter.body.errors[0].path).toBe("meterId");
    expect((await api("POST", "/api/v1/usage/reset", { body: { subscriptionId: "sub_none", meterId: "m_sum" } })).status).toBe(404);
  });
});

describe("UsageMeter durability and rollups", () => {
  it("keeps its configuration, periods and aggregates across a restart", async () => {
    const { subscriptionId, stub } = await configuredMeter();
    await api("POST", "/api/v1/usage", { body: { events: [ev(subscriptionId, "m_sum", 4, { eventId: "r1" }), ev(subscriptionId, "m_uniq", 1, { metadata: { user: "x" } })] } });
    // A fresh instance over the same storage is what the runtime builds after an eviction or restart.
    const after = await runInDurableObject(stub, async (_instance, state) => {
      const fresh = new UsageMeter(state, env);
      await state.blockConcurrencyWhile(async () => {});
      return {
        summary: fresh.summary({ kind: "current" }, Date.now()),
        dup: await fresh.ingest([{ index: 0, eventKey: "id:r1", eventId: "r1", meterId: "m_sum", quantity: "4", timestamp: Date.now(), metadata: null }], Date.now()),
      };
    });
    expect(after.summary.ok && after.summary.meters.find((m) => m.meterId === "m_sum")?.value).toBe("4");
    expect(after.dup).toEqual({ accepted: [], others: [{ index: 0, eventId: "r1", status: "duplicate" }] });
  });

  it("restarts from one meta read once its schema is recorded, and a meter from before the schema record keeps its state", async () => {
    const { subscriptionId, stub } = await configuredMeter();
    await api("POST", "/api/v1/usage", { body: ev(subscriptionId, "m_sum", 6, { eventId: "s1" }) });
    const after = await runInDurableObject(stub, async (instance, state) => {
      const recorded = state.storage.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'schema'").toArray();
      // As a meter created before the record existed: tables and state, no 'schema' row.
      state.storage.sql.exec("DELETE FROM meta WHERE key = 'schema'");
      const fresh = new UsageMeter(state, env);
      await state.blockConcurrencyWhile(async () => {});
      return {
        recorded: recorded.map((r) => r.value),
        again: state.storage.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'schema'").toArray().map((r) => r.value),
        sameConfig: JSON.stringify(fresh.getConfig()) === JSON.stringify(instance.getConfig()),
        summary: fresh.summary({ kind: "current" }, Date.now()),
      };
    });
    expect(after.recorded).toEqual(["2"]);
    expect(after.again).toEqual(["2"]);
    expect(after.sameConfig).toBe(true);
    expect(after.summary.ok && after.summary.meters.find((m) => m.meterId === "m_sum")?.value).toBe("6");
  });

  it("flushes aggregates to D1 on its alarm, matching the meter", async () => {
    const { subscriptionId, stub } = await configuredMeter();
    await api("POST", "/api/v1/usage", { body: { events: [ev(subscriptionId, "m_sum", "1.25"), ev(subscriptionId, "m_sum", 2), ev(subscriptionId, "m_max", 9)] } });
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    const rows = await env.DB.prepare("SELECT meter_id, value, event_count, closed FROM usage_rollups WHERE subscription_id = ? ORDER BY meter_id").bind(subscriptionId).all();
    const s = await summary(subscriptionId);
    expect(rows.results).toEqual([
      { meter_id: "m_max", value: meterOf(s, "m_max").value, event_count: 1, closed: 0 },
      { meter_id: "m_sum", value: meterOf(s, "m_sum").value, event_count: 2, closed: 0 },
    ]);
    expect(meterOf(s, "m_sum").value).toBe("3.25");
  });

  it("closes a period for invoicing: final figures in D1, later events refused", async () => {
    const { subscriptionId, stub, config } = await configuredMeter();
    await api("POST", "/api/v1/usage", { body: ev(subscriptionId, "m_sum", 5) });
    const closed = await stub.closePeriod(config.currentPeriodStart, Date.now());
    expect(closed.ok && closed.meters.find((m) => m.meterId === "m_sum")?.value).toBe("5");
    const row = await env.DB.prepare("SELECT value, closed FROM usage_rollups WHERE subscription_id = ? AND meter_id = 'm_sum'").bind(subscriptionId).first();
    expect(row).toEqual({ value: "5", closed: 1 });
    const late = await api("POST", "/api/v1/usage", { body: ev(subscriptionId, "m_sum", 1) });
    expect(late.status).toBe(422);
    expect(late.body.reason).toBe("period_closed");
  });

  it("closes a period for a caller's batch: the rollups are returned, written by the meter only if never handed back", async () => {
    const rollupOf = (id: string) => env.DB.prepare("SELECT value, closed FROM usage_rollups WHERE subscription_id = ? AND meter_id = 'm_sum'").bind(id).first();
    // Handed back (the caller's batch wrote them): the meter's alarm writes nothing.
    const a = await configuredMeter();
    await api("POST", "/api/v1/usage", { body: ev(a.subscriptionId, "m_sum", 5) });
    const closedA = await a.stub.closePeriod(a.config.currentPeriodStart, Date.now(), { rollups: "return" });
    expect(closedA.ok && closedA.rollups?.find((r) => r.values.meterId === "m_sum")?.values).toMatchObject({ value: "5", closed: true });
    expect(await rollupOf(a.subscriptionId)).toBeNull();
    const handedBack = closedA.ok ? closedA.rollups!.map((r) => ({ meterId: r.values.meterId, periodStart: r.values.periodStart, rev: r.rev })) : [];
    await a.stub.configure({ ...a.config, version: a.config.version + 1 }, handedBack);
    await runDurableObjectAlarm(a.stub);
    expect(await rollupOf(a.subscriptionId)).toBeNull();
    // Never handed back (the caller's batch failed): the alarm writes the closed figures itself ...
    const b = await configuredMeter();
    await api("POST", "/api/v1/usage", { body: ev(b.subscriptionId, "m_sum", 7) });
    expect((await b.stub.closePeriod(b.config.currentPeriodStart, Date.now(), { rollups: "return" })).ok).toBe(true);
    await runDurableObjectAlarm(b.stub);
    expect(await rollupOf(b.subscriptionId)).toEqual({ value: "7", closed: 1 });
    // ... also when an earlier alarm had written the period while it was open (nothing new since then).
    const c = await configuredMeter();
    await api("POST", "/api/v1/usage", { body: ev(c.subscriptionId, "m_sum", 9) });
    await runDurableObjectAlarm(c.stub);
    expect(await rollupOf(c.subscriptionId)).toEqual({ value: "9", closed: 0 });
    expect((await c.stub.closePeriod(c.config.currentPeriodStart, Date.now(), { rollups: "return" })).ok).toBe(true);
    await runDurableObjectAlarm(c.stub);
    expect(await rollupOf(c.subscriptionId)).toEqual({ value: "9", closed: 1 });
  });

  it("receives the subscription's state when the subscription is created", async () => {
    const sub = await createSubscription();
    const stub = env.USAGE_METER.get(env.USAGE_METER.idFromName(sub.id));
    const config = await stub.getConfig();
    expect(config).toMatchObject({ subscriptionId: sub.id, status: "active", currency: "USD", currentPeriodStart: Date.parse(sub.currentPeriodStart) });
    expect(config!.meters.map((m) => m.meterId)).toEqual(["api_calls"]);
    const row = await env.DB.prepare("SELECT meter_synced_version, config_version FROM subscriptions WHERE id = ?").bind(sub.id).first();
    expect(row).toEqual({ meter_synced_version: 1, config_version: 1 });
  });
});

describe("invoicing a period whose meter missed a configuration push", () => {
  it("pushes the current configuration before closing, so no meter is left out", async () => {
    const { dbOf } = await import("../../src/db/client");
    const { closeMeterPeriod } = await import("../../src/modules/usage/meter-config");
    const sub = await createSubscription();
    const db = dbOf(env);
    const row = (await env.DB.prepare("SELECT * FROM subscriptions WHERE id = ?").bind(sub.id).first<Record<string, unknown>>())!;
    // The subscription moved on (config v2) but the meter still holds v1.
    await env.DB.prepare("UPDATE subscriptions SET config_version = 2 WHERE id = ?").bind(sub.id).run();
    const { subscriptions, plans } = await import("../../src/db/schema");
    const { eq, and } = await import("drizzle-orm");
    const s = (await db.select().from(subscriptions).where(eq(subscriptions.id, sub.id)).get())!;
    const p = (await db.select().from(plans).where(and(eq(plans.id, s.planId), eq(plans.version, s.planVersion))).get())!;
    const usage = await closeMeterPeriod(messageServicesOf(), s, p, s.currentPeriodStart, Date.now());
    expect([...usage.keys()]).toEqual(["api_calls"]);
    const stub = env.USAGE_METER.get(env.USAGE_METER.idFromName(sub.id));
    expect((await stub.getConfig())!.version).toBe(2);
    expect(row.meter_synced_version).toBe(1);
    expect((await env.DB.prepare("SELECT meter_synced_version AS v FROM subscriptions WHERE id = ?").bind(sub.id).first<{ v: number }>())!.v).toBe(2);
  });
});

describe("a period guessed before the subscription's push", () => {
  it("takes the subscription's end when the push arrives (e.g. a monthly plan turned yearly), so no usage falls between periods", async () => {
    const now = Date.now();
    const end = now + 60_000;
    const { subscriptionId, stub, config } = await configuredMeter({ interval: "month", billingAnchor: end - 30 * DAY, currentPeriodStart: end - 30 * DAY, currentPeriodEnd: end });
    // An event just after the period end: the meter guesses the next period from the monthly grid.
    expect((await api("POST", "/api/v1/usage", { body: ev(subscriptionId, "m_sum", 5, { timestamp: isoAt(end + 1000) }) })).status).toBe(202);
    // The renewal switches to yearly and pushes the new period.
    const yearEnd = end + 365 * DAY;
    await stub.configure({ ...config, interval: "year", billingAnchor: end, currentPeriodStart: end, currentPeriodEnd: yearEnd, version: config.version + 1 });
    const s = await runInDurableObject(stub, (_i, state) => state.storage.sql.exec<{ start: number; end: number }>("SELECT start, end FROM periods WHERE start = ?", end).one());
    expect(s).toEqual({ start: end, end: yearEnd });
    const closed = await stub.closePeriod(end, yearEnd + 1);
    expect(closed.ok && closed.meters.find((m) => m.meterId === "m_sum")).toMatchObject({ value: "5", periodEnd: yearEnd });
  });
});
