import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { api, createCustomer, createPlan } from "../helpers";

// The data part of migration 0012, replayed on rows written the way the engine wrote them before it.
const dataStatements = () => {
  const m = env.TEST_MIGRATIONS.find((x) => x.name.startsWith("0012_credits"));
  if (!m) throw new Error("migration 0012_credits is missing");
  return m.queries.filter((q) => /^\s*(--[^\n]*\n\s*)*(INSERT|UPDATE)/.test(q));
};

describe("migration 0012: discountPercent and creditBalance become coupons and grants", () => {
  it("a subscription's percentage becomes a legacy coupon discount, a customer's credit a paid grant, behaviour unchanged", async () => {
    const customer = await createCustomer();
    const plan = await createPlan({ name: "L", interval: "month", prices: [{ type: "flat", amount: "10.00", billing: "advance" }] });
    const sub = (await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id } })).body;
    await env.DB.prepare("UPDATE subscriptions SET discount_percent = '15', discount_until = NULL WHERE id = ?").bind(sub.id).run();
    await env.DB.prepare("UPDATE customers SET credit_balance = 700 WHERE id = ?").bind(customer.id).run();
    const statements = dataStatements();
    expect(statements.length).toBeGreaterThanOrEqual(5);
    for (const q of statements) await env.DB.prepare(q).run();

    expect((await api("GET", `/api/v1/subscriptions/${sub.id}/discount`)).body).toMatchObject({ couponId: "legacy_pct_15", periods: null, endsAt: null });
    expect((await api("GET", "/api/v1/coupons/legacy_pct_15")).body).toMatchObject({ percentOff: "15", duration: "forever", timesRedeemed: 1 });
    const balance = (await api("GET", `/api/v1/customers/${customer.id}/credit-balance`)).body;
    expect(balance).toMatchObject({ available: { amountMinor: 700 }, byCategory: { paid: { amountMinor: 700 } } });
    expect(balance.transactions.data.map((t: any) => [t.type, t.amount.amountMinor])).toEqual([["granted", 700]]);

    // An upgrade invoiced at once gets both: (−10.00 + 20.00) less 15 % = 8.50, 7.00 of it paid by the credit.
    const plan2 = await createPlan({ name: "L2", interval: "month", prices: [{ type: "flat", amount: "20.00", billing: "advance" }] });
    const changed = await api("PUT", `/api/v1/subscriptions/${sub.id}/plan`, { body: { newPlanId: plan2.id, prorationBehavior: "always_invoice" } });
    expect(changed.status, JSON.stringify(changed.body)).toBe(200);
    const inv = (await api("GET", `/api/v1/invoices/${changed.body.invoiceId}`)).body;
    expect(inv.discounts[0]).toMatchObject({ couponId: "legacy_pct_15" });
    expect(inv).toMatchObject({ total: { amountMinor: 850 }, creditApplied: { amountMinor: 700 }, amountDue: { amountMinor: 150 } });
  });
});
