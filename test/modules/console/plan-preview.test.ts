import { describe, expect, it } from "vitest";
import { api, createCustomer, createPlan, createSubscription } from "../../helpers";

// The console shows this preview before it lets an operator confirm a plan change: it must be exactly what the
// change then does, and must change nothing itself.

async function clockAt(time: string) {
  const r = await api("POST", "/api/v1/test-clocks", { body: { frozenTime: time, name: "preview" } });
  expect(r.status).toBe(201);
  return r.body.id as string;
}

describe("GET /api/v1/subscriptions/{id}/plan/preview", () => {
  it("shows the proration lines and net that the change then adds, and changes nothing itself", async () => {
    const clock = await clockAt("2024-03-01T00:00:00Z");
    const customer = await createCustomer({ testClockId: clock });
    const small = await createPlan({ prices: [{ type: "flat", amount: "30.00" }] });
    const big = await createPlan({ prices: [{ type: "flat", amount: "90.00" }] });
    const sub = await createSubscription({ customerId: customer.id, planId: small.id, paymentMethod: "pm_card_visa" });
    expect((await api("POST", `/api/v1/test-clocks/${clock}/advance`, { body: { frozenTime: "2024-03-16T12:00:00Z" } })).status).toBe(200);

    const preview = await api("GET", `/api/v1/subscriptions/${sub.id}/plan/preview?newPlanId=${big.id}&quantity=2`, { as: "viewer" });
    expect(preview.status).toBe(200);
    expect(preview.body.scheduled).toBe(false);
    expect(preview.body.effectiveAt).toBe("2024-03-16T12:00:00.000Z");
    // 15.5 of March's 31 days left: exactly half, so a credit of −15.00 for the old fee and a charge of 2 × 45.00.
    expect(preview.body.prorationLines.map((l: { amountMinor: number }) => l.amountMinor).sort((a: number, b: number) => a - b)).toEqual([-1500, 9000]);
    expect(preview.body.net).toEqual({ amount: "75.00", amountMinor: 7500, currency: "USD" });
    expect((await api("GET", `/api/v1/subscriptions/${sub.id}`)).body).toMatchObject({ planId: small.id, quantity: 1 });

    const change = await api("PUT", `/api/v1/subscriptions/${sub.id}/plan`, { as: "support", body: { newPlanId: big.id, quantity: 2 } });
    expect(change.status).toBe(200);
    expect(change.body.net).toEqual(preview.body.net);
    expect(change.body.prorationLines).toEqual(preview.body.prorationLines);
  });

  it("gives the scheduled time, with nothing prorated now, for a change at the next billing cycle", async () => {
    const sub = await createSubscription();
    const other = await createPlan({ prices: [{ type: "flat", amount: "5.00" }] });
    const r = await api("GET", `/api/v1/subscriptions/${sub.id}/plan/preview?newPlanId=${other.id}&effectiveDate=next_billing_cycle`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ scheduled: true, effectiveAt: sub.currentPeriodEnd, prorationLines: [], net: { amountMinor: 0 } });
  });

  it("refuses what the change would refuse: another currency (422), an unknown plan (422), a canceled subscription (409)", async () => {
    const sub = await createSubscription();
    const eur = await createPlan({ currency: "EUR", prices: [{ type: "flat", amount: "5.00" }] });
    const wrongCurrency = await api("GET", `/api/v1/subscriptions/${sub.id}/plan/preview?newPlanId=${eur.id}`);
    expect(wrongCurrency.status).toBe(422);
    expect(wrongCurrency.body.errors[0].message).toMatch(/EUR/);
    expect((await api("GET", `/api/v1/subscriptions/${sub.id}/plan/preview?newPlanId=plan_nope`)).status).toBe(422);
    expect((await api("POST", `/api/v1/subscriptions/${sub.id}/cancel`, { body: { reason: "test", cancelAtPeriodEnd: false } })).status).toBe(200);
    const canceled = await api("GET", `/api/v1/subscriptions/${sub.id}/plan/preview?newPlanId=${eur.id}`);
    expect(canceled.status).toBe(409);
  });
});
