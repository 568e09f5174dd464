import { describe, expect, it, vi } from "vitest";
import { env } from "cloudflare:workers";
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { api, createCustomer, createPlan, createSubscription, unique } from "../helpers";

const meter = (subscriptionId: string) => env.USAGE_METER.get(env.USAGE_METER.idFromName(subscriptionId));

async function alertOn(subscriptionId: string, threshold: number | string, meterId = "api_calls") {
  const r = await api("POST", `/api/v1/subscriptions/${subscriptionId}/usage-alerts`, { body: { meterId, threshold } });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return r.body;
}

async function usage(subscriptionId: string, quantities: number[], eventIds = quantities.map(() => unique("e"))) {
  const events = quantities.map((quantity, i) => ({ subscriptionId, meterId: "api_calls", quantity, eventId: eventIds[i] }));
  const r = await api("POST", "/api/v1/usage", { body: quantities.length === 1 ? events[0] : { events } });
  expect(r.status, JSON.stringify(r.body)).toBe(202);
  return r.body;
}

/** The alert's events as GET /api/v1/events lists them, after the meter's alarm delivered what it holds. */
async function crossings(subscriptionId: string, alertId: string) {
  await runDurableObjectAlarm(meter(subscriptionId));
  const r = await api("GET", `/api/v1/events?objectId=${alertId}&type=usage.threshold_crossed&limit=100`);
  expect(r.status).toBe(200);
  return r.body.data as any[];
}

/** Fired (alert, period) rows still waiting for delivery to D1: none once the alarm ran. */
const pendingInMeter = (subscriptionId: string) =>
  runInDurableObject(meter(subscriptionId), (_o, state) => state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM alerts_fired WHERE delivered_at IS NULL").one().n);

describe("usage alerts: create, list, delete", () => {
  it("creates, lists (read role) and deletes an alert; support writes, viewer and finance cannot", async () => {
    const sub = await createSubscription();
    const a = await alertOn(sub.id, "1000.5");
    expect(a).toMatchObject({ object: "usage_alert", subscriptionId: sub.id, customerId: sub.customerId, meterId: "api_calls", threshold: "1000.5" });
    expect(a.id).toMatch(/^ua_/);

    const bySupport = await api("POST", `/api/v1/subscriptions/${sub.id}/usage-alerts`, { as: "support", body: { meterId: "api_calls", threshold: 5 } });
    expect(bySupport.status).toBe(201);
    for (const role of ["viewer", "finance"] as const) {
      expect((await api("POST", `/api/v1/subscriptions/${sub.id}/usage-alerts`, { as: role, body: { meterId: "api_calls", threshold: 5 } })).status).toBe(403);
      expect((await api("DELETE", `/api/v1/subscriptions/${sub.id}/usage-alerts/${a.id}`, { as: role })).status).toBe(403);
    }

    const listed = await api("GET", `/api/v1/subscriptions/${sub.id}/usage-alerts`, { as: "viewer" });
    expect(listed.status).toBe(200);
    expect(listed.body.data.map((x: any) => x.id)).toEqual([a.id, bySupport.body.id]);

    const del = await api("DELETE", `/api/v1/subscriptions/${sub.id}/usage-alerts/${a.id}`, { as: "support" });
    expect(del.status).toBe(200);
    expect(del.body).toMatchObject({ id: a.id, deleted: true });
    expect((await api("DELETE", `/api/v1/subscriptions/${sub.id}/usage-alerts/${a.id}`)).status).toBe(404);
    expect((await api("GET", `/api/v1/subscriptions/${sub.id}/usage-alerts`)).body.data.map((x: any) => x.id)).toEqual([bySupport.body.id]);

    // The change is audited on the subscription.
    const audit = await env.DB.prepare("SELECT action FROM audit_log WHERE target_id = ? AND action LIKE 'usage_alert.%' ORDER BY at").bind(sub.id).all<{ action: string }>();
    expect(audit.results.map((r) => r.action)).toEqual(["usage_alert.created", "usage_alert.created", "usage_alert.deleted"]);
  });

  it("refuses a meter the plan does not have (422 naming meterId) and a threshold that is not positive (400)", async () => {
    const sub = await createSubscription();
    const unknown = await api("POST", `/api/v1/subscriptions/${sub.id}/usage-alerts`, { body: { meterId: "nope", threshold: 10 } });
    expect(unknown.status).toBe(422);
    expect(unknown.body.errors).toEqual([expect.objectContaining({ path: "meterId" })]);
    expect(unknown.body.detail).toContain("nope");
    for (const threshold of [0, -1, "0", "abc"]) {
      const r = await api("POST", `/api/v1/subscriptions/${sub.id}/usage-alerts`, { body: { meterId: "api_calls", threshold } });
      expect(r.status, String(threshold)).toBe(400);
      expect(r.body.errors[0].path).toBe("threshold");
    }
    expect((await api("POST", `/api/v1/subscriptions/sub_missing/usage-alerts`, { body: { meterId: "api_calls", threshold: 1 } })).status).toBe(404);
    expect((await api("GET", `/api/v1/subscriptions/${sub.id}/usage-alerts`)).body.data).toEqual([]);
  });
});

describe("usage.threshold_crossed", () => {
  it("fires once when a batch crosses the threshold, and not again when more usage arrives", async () => {
    const sub = await createSubscription();
    const alert = await alertOn(sub.id, 5);
    await usage(sub.id, [2]);
    expect(await crossings(sub.id, alert.id)).toEqual([]);
    await usage(sub.id, [3, 3, 3]);
    await vi.waitFor(async () => expect(await crossings(sub.id, alert.id)).toHaveLength(1));
    await usage(sub.id, [10]);
    await usage(sub.id, [1, 1]);
    const events = await crossings(sub.id, alert.id);
    expect(events).toHaveLength(1);
    const e = events[0];
    expect(e.type).toBe("usage.threshold_crossed");
    expect(e.id).toMatch(/^evt_/);
    expect(e.data.object).toMatchObject({ id: alert.id, subscriptionId: sub.id, customerId: sub.customerId, meterId: "api_calls", threshold: "5", value: "11" });
    expect(e.data.object.period).toEqual({ start: sub.currentPeriodStart, end: sub.currentPeriodEnd });
    expect(e.livemode).toBe(false); // not production
    expect(await pendingInMeter(sub.id)).toBe(0);
    // Off a clock, livemode is the environment's (production only).
    expect(await runInDurableObject(meter(sub.id), (_o, state) => state.storage.sql.exec<{ livemode: number | null }>("SELECT livemode FROM alerts_fired").one().livemode)).toBeNull();
    // Single event fetch works too, and the row is in the outbox once.
    expect((await api("GET", `/api/v1/events/${e.id}`)).status).toBe(200);
    const rows = await env.DB.prepare("SELECT count(*) AS n FROM events WHERE object_id = ?").bind(alert.id).first<{ n: number }>();
    expect(rows!.n).toBe(1);
  });

  it("fires once under concurrent ingests", async () => {
    const sub = await createSubscription();
    const alert = await alertOn(sub.id, 7);
    const other = await alertOn(sub.id, 15);
    await Promise.all(Array.from({ length: 12 }, () => usage(sub.id, [2])));
    await vi.waitFor(async () => expect(await crossings(sub.id, alert.id)).toHaveLength(1));
    expect(await crossings(sub.id, other.id)).toHaveLength(1);
    const [e] = await crossings(sub.id, alert.id);
    expect(Number(e.data.object.value)).toBeGreaterThanOrEqual(7);
    expect(Number(e.data.object.value)).toBeLessThan(9);
  });

  it("duplicate events do not count towards the threshold", async () => {
    const sub = await createSubscription();
    const alert = await alertOn(sub.id, 5);
    await usage(sub.id, [4], ["dup-1"]);
    await usage(sub.id, [4], ["dup-1"]);
    await usage(sub.id, [4, 4], ["dup-1", "dup-1"]);
    expect(await crossings(sub.id, alert.id)).toEqual([]);
    await usage(sub.id, [1]);
    await vi.waitFor(async () => expect(await crossings(sub.id, alert.id)).toHaveLength(1));
    expect((await crossings(sub.id, alert.id))[0].data.object.value).toBe("5");
  });

  it("an alert added when the period is already past its threshold fires on the meter's next event", async () => {
    const sub = await createSubscription();
    await usage(sub.id, [8]);
    const alert = await alertOn(sub.id, 5);
    expect(await crossings(sub.id, alert.id)).toEqual([]);
    await usage(sub.id, [1]);
    await vi.waitFor(async () => expect(await crossings(sub.id, alert.id)).toHaveLength(1));
    expect((await crossings(sub.id, alert.id))[0].data.object.value).toBe("9");
  });

  it("a deleted alert no longer fires", async () => {
    const sub = await createSubscription();
    const alert = await alertOn(sub.id, 3);
    expect((await api("DELETE", `/api/v1/subscriptions/${sub.id}/usage-alerts/${alert.id}`)).status).toBe(200);
    await usage(sub.id, [10]);
    expect(await crossings(sub.id, alert.id)).toEqual([]);
  });

  it("on a test clock: livemode false, and each new period can fire again", async () => {
    const clock = await api("POST", "/api/v1/test-clocks", { body: { frozenTime: "2024-03-01T00:00:00Z", name: "alerts" } });
    expect(clock.status).toBe(201);
    const customer = await createCustomer({ testClockId: clock.body.id });
    const plan = await createPlan();
    const created = await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id } });
    expect(created.status).toBe(201);
    const sub = created.body;
    const alert = await alertOn(sub.id, 10);
    await usage(sub.id, [12]);
    await vi.waitFor(async () => expect(await crossings(sub.id, alert.id)).toHaveLength(1));

    const advanced = await api("POST", `/api/v1/test-clocks/${clock.body.id}/advance`, { body: { frozenTime: "2024-04-01T00:00:00Z" } });
    expect(advanced.status, JSON.stringify(advanced.body)).toBe(200);
    await usage(sub.id, [4]);
    expect(await crossings(sub.id, alert.id)).toHaveLength(1);
    await usage(sub.id, [6]);
    await vi.waitFor(async () => expect(await crossings(sub.id, alert.id)).toHaveLength(2));
    const events = await crossings(sub.id, alert.id);
    expect(events.every((e) => e.livemode === false)).toBe(true);
    // Stamped in the clock's time (each crossing at the clock's time of its ingest), not the real time.
    expect(events.map((e) => e.createdAt).sort()).toEqual(["2024-03-01T00:00:00.000Z", "2024-04-01T00:00:00.000Z"]);
    // Decided by the clock, not by the environment: the meter recorded "test mode" with each crossing.
    const modes = await runInDurableObject(meter(sub.id), (_o, state) => state.storage.sql.exec<{ livemode: number | null }>("SELECT livemode FROM alerts_fired").toArray().map((r) => r.livemode));
    expect(modes).toEqual([0, 0]);
    expect(events.map((e) => e.data.object.period.start).sort()).toEqual(["2024-03-01T00:00:00.000Z", "2024-04-01T00:00:00.000Z"]);
    expect(events.find((e) => e.data.object.period.start.startsWith("2024-04")).data.object.value).toBe("10");
  });
});

describe("plan-level usage alert thresholds", () => {
  const planCrossings = async (customerId: string, subscriptionId: string) => {
    await runDurableObjectAlarm(meter(subscriptionId));
    const r = await api("GET", `/api/v1/events?customerId=${customerId}&type=usage.threshold_crossed&limit=100`);
    return r.body.data as any[];
  };

  it("apply to every subscription on the plan and to one that changes onto it, once per period each", async () => {
    const alerting = await createPlan({
      prices: [{ type: "metered", meterId: "api_calls", aggregation: "sum", pricingModel: "per_unit", unitAmount: "0.001", alertThresholds: ["10", "10.0", "100"] }],
    });
    expect(alerting.prices[0].alertThresholds).toEqual(["10", "100"]);
    const quiet = await createPlan();
    const onPlan = await createSubscription({ planId: alerting.id });
    const changer = await createSubscription({ planId: quiet.id });

    await usage(changer.id, [12]);
    expect(await planCrossings(changer.customerId, changer.id)).toEqual([]);
    const change = await api("PUT", `/api/v1/subscriptions/${changer.id}/plan`, { body: { newPlanId: alerting.id, effectiveDate: "now" } });
    expect(change.status, JSON.stringify(change.body)).toBe(200);

    for (const sub of [onPlan, changer]) {
      await usage(sub.id, [11]);
      await vi.waitFor(async () => expect(await planCrossings(sub.customerId, sub.id)).toHaveLength(1));
      await usage(sub.id, [5]);
      const events = await planCrossings(sub.customerId, sub.id);
      expect(events).toHaveLength(1);
      expect(events[0].data.object).toMatchObject({ object: "usage_alert", source: "plan", subscriptionId: sub.id, meterId: "api_calls", threshold: "10" });
    }
  });

  it("refuses a threshold that is not a positive decimal (422 naming it)", async () => {
    const r = await api("POST", "/api/v1/plans", {
      body: { name: "Bad", currency: "USD", interval: "month", prices: [{ type: "metered", meterId: "api_calls", pricingModel: "per_unit", unitAmount: "0.001", alertThresholds: ["0"] }] },
    });
    expect(r.status).toBe(422);
    expect(r.body.errors[0].path).toBe("prices.0.alertThresholds.0");
  });
});
