import { env } from "cloudflare:workers";
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { ROLLUP_DELAY_MS } from "../../../durable-objects/usage-meter";
import { api, createCustomer, createPlan, createSubscription, unique } from "../../helpers";

// The read endpoints the console needs besides the existing ones: MRR movement, usage per meter over time, customer
// search by name and a customer's events.

const month = new Date().toISOString().slice(0, 7);

describe("GET /api/v1/analytics/mrr/movement", () => {
  it("shows this month's new MRR, the expansion of a plan change and the churn of a cancellation, in the currency's exponent", async () => {
    const customer = await createCustomer({ currency: "BHD" });
    const small = await createPlan({ currency: "BHD", prices: [{ type: "flat", amount: "30.000" }] });
    const big = await createPlan({ currency: "BHD", prices: [{ type: "flat", amount: "90.500" }] });
    const sub = await createSubscription({ customerId: customer.id, planId: small.id, paymentMethod: "pm_card_visa" });
    expect((await api("PUT", `/api/v1/subscriptions/${sub.id}/plan`, { body: { newPlanId: big.id, prorate: false } })).status).toBe(200);
    expect((await api("POST", `/api/v1/subscriptions/${sub.id}/cancel`, { body: { reason: "test", cancelAtPeriodEnd: false } })).status).toBe(200);

    const r = await api("GET", "/api/v1/analytics/mrr/movement?months=3", { as: "finance" });
    expect(r.status).toBe(200);
    expect(r.body.months).toHaveLength(3);
    expect(r.body.months[2]).toBe(month);
    const bhd = r.body.currencies.find((c: { currency: string }) => c.currency === "BHD");
    expect(bhd.movement[2]).toMatchObject({
      month,
      new: { amount: "30.000", amountMinor: 30000 },
      expansion: { amount: "60.500", amountMinor: 60500 },
      contraction: { amountMinor: 0 },
      churn: { amount: "90.500", amountMinor: 90500 },
      net: { amount: "0.000", amountMinor: 0 },
    });
    expect(bhd.movement[0].new.amountMinor).toBe(0);
  });

  it("is for finance and admin; support is refused with the reason", async () => {
    const r = await api("GET", "/api/v1/analytics/mrr/movement", { as: "support" });
    expect(r.status).toBe(403);
    expect(r.body.detail).toBeTruthy();
    expect((await api("GET", "/api/v1/analytics/mrr/movement?months=0")).status).toBe(400);
  });
});

describe("GET /api/v1/usage/overview", () => {
  it("sums the meters' flushed rollups per meter for this month", async () => {
    const plan = await createPlan({ prices: [{ type: "metered", meterId: "console_calls", aggregation: "sum", pricingModel: "per_unit", unitAmount: "0.01" }] });
    const sub = await createSubscription({ planId: plan.id });
    await vi.waitFor(
      async () => {
        const r = await api("POST", "/api/v1/usage", { body: { events: [{ subscriptionId: sub.id, meterId: "console_calls", quantity: 1200, eventId: "ov-1" }, { subscriptionId: sub.id, meterId: "console_calls", quantity: 34.5, eventId: "ov-2" }] } });
        expect(r.body.accepted + r.body.duplicates).toBe(2);
      },
      { timeout: 10_000, interval: 200 },
    );
    // The meter flushes its aggregates to D1 on an alarm set at most ROLLUP_DELAY_MS ahead: run that alarm now
    // instead of waiting for it.
    const meter = env.USAGE_METER.get(env.USAGE_METER.idFromName(sub.id));
    const alarmAt = await runInDurableObject(meter, (_o, state) => state.storage.getAlarm());
    expect(alarmAt).not.toBeNull();
    expect(alarmAt! - Date.now()).toBeLessThanOrEqual(ROLLUP_DELAY_MS);
    expect(await runDurableObjectAlarm(meter)).toBe(true);
    const r = await api("GET", "/api/v1/usage/overview?months=2", { as: "viewer" });
    expect(r.status).toBe(200);
    expect(r.body.months).toHaveLength(2);
    const point = r.body.meters.find((m: { meterId: string }) => m.meterId === "console_calls")?.points.find((x: { month: string }) => x.month === month);
    expect(point).toEqual({ month, value: 1234.5, events: 2 });
  });
});

describe("console searches", () => {
  it("finds customers by part of their name, case-insensitively, with % matched literally", async () => {
    const tag = unique("Zq");
    const a = await createCustomer({ name: `Ada ${tag} Lovelace` });
    await createCustomer({ name: `Grace ${tag}% Hopper` });
    await createCustomer({ name: "Someone Else" });
    const r = await api("GET", `/api/v1/customers?name=${encodeURIComponent(`ada ${tag.toLowerCase()}`)}`, { as: "viewer" });
    expect(r.body.data.map((c: { id: string }) => c.id)).toEqual([a.id]);
    const both = await api("GET", `/api/v1/customers?name=${encodeURIComponent(tag.toUpperCase())}`);
    expect(both.body.data).toHaveLength(2);
    expect((await api("GET", `/api/v1/customers?name=${encodeURIComponent(`${tag}%`)}`)).body.data).toHaveLength(1);
  });

  it("lists a customer's events: about the customer and about its subscriptions", async () => {
    const customer = await createCustomer();
    const other = await createCustomer();
    const sub = await createSubscription({ customerId: customer.id });
    await createSubscription({ customerId: other.id });
    const r = await api("GET", `/api/v1/events?customerId=${customer.id}`, { as: "viewer" });
    expect(r.status).toBe(200);
    const types = r.body.data.map((e: { type: string }) => e.type);
    expect(types).toContain("customer.created");
    expect(types).toContain("customer.subscription.created");
    expect(r.body.data.every((e: { data: { object: { id: string; customerId?: string } } }) => e.data.object.id === customer.id || e.data.object.customerId === customer.id)).toBe(true);
    expect(r.body.data.some((e: { data: { object: { id: string } } }) => e.data.object.id === sub.id)).toBe(true);
  });
});
