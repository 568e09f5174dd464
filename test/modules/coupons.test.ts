import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { api, createCustomer, createPlan, advance, attemptPayment, clockAt, invoicesOf, messageServicesOf, spyQueue, unique } from "../helpers";
import { runDue } from "../../src/modules/subscriptions/renewal";

const T = (s: string) => new Date(s).toISOString();

const flatPlan = (amount: string) => createPlan({ name: "Flat", interval: "month", prices: [{ type: "flat", amount, billing: "advance" }] });

describe("coupons", () => {
  it("a repeating coupon covers exactly its number of billing periods, then the invoices are full price", async () => {
    const clock = await clockAt("2024-01-31T00:00:00Z", "coupons");
    const customer = await createCustomer({ testClockId: clock });
    const plan = await flatPlan("100.00");
    const coupon = await api("POST", "/api/v1/coupons", { as: "finance", body: { percentOff: "12.5", duration: "repeating", durationInMonths: 3 } });
    expect(coupon.status, JSON.stringify(coupon.body)).toBe(201);
    const sub = await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id, coupon: coupon.body.id } });
    expect(sub.status, JSON.stringify(sub.body)).toBe(201);
    expect(sub.body.discountPercent).toBe("12.5");
    // Month ends clamp (Jan 31 → Feb 29 → Mar 31 …): periods, not 90 days, decide when it ends.
    await advance(clock, "2024-05-31T00:00:00Z");
    const invoices = await invoicesOf(sub.body.id);
    expect(invoices.map((i) => [i.period.start.slice(0, 10), i.discount.amountMinor, i.total.amountMinor])).toEqual([
      ["2024-01-31", 1250, 8750],
      ["2024-02-29", 1250, 8750],
      ["2024-03-31", 1250, 8750],
      ["2024-04-30", 0, 10000],
      ["2024-05-31", 0, 10000],
    ]);
    const first = (await api("GET", `/api/v1/invoices/${invoices[0].id}`)).body;
    expect(first.discounts).toEqual([{ discountId: expect.stringMatching(/^di_/), couponId: coupon.body.id, promotionCodeId: null, amount: { amount: "12.50", amountMinor: 1250 } }]);
    expect(first.lines[0].discount).toEqual({ amount: "12.50", amountMinor: 1250 });
    expect((await api("GET", `/api/v1/subscriptions/${sub.body.id}/discount`)).status).toBe(404);
    expect((await api("GET", `/api/v1/subscriptions/${sub.body.id}`)).body.discountPercent).toBeNull();
  });

  it("the subscription object carries its discount (coupon, promotion code, start, end, periods left) in GET, lists and events", async () => {
    const clock = await clockAt("2024-01-01T00:00:00Z", "coupons");
    const customer = await createCustomer({ testClockId: clock });
    const plan = await flatPlan("20.00");
    const coupon = (await api("POST", "/api/v1/coupons", { as: "finance", body: { amountOff: "5.00", currency: "USD", duration: "repeating", durationInMonths: 2 } })).body;
    const code = (await api("POST", "/api/v1/promotion-codes", { body: { couponId: coupon.id, code: unique("TWO").toUpperCase().replace(/[^A-Z0-9]/g, "") } })).body;
    const created = await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id, promotionCode: code.code } });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    // The first invoice used one of the two periods.
    const expected = { object: "discount", couponId: coupon.id, promotionCodeId: code.id, subscriptionId: created.body.id, periods: 2, periodsUsed: 1, periodsRemaining: 1, endsAt: null, createdAt: T("2024-01-01") };
    const got = (await api("GET", `/api/v1/subscriptions/${created.body.id}`)).body;
    expect(got.discount).toMatchObject(expected);
    const listed = (await api("GET", `/api/v1/subscriptions?customerId=${customer.id}`)).body.data;
    expect(listed.map((x: any) => x.discount)).toEqual([got.discount]);
    const events = await env.DB.prepare("SELECT data FROM events WHERE object_id = ? AND type = 'customer.subscription.created'").bind(created.body.id).all<{ data: string }>();
    expect(JSON.parse(events.results[0]!.data).object.discount).toMatchObject({ couponId: coupon.id, promotionCodeId: code.id, periods: 2 });
    // After the second period the discount is used up: null.
    await advance(clock, "2024-02-01T00:00:00Z");
    expect((await api("GET", `/api/v1/subscriptions/${created.body.id}`)).body.discount).toBeNull();
  });

  it("a promotion code with maxRedemptions 3 is redeemed exactly 3 times by 8 concurrent subscriptions", async () => {
    const plan = await flatPlan("10.00");
    const coupon = (await api("POST", "/api/v1/coupons", { body: { amountOff: "2.00", currency: "USD", duration: "once" } })).body;
    const code = await api("POST", "/api/v1/promotion-codes", { body: { couponId: coupon.id, code: "launch3", maxRedemptions: 3 } });
    expect(code.status, JSON.stringify(code.body)).toBe(201);
    expect(code.body.code).toBe("LAUNCH3");
    const customers = await Promise.all(Array.from({ length: 8 }, () => createCustomer()));
    const results = await Promise.all(customers.map((c) => api("POST", "/api/v1/subscriptions", { body: { customerId: c.id, planId: plan.id, promotionCode: "LAUNCH3" } })));
    const statuses = results.map((r) => r.status).sort();
    expect(statuses).toEqual([201, 201, 201, 409, 409, 409, 409, 409]);
    for (const r of results.filter((r) => r.status === 409)) expect(r.body.detail).toMatch(/LAUNCH3 reached its maxRedemptions \(3\)/);
    expect((await api("GET", `/api/v1/promotion-codes/${code.body.id}`)).body.timesRedeemed).toBe(3);
    expect((await api("GET", `/api/v1/coupons/${coupon.id}`)).body.timesRedeemed).toBe(3);
    // The refused requests created nothing.
    const subs = await Promise.all(customers.map((c) => api("GET", `/api/v1/subscriptions?customerId=${c.id}`)));
    expect(subs.reduce((n, r) => n + r.body.data.length, 0)).toBe(3);
    const winner = results.find((r) => r.status === 201)!.body;
    const [inv] = await invoicesOf(winner.id);
    expect(inv).toMatchObject({ subtotal: { amountMinor: 1000 }, discount: { amountMinor: 200 }, total: { amountMinor: 800 } });
  });

  it("validates coupons, applies and removes one later, and keeps the old discountPercent field working", async () => {
    const bad = await api("POST", "/api/v1/coupons", { body: { percentOff: "10", amountOff: "1", currency: "USD", duration: "repeating" } });
    expect(bad.status).toBe(422);
    expect(bad.body.errors.map((e: any) => e.path).sort()).toEqual(["durationInMonths", "percentOff"]);
    expect((await api("POST", "/api/v1/coupons", { as: "viewer", body: { percentOff: "10", duration: "once" } })).status).toBe(403);
    const plan = await flatPlan("20.00");
    const customer = await createCustomer();
    const legacy = await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id, discountPercent: 10 } });
    expect(legacy.status).toBe(201);
    expect(legacy.body.discountPercent).toBe("10");
    expect((await api("GET", `/api/v1/subscriptions/${legacy.body.id}/discount`)).body).toMatchObject({ couponId: "legacy_pct_10", periods: null });
    const [first] = await invoicesOf(legacy.body.id);
    expect(first.discount.amountMinor).toBe(200);
    const put = await api("PUT", `/api/v1/subscriptions/${legacy.body.id}/discount`, { body: { discountPercent: "25" } });
    expect(put.body.discountPercent).toBe("25");
    expect((await api("GET", `/api/v1/subscriptions/${legacy.body.id}/discount`)).body.couponId).toBe("legacy_pct_25");
    const limited = (await api("POST", "/api/v1/coupons", { body: { percentOff: "50", duration: "forever", appliesTo: { planIds: ["plan_other"] } } })).body;
    const refused = await api("POST", `/api/v1/subscriptions/${legacy.body.id}/discount`, { body: { coupon: limited.id } });
    expect(refused.status).toBe(422);
    expect(refused.body.detail).toMatch(/applies to plans plan_other only/);
    const removed = await api("DELETE", `/api/v1/subscriptions/${legacy.body.id}/discount`);
    expect(removed.body.discountPercent).toBeNull();
    expect((await api("GET", `/api/v1/subscriptions/${legacy.body.id}/discount`)).status).toBe(404);
  });
});

describe("billing conventions", () => {
  it("MRR counts an amount-off (and a percent-off) coupon while it lasts", async () => {
    const plan = await createPlan({ name: "MRR coupons", interval: "month", prices: [{ type: "flat", amount: "50.00", billing: "advance" }] });
    const mrrOfPlan = async () => {
      const r = await api("GET", "/api/v1/analytics/mrr", { as: "finance" });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      return r.body.currencies.find((c: any) => c.currency === "USD").byPlan.find((p: any) => p.planId === plan.id)?.mrr.amountMinor;
    };
    const amountOff = (await api("POST", "/api/v1/coupons", { as: "finance", body: { amountOff: "10.00", currency: "USD", duration: "forever" } })).body;
    const percentOff = (await api("POST", "/api/v1/coupons", { as: "finance", body: { percentOff: "20", duration: "forever" } })).body;
    const a = await api("POST", "/api/v1/subscriptions", { body: { customerId: (await createCustomer()).id, planId: plan.id, quantity: 2, coupon: amountOff.id, paymentMethod: "pm_card_visa" } });
    const b = await api("POST", "/api/v1/subscriptions", { body: { customerId: (await createCustomer()).id, planId: plan.id, coupon: percentOff.id, paymentMethod: "pm_card_visa" } });
    expect([a.status, b.status]).toEqual([201, 201]);
    expect([a.body.status, b.body.status]).toEqual(["active", "active"]);
    // (2 × 50.00 − 10.00) + 50.00 × 80 % = 90.00 + 40.00.
    expect(await mrrOfPlan()).toBe(13000);
    // Once the discount is removed, full price again.
    expect((await api("DELETE", `/api/v1/subscriptions/${a.body.id}/discount`)).status).toBe(200);
    expect(await mrrOfPlan()).toBe(14000);
  });

  it("a future billingAnchor bills the first partial period prorated (create_prorations by default), nothing with none", async () => {
    const clock = await clockAt("2024-04-21T00:00:00Z", "coupons");
    const customer = await createCustomer({ testClockId: clock });
    const plan = await flatPlan("30.00");
    const sub = await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id, billingAnchor: "2024-05-01T00:00:00Z" } });
    expect(sub.status, JSON.stringify(sub.body)).toBe(201);
    expect(sub.body).toMatchObject({ currentPeriodStart: T("2024-04-21"), currentPeriodEnd: T("2024-05-01") });
    const [first] = await invoicesOf(sub.body.id);
    const lines = (await api("GET", `/api/v1/invoices/${first.id}`)).body.lines;
    // 10 of April's 30 days remain: 30.00 × 10/30 = 10.00, not the full 30.00.
    expect(lines.map((l: any) => [l.kind, l.amount.amountMinor])).toEqual([["proration", 1000]]);
    await advance(clock, "2024-05-01T00:00:00Z");
    const [, second] = await invoicesOf(sub.body.id);
    expect(second).toMatchObject({ period: { start: T("2024-05-01") }, total: { amountMinor: 3000 } });

    const none = await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id, billingAnchor: "2024-05-20T00:00:00Z", prorationBehavior: "none" } });
    expect(none.status).toBe(201);
    expect(await invoicesOf(none.body.id)).toEqual([]);
  });

  it("an arrears flat fee of a partial first period is prorated like the advance case (create_prorations), nothing with none", async () => {
    const clock = await clockAt("2024-04-21T00:00:00Z", "coupons");
    const customer = await createCustomer({ testClockId: clock });
    const plan = await createPlan({ name: "Arrears", interval: "month", prices: [{ type: "flat", amount: "30.00", billing: "arrears" }] });
    const sub = (await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id, billingAnchor: "2024-05-01T00:00:00Z" } })).body;
    const none = (await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id, billingAnchor: "2024-05-01T00:00:00Z", prorationBehavior: "none" } })).body;
    await advance(clock, "2024-06-01T00:00:00Z");
    const arrearsOf = async (subId: string) => {
      const out: [string, number][] = [];
      for (const inv of await invoicesOf(subId)) {
        for (const l of (await api("GET", `/api/v1/invoices/${inv.id}`)).body.lines) out.push([inv.period.start.slice(0, 10), l.amount.amountMinor]);
      }
      return out;
    };
    // Worked example: April 21 – May 1 is 10 of April's 30 days: 30.00 × 10/30 = 10.00 at its end, then May in full.
    expect(await arrearsOf(sub.id)).toEqual([
      ["2024-05-01", 1000],
      ["2024-06-01", 3000],
    ]);
    // none: nothing for the partial period, May in full.
    expect((await arrearsOf(none.id)).map(([, a]) => a).filter((a) => a !== 0)).toEqual([3000]);
  });

  it("a cancellation or plan change inside a partial first period prorates over the anchor's full period, as the first invoice did", async () => {
    const clock = await clockAt("2024-04-21T00:00:00Z", "coupons");
    const customer = await createCustomer({ testClockId: clock });
    const small = await flatPlan("30.00");
    const big = await flatPlan("60.00");
    const body = { customerId: customer.id, planId: small.id, billingAnchor: "2024-05-01T00:00:00Z" };
    const canceled = (await api("POST", "/api/v1/subscriptions", { body })).body;
    const changed = (await api("POST", "/api/v1/subscriptions", { body })).body;
    await advance(clock, "2024-04-26T00:00:00Z");
    // Worked example: the first invoice billed 30.00 × 10/30 days = 10.00 for April 21 – May 1. On April 26, 5 of
    // April's 30 days are left: the unused time is 30.00 × 5/30 = 5.00 (not 30.00 × 5/10 = 15.00 over the short period).
    const cancel = await api("POST", `/api/v1/subscriptions/${canceled.id}/cancel`, { body: { cancelAtPeriodEnd: false, prorate: true, reason: "leaving" } });
    expect(cancel.status, JSON.stringify(cancel.body)).toBe(200);
    const final = (await api("GET", `/api/v1/invoices/${cancel.body.finalInvoiceId}`)).body;
    expect(final.lines.map((l: any) => [l.kind, l.amount.amountMinor])).toEqual([["proration", -500]]);
    // The plan change: −5.00 for the small plan's unused time, +60.00 × 5/30 = 10.00 for the big plan's.
    const r = await api("PUT", `/api/v1/subscriptions/${changed.id}/plan`, { body: { newPlanId: big.id, prorationBehavior: "always_invoice" } });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.prorationLines.map((l: any) => l.amountMinor)).toEqual([-500, 1000]);
    expect((await api("GET", `/api/v1/invoices/${r.body.invoiceId}`)).body.total.amountMinor).toBe(500);
  });

  it("always_invoice invoices a plan change at once instead of on the next cycle invoice", async () => {
    const clock = await clockAt("2024-04-01T00:00:00Z", "coupons");
    const customer = await createCustomer({ testClockId: clock });
    const small = await flatPlan("30.00");
    const big = await flatPlan("60.00");
    const sub = (await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: small.id } })).body;
    await advance(clock, "2024-04-16T00:00:00Z");
    const r = await api("PUT", `/api/v1/subscriptions/${sub.id}/plan`, { body: { newPlanId: big.id, prorationBehavior: "always_invoice" } });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.invoiceId).toMatch(/^inv_/);
    const inv = (await api("GET", `/api/v1/invoices/${r.body.invoiceId}`)).body;
    // 15 of 30 days left: −15.00 + 30.00.
    expect(inv).toMatchObject({ billingReason: "subscription_update", status: "open", total: { amountMinor: 1500 } });
    expect(inv.lines.map((l: any) => l.amount.amountMinor)).toEqual([-1500, 3000]);
  });

  it("always_invoice on a change at the period end invoices nothing extra (Stripe: nothing to prorate)", async () => {
    const clock = await clockAt("2024-04-01T00:00:00Z", "coupons");
    const customer = await createCustomer({ testClockId: clock });
    const small = await flatPlan("30.00");
    const big = await flatPlan("60.00");
    const sub = (await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: small.id } })).body;
    await advance(clock, "2024-04-16T00:00:00Z");
    const r = await api("PUT", `/api/v1/subscriptions/${sub.id}/plan`, { body: { newPlanId: big.id, prorationBehavior: "always_invoice", effectiveDate: "next_billing_cycle" } });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toMatchObject({ scheduled: true, invoiceId: null, prorationLines: [] });
    await advance(clock, "2024-05-01T00:00:00Z");
    const invoices = await invoicesOf(sub.id);
    // The first month on the small plan, then May's cycle invoice on the big plan in full: no proration, no extra invoice.
    expect(invoices.map((i) => [i.billingReason, i.total.amountMinor])).toEqual([
      ["subscription_create", 3000],
      ["subscription_cycle", 6000],
    ]);
  });

  it("always_invoice on a dated change inside the period invoices its prorations when the change takes effect, charged, once", async () => {
    const clock = await clockAt("2024-04-01T00:00:00Z", "coupons");
    const customer = await createCustomer({ testClockId: clock });
    const small = await flatPlan("30.00");
    const big = await flatPlan("60.00");
    const sub = (await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: small.id } })).body;
    await advance(clock, "2024-04-16T00:00:00Z");
    const r = await api("PUT", `/api/v1/subscriptions/${sub.id}/plan`, { body: { newPlanId: big.id, prorationBehavior: "always_invoice", effectiveDate: "2024-04-21T00:00:00Z" } });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toMatchObject({ scheduled: true, invoiceId: null, subscription: { pendingChange: { planId: big.id, effectiveAt: T("2024-04-21"), prorationBehavior: "always_invoice" } } });
    expect(await invoicesOf(sub.id)).toHaveLength(1);

    // April 21: the change takes effect and its prorations are invoiced then, in the clock's time. The step delivered
    // twice at once (a redelivered message) runs once.
    const payments = spyQueue();
    const e = { ...env, PAYMENT_QUEUE: payments } as Env;
    const runs = await Promise.all([1, 2].map(() => runDue(messageServicesOf(e), sub.id, Date.parse("2024-04-21T00:00:00Z"))));
    expect(runs.flat().map((s) => [s.step, new Date(s.at).toISOString()])).toEqual([["plan_change", T("2024-04-21")]]);
    expect(await runDue(messageServicesOf(e), sub.id, Date.parse("2024-04-21T00:00:00Z"))).toEqual([]);
    await advance(clock, "2024-04-25T00:00:00Z");
    expect(await invoicesOf(sub.id)).toHaveLength(2);
    const [, update] = await invoicesOf(sub.id);
    const inv = (await api("GET", `/api/v1/invoices/${update.id}`)).body;
    // Worked example: 10 of April's 30 days left on April 21: −30.00 × 10/30 = −10.00 for the small plan's unused
    // time, +60.00 × 10/30 = 20.00 for the big plan's: 10.00, finalized at once and sent to collection.
    expect(inv).toMatchObject({ billingReason: "subscription_update", status: "open", total: { amountMinor: 1000 }, period: { start: T("2024-04-21"), end: T("2024-05-01") } });
    expect(inv.finalizedAt).toBe(T("2024-04-21"));
    expect(inv.lines.map((l: any) => [l.kind, l.amount.amountMinor])).toEqual([
      ["proration", -1000],
      ["proration", 2000],
    ]);
    expect(payments.sent.map((m) => m.body)).toContainEqual({ type: "payment.attempt", invoiceId: inv.id, attempt: 1 });
    await attemptPayment(inv.id, 1, { env: { PAYMENT_QUEUE: spyQueue() } });
    expect((await api("GET", `/api/v1/invoices/${inv.id}`)).body).toMatchObject({ status: "paid", amountPaid: { amountMinor: 1000 } });
    expect((await api("GET", `/api/v1/subscriptions/${sub.id}`)).body).toMatchObject({ planId: big.id, pendingChange: null });

    // May's cycle invoice bills the big plan in full, no proration left for it.
    await advance(clock, "2024-05-01T00:00:00Z");
    const invoices = await invoicesOf(sub.id);
    expect(invoices.map((i) => [i.billingReason, i.total.amountMinor])).toEqual([
      ["subscription_create", 3000],
      ["subscription_update", 1000],
      ["subscription_cycle", 6000],
    ]);
  });

  it("tiers: the last tier must be open-ended, and the error says so", async () => {
    const r = await api("POST", "/api/v1/plans", {
      body: { name: "T", currency: "USD", interval: "month", prices: [{ type: "metered", meterId: "m", aggregation: "sum", pricingModel: "graduated", tiers: [{ upTo: 10, unitAmount: "1" }, { upTo: 20, unitAmount: "0.5" }] }] },
    });
    expect(r.status).toBe(422);
    expect(r.body.errors[0].message).toMatch(/open-ended \(upTo null\).*bounded last tier.*not supported/);
  });
});

// The failures the coupon use cases return (Outcome) are answered exactly as when they were thrown.
describe("coupon failures as problem+json", () => {
  const problemOf = (r: { status: number; body: any }) => ({ status: r.status, detail: r.body.detail, errors: r.body.errors });

  it("unknown coupon or code: 404; an unknown coupon named by a new code: 422 on couponId", async () => {
    expect(problemOf(await api("GET", "/api/v1/coupons/NOPE_COUPON"))).toEqual({ status: 404, detail: "coupon NOPE_COUPON does not exist", errors: undefined });
    expect(problemOf(await api("GET", "/api/v1/promotion-codes/promo_nope"))).toEqual({ status: 404, detail: "promotion code promo_nope does not exist", errors: undefined });
    expect(problemOf(await api("DELETE", "/api/v1/coupons/NOPE_COUPON"))).toMatchObject({ status: 404, detail: "coupon NOPE_COUPON does not exist" });
    expect(problemOf(await api("POST", "/api/v1/promotion-codes", { body: { couponId: "NOPE_COUPON", code: unique("NOPE").replace(/[^A-Za-z0-9]/g, "") } }))).toEqual({
      status: 422,
      detail: "couponId: coupon NOPE_COUPON does not exist",
      errors: [{ path: "couponId", message: "coupon NOPE_COUPON does not exist" }],
    });
  });

  it("a taken coupon id or code: 409 naming the field; a malformed percentage is answered alone", async () => {
    const id = unique("DUP").toUpperCase();
    expect((await api("POST", "/api/v1/coupons", { body: { id, percentOff: "10", duration: "once" } })).status).toBe(201);
    expect(problemOf(await api("POST", "/api/v1/coupons", { body: { id, percentOff: "10", duration: "once" } }))).toEqual({ status: 409, detail: `coupon ${id} already exists`, errors: [{ path: "id", message: "already exists" }] });
    const code = unique("DUPCODE").toUpperCase().replace(/[^A-Z0-9]/g, "");
    expect((await api("POST", "/api/v1/promotion-codes", { body: { couponId: id, code } })).status).toBe(201);
    expect(problemOf(await api("POST", "/api/v1/promotion-codes", { body: { couponId: id, code: code.toLowerCase() } }))).toEqual({ status: 409, detail: `promotion code ${code} already exists`, errors: [{ path: "code", message: "already exists" }] });
    const message = "must be a percentage between 0 and 100 with at most 4 decimals";
    expect(problemOf(await api("POST", "/api/v1/coupons", { body: { percentOff: "100.5", duration: "repeating" } }))).toEqual({ status: 422, detail: `percentOff: ${message}`, errors: [{ path: "percentOff", message }] });
  });

  it("a discount request naming nothing is refused before the subscription is looked up; no discount: 404", async () => {
    expect(problemOf(await api("POST", "/api/v1/subscriptions/sub_nope/discount", { body: {} }))).toEqual({ status: 422, detail: "coupon: give coupon or promotionCode", errors: [{ path: "coupon", message: "give coupon or promotionCode" }] });
    const sub = (await api("POST", "/api/v1/subscriptions", { body: { customerId: (await createCustomer()).id, planId: (await flatPlan("5.00")).id } })).body;
    expect(problemOf(await api("GET", `/api/v1/subscriptions/${sub.id}/discount`))).toEqual({ status: 404, detail: `subscription ${sub.id} has no discount`, errors: undefined });
    expect(problemOf(await api("POST", `/api/v1/subscriptions/${sub.id}/discount`, { body: { promotionCode: "NO_SUCH_CODE" } }))).toEqual({ status: 422, detail: "no promotion code NO_SUCH_CODE", errors: [{ path: "promotionCode", message: "no promotion code NO_SUCH_CODE" }] });
  });
});
