import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { runDurableObjectAlarm } from "cloudflare:test";
import fc from "fast-check";
import { api, createCustomer, createPlan, unique, advance, clockAt, invoicesOf, spyQueue, deliver } from "../helpers";

const T = (s: string) => new Date(s).toISOString();

async function invoice(id: string) {
  const r = await api("GET", `/api/v1/invoices/${id}`);
  expect(r.status).toBe(200);
  return r.body;
}
async function usage(subscriptionId: string, quantity: number, timestamp: string, eventId = unique("e")) {
  const r = await api("POST", "/api/v1/usage", { body: { subscriptionId, meterId: "api_calls", quantity, timestamp, eventId } });
  expect(r.status, JSON.stringify(r.body)).toBe(202);
}

const flatAndUsage = (flat: string, unit: string, extra: Record<string, unknown> = {}) => ({
  currency: "USD",
  interval: "month",
  prices: [
    { type: "flat", amount: flat, billing: "advance" },
    { type: "metered", meterId: "api_calls", aggregation: "sum", pricingModel: "per_unit", unitAmount: unit },
  ],
  ...extra,
});

describe("a subscription's life on a test clock", () => {
  it("trial → active → usage → prorated plan change → renewal invoice → void, to the cent", async () => {
    const region = unique("R").slice(-3).toUpperCase().replace(/[^A-Z0-9]/g, "X");
    const taxRate = await api("PUT", "/api/v1/tax/rates", { body: { jurisdiction: `US-${region}`, rate: 0.0725, effectiveDate: "2024-01-01" } });
    expect(taxRate.status).toBe(200);
    const clock = await clockAt("2024-03-01T00:00:00Z");
    const customer = await createCustomer({ testClockId: clock, country: "US", region });
    const basic = await createPlan({ name: "Basic", trialDays: 14, ...flatAndUsage("10", "0.001") });
    const pro = await createPlan({ name: "Pro", ...flatAndUsage("20", "0.002") });

    const created = await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: basic.id } });
    expect(created.status).toBe(201);
    const sub = created.body;
    expect(sub).toMatchObject({ status: "trialing", currentPeriodStart: T("2024-03-01"), currentPeriodEnd: T("2024-03-15"), trialEnd: T("2024-03-15"), testClockId: clock });
    expect(await invoicesOf(sub.id)).toHaveLength(0);

    // Trial ends: active, first invoice for the first paid month, tax 7.25 % per line.
    const atTrialEnd = await advance(clock, "2024-03-15T00:00:00Z");
    expect(atTrialEnd.steps).toMatchObject([{ subscriptionId: sub.id, step: "period_end", status: "active" }]);
    let s = (await api("GET", `/api/v1/subscriptions/${sub.id}`)).body;
    expect(s).toMatchObject({ status: "active", currentPeriodStart: T("2024-03-15"), currentPeriodEnd: T("2024-04-15") });
    let invs = await invoicesOf(sub.id);
    expect(invs).toHaveLength(1);
    expect(invs[0]).toMatchObject({ status: "open", billingReason: "subscription_cycle", subtotal: { amountMinor: 1000 }, tax: { amountMinor: 73 }, total: { amount: "10.73" }, taxJurisdiction: `US-${region}`, taxRate: "0.0725" });
    expect(invs[0].number).toMatch(/^INV-2024-\d{6}$/);

    await advance(clock, "2024-03-20T00:00:00Z");
    await usage(sub.id, 1000, "2024-03-20T00:00:00Z");
    await usage(sub.id, 2000, "2024-03-20T00:00:00Z");
    await usage(sub.id, 500, "2024-03-19T12:00:00Z");

    // Upgrade on 25 March: 21 of 31 days remain. Credit 10 × 21/31 = 6.77, charge 20 × 21/31 = 13.55.
    await advance(clock, "2024-03-25T00:00:00Z");
    const change = await api("PUT", `/api/v1/subscriptions/${sub.id}/plan`, { body: { newPlanId: pro.id, prorate: true, effectiveDate: "now" } });
    expect(change.status, JSON.stringify(change.body)).toBe(200);
    expect(change.body.prorationLines.map((l: any) => l.amountMinor)).toEqual([-677, 1355]);
    expect(change.body.net).toEqual({ amount: "6.78", amountMinor: 678, currency: "USD" });
    expect(change.body.subscription).toMatchObject({ planId: pro.id, status: "active" });

    await advance(clock, "2024-03-30T00:00:00Z");
    await usage(sub.id, 1500, "2024-03-30T00:00:00Z");

    // Not yet: the period ended at midnight but late usage may arrive for an hour.
    const early = await advance(clock, "2024-04-15T00:30:00Z");
    expect(early.steps).toHaveLength(0);
    const renewal = await advance(clock, "2024-04-15T01:00:00Z");
    expect(renewal.invoiceIds).toHaveLength(1);
    invs = await invoicesOf(sub.id);
    expect(invs).toHaveLength(2);
    const inv = await invoice(renewal.invoiceIds[0]);
    expect(inv.lines.map((l: any) => [l.kind, l.amount.amountMinor, l.tax.amountMinor])).toEqual([
      ["usage", 1000, 73], // 5000 calls × 0.002 (the plan in force at the period end)
      ["flat", 2000, 145], // Pro, next month in advance
      ["proration", -677, -49],
      ["proration", 1355, 98],
    ]);
    expect(inv.lines[0]).toMatchObject({ quantity: "5000", unitAmount: "0.002", meterId: "api_calls", period: { start: T("2024-03-15"), end: T("2024-04-15") } });
    expect(inv.lines[1].period).toEqual({ start: T("2024-04-15"), end: T("2024-05-15") });
    expect(inv).toMatchObject({ subtotal: { amountMinor: 3678 }, tax: { amountMinor: 267 }, total: { amount: "39.45", amountMinor: 3945 }, amountDue: { amountMinor: 3945 }, status: "open" });
    expect(inv.lines.reduce((n: number, l: any) => n + l.amount.amountMinor + l.tax.amountMinor, 0)).toBe(inv.total.amountMinor);

    // Usage of the closed period is refused from now on; the new period counts from zero.
    const late = await api("POST", "/api/v1/usage", { body: { subscriptionId: sub.id, meterId: "api_calls", quantity: 1, timestamp: "2024-04-14T23:00:00Z" } });
    expect(late.body.reason).toBe("period_closed");
    const summary = (await api("GET", `/api/v1/usage/${sub.id}/summary`)).body;
    expect(summary.period).toEqual({ start: T("2024-04-15"), end: T("2024-05-15") });
    expect(summary.meters[0].value).toBe("0");

    // Advancing to the same time again, or running the real-time generator, creates nothing new.
    expect((await advance(clock, "2024-04-15T01:00:00Z")).steps).toHaveLength(0);
    await api("POST", "/api/v1/invoices/generate-pending");
    expect(await invoicesOf(sub.id)).toHaveLength(2);
    const back = await api("POST", `/api/v1/test-clocks/${clock}/advance`, { body: { frozenTime: "2024-04-01T00:00:00Z" } });
    expect(back.status).toBe(409);

    const voided = await api("POST", `/api/v1/invoices/${inv.id}/void`, { body: { reason: "goodwill" } });
    expect(voided.status).toBe(200);
    expect(voided.body).toMatchObject({ status: "void", voidReason: "goodwill", amountDue: { amountMinor: 0 } });
    expect((await api("POST", `/api/v1/invoices/${inv.id}/void`, { body: { reason: "again" } })).status).toBe(409);
    const audit = await api("GET", `/api/v1/audit/search?target=${inv.id}`);
    expect(audit.body.data.map((a: any) => a.action)).toEqual(["invoice.voided", "invoice.finalized", "invoice.created"]);
  });

  it("nets the published $10 → $20 upgrade at 5.49, not 5.48", async () => {
    const clock = await clockAt("2024-03-01T00:00:00Z");
    const customer = await createCustomer({ testClockId: clock });
    const ten = await createPlan({ name: "Ten", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "10" }] });
    const twenty = await createPlan({ name: "Twenty", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "20" }] });
    const sub = (await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: ten.id } })).body;
    expect(sub).toMatchObject({ status: "active", currentPeriodStart: T("2024-03-01"), currentPeriodEnd: T("2024-04-01") });
    const first = await invoicesOf(sub.id);
    expect(first).toMatchObject([{ billingReason: "subscription_create", total: { amountMinor: 1000 }, status: "open" }]);
    await advance(clock, "2024-03-15T00:00:00Z");
    const change = await api("PUT", `/api/v1/subscriptions/${sub.id}/plan`, { body: { newPlanId: twenty.id, prorate: true, effectiveDate: "now" } });
    expect(change.body.prorationLines.map((l: any) => l.amount)).toEqual(["-5.48", "10.97"]);
    expect(change.body.net.amount).toBe("5.49");
  });

  it("bills arrears fees for each plan's own days when the plan changes mid-period", async () => {
    const clock = await clockAt("2024-03-01T00:00:00Z");
    const customer = await createCustomer({ testClockId: clock });
    const hundred = await createPlan({ name: "Hundred", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "100", billing: "arrears" }] });
    const ten = await createPlan({ name: "Ten", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "10", billing: "arrears" }] });
    const sub = (await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: hundred.id } })).body;
    expect(await invoicesOf(sub.id)).toHaveLength(0); // nothing is billed ahead

    // Downgrade on 15 March: 14 of 31 days on Hundred, 17 on Ten.
    await advance(clock, "2024-03-15T00:00:00Z");
    const change = await api("PUT", `/api/v1/subscriptions/${sub.id}/plan`, { body: { newPlanId: ten.id, prorate: true, effectiveDate: "now" } });
    expect(change.status, JSON.stringify(change.body)).toBe(200);
    // Hundred's 14 days are billed now; Ten's period-end line covers only its own 17 days.
    expect(change.body.prorationLines.map((l: any) => l.amountMinor)).toEqual([4516]);

    await advance(clock, "2024-04-01T00:00:00Z");
    const [inv] = await invoicesOf(sub.id);
    const lines = (await invoice(inv.id)).lines.map((l: any) => [l.kind, l.amount.amountMinor ?? l.amountMinor]);
    expect(lines).toEqual(expect.arrayContaining([["flat", 548], ["proration", 4516]]));
    // 100 × 14/31 + 10 × 17/31 = 45.16 + 5.48: not 10.00 (the plan at period end for the whole month).
    expect(inv.total.amountMinor).toBe(5064);
  });

  it("a plan change then a pause: the old plan's days are billed, the new plan's are not credited for a period that ends paused", async () => {
    const clock = await clockAt("2024-03-01T00:00:00Z");
    const customer = await createCustomer({ testClockId: clock });
    const ten = await createPlan({ name: "Ten", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "10", billing: "arrears" }] });
    const hundred = await createPlan({ name: "Hundred", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "100", billing: "arrears" }] });
    const sub = (await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: ten.id } })).body;
    await advance(clock, "2024-03-15T00:00:00Z");
    const change = await api("PUT", `/api/v1/subscriptions/${sub.id}/plan`, { body: { newPlanId: hundred.id, prorate: true, effectiveDate: "now" } });
    expect(change.body.prorationLines.map((l: any) => l.amountMinor)).toEqual([452]); // Ten × 14/31
    await advance(clock, "2024-03-20T00:00:00Z");
    expect((await api("POST", `/api/v1/subscriptions/${sub.id}/pause`, { body: { reason: "holiday", resumeDate: "2024-04-10" } })).status).toBe(200);
    await advance(clock, "2024-05-02T00:00:00Z");
    const invs = await invoicesOf(sub.id);
    const lines = (await Promise.all(invs.map((i: any) => invoice(i.id)))).flatMap((i: any) => i.lines.map((l: any) => l.amount.amountMinor ?? l.amountMinor));
    // March ended paused: nothing for Hundred's March days, and no credit either. After the resume: Ten's 452 and Hundred's April.
    expect(lines.every((a: number) => a >= 0)).toBe(true);
    expect(lines.filter((a: number) => a === 452)).toHaveLength(1);
    expect(invs.reduce((t: number, i: any) => t + i.total.amountMinor, 0)).toBe(452 + 10000);
  });

  it("applies a discount set mid-life from the next invoice on, until it is removed", async () => {
    const clock = await clockAt("2024-03-01T00:00:00Z");
    const customer = await createCustomer({ testClockId: clock });
    const plan = await createPlan({ name: "Ten", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "10" }] });
    const sub = (await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id } })).body;

    const set = await api("PUT", `/api/v1/subscriptions/${sub.id}/discount`, { as: "support", body: { discountPercent: "12.50", reason: "retention call" } });
    expect(set.status, JSON.stringify(set.body)).toBe(200);
    expect(set.body.discountPercent).toBe("12.5");
    await advance(clock, "2024-04-01T00:00:00Z");
    expect((await api("PUT", `/api/v1/subscriptions/${sub.id}/discount`, { body: { discountPercent: null } })).body.discountPercent).toBeNull();
    await advance(clock, "2024-05-01T00:00:00Z");
    // The first invoice was issued before the discount; April's has 12.5 % off; May's none again.
    expect((await invoicesOf(sub.id)).map((i: any) => [i.discount.amountMinor, i.total.amountMinor])).toEqual([
      [0, 1000],
      [125, 875],
      [0, 1000],
    ]);
    const audit = await api("GET", `/api/v1/audit/search?action=subscription.discount_changed&target=${sub.id}`);
    expect(audit.body.data.map((e: any) => e.reason ?? null)).toEqual([null, "retention call"]);

    expect((await api("PUT", `/api/v1/subscriptions/${sub.id}/discount`, { body: { discountPercent: 150 } })).body.errors[0].path).toBe("discountPercent");
    expect((await api("PUT", `/api/v1/subscriptions/${sub.id}/discount`, { as: "finance", body: { discountPercent: 5 } })).status).toBe(403);
  });

  it("refuses a discount end that is not in the future (422 on until), and a canceled subscription before that (409)", async () => {
    const clock = await clockAt("2024-03-01T00:00:00Z");
    const customer = await createCustomer({ testClockId: clock });
    const plan = await createPlan({ name: "Ten", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "10" }] });
    const sub = (await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id } })).body;

    const past = await api("PUT", `/api/v1/subscriptions/${sub.id}/discount`, { body: { discountPercent: 20, until: "2024-02-01" } });
    expect(past.status).toBe(422);
    expect(past.body.detail).toBe("until: must be in the future");
    expect(past.body.errors).toEqual([{ path: "until", message: "must be in the future" }]);

    expect((await api("POST", `/api/v1/subscriptions/${sub.id}/cancel`, { body: { reason: "test", cancelAtPeriodEnd: false } })).status).toBe(200);
    for (const body of [{ discountPercent: 20, until: "2024-02-01" }, { discountPercent: null }]) {
      const canceled = await api("PUT", `/api/v1/subscriptions/${sub.id}/discount`, { body });
      expect(canceled.status).toBe(409);
      expect(canceled.body.detail).toBe(`subscription ${sub.id} is canceled`);
    }
  });

  it("a discount with an end covers the invoices billed up to it, judged by the billing date, not the run's", async () => {
    const clock = await clockAt("2024-03-01T00:00:00Z");
    const customer = await createCustomer({ testClockId: clock });
    const plan = await createPlan({ name: "Ten", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "10" }] });
    const sub = (await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id } })).body;
    const set = await api("PUT", `/api/v1/subscriptions/${sub.id}/discount`, { body: { discountPercent: 20, until: "2024-04-01" } });
    expect(set.status, JSON.stringify(set.body)).toBe(200);
    expect(set.body).toMatchObject({ discountPercent: "20", discountUntil: "2024-04-01T23:59:59.999Z" });
    // The clock jumps past both renewals at once: 1 April is billed on 1 April (covered), 1 May is not.
    await advance(clock, "2024-05-02T00:00:00Z");
    expect((await invoicesOf(sub.id)).map((i: any) => i.total.amountMinor)).toEqual([1000, 800, 1000]);
    expect((await api("PUT", `/api/v1/subscriptions/${sub.id}/discount`, { body: { discountPercent: 5, until: "2024-01-01" } })).body.errors[0].path).toBe("until");
  });

  it("schedules a plan change for the next cycle and cancels at period end", async () => {
    const clock = await clockAt("2025-01-31T00:00:00Z");
    const customer = await createCustomer({ testClockId: clock });
    const a = await createPlan({ name: "A", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "5" }] });
    const b = await createPlan({ name: "B", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "7", billing: "arrears" }] });
    const sub = (await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: a.id } })).body;
    const scheduled = await api("PUT", `/api/v1/subscriptions/${sub.id}/plan`, { body: { newPlanId: b.id, prorate: true, effectiveDate: "next_billing_cycle" } });
    expect(scheduled.body).toMatchObject({ scheduled: true, effectiveAt: T("2025-02-28"), prorationLines: [] });
    expect(scheduled.body.subscription.pendingChange).toMatchObject({ planId: b.id, effectiveAt: T("2025-02-28") });
    // Jan 31 anchor: Feb 28, then Mar 31 (month ends clamp, the anchor day comes back).
    await advance(clock, "2025-02-28T00:00:00Z");
    let s = (await api("GET", `/api/v1/subscriptions/${sub.id}`)).body;
    expect(s).toMatchObject({ planId: b.id, currentPeriodStart: T("2025-02-28"), currentPeriodEnd: T("2025-03-31"), pendingChange: null });
    const cancel = await api("POST", `/api/v1/subscriptions/${sub.id}/cancel`, { body: { reason: "customer_request", feedback: "Too expensive", cancelAtPeriodEnd: true } });
    expect(cancel.status).toBe(200);
    expect(cancel.body.subscription).toMatchObject({ status: "active", cancelAtPeriodEnd: true, cancelReason: "customer_request", cancelFeedback: "Too expensive" });
    await advance(clock, "2025-04-05T00:00:00Z");
    s = (await api("GET", `/api/v1/subscriptions/${sub.id}`)).body;
    expect(s).toMatchObject({ status: "canceled", endedAt: T("2025-03-31") });
    const invs = await invoicesOf(sub.id);
    // create (A in advance); Feb 28 has nothing to bill (A was paid ahead, B bills in arrears), so no invoice;
    // Mar 31 bills B's month in arrears and, canceled, no next period.
    expect(invs.map((i: any) => [i.billingReason, i.total.amountMinor, i.period.start])).toEqual([
      ["subscription_create", 500, T("2025-01-31")],
      ["subscription_cycle", 700, T("2025-02-28")],
    ]);
    expect((await api("POST", `/api/v1/subscriptions/${sub.id}/cancel`, { body: { reason: "x" } })).status).toBe(409);
  });

  it("pauses without billing and resumes on the resume date", async () => {
    const clock = await clockAt("2025-06-01T00:00:00Z");
    const customer = await createCustomer({ testClockId: clock });
    const plan = await createPlan({ name: "P", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "9" }] });
    const sub = (await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id } })).body;
    const paused = await api("POST", `/api/v1/subscriptions/${sub.id}/pause`, { body: { reason: "customer_request", resumeDate: "2025-07-15" } });
    expect(paused.body).toMatchObject({ status: "paused", pausedUntil: T("2025-07-15"), pauseReason: "customer_request" });
    expect((await api("POST", `/api/v1/subscriptions/${sub.id}/pause`, { body: { reason: "again" } })).status).toBe(409);
    await advance(clock, "2025-07-10T00:00:00Z");
    expect((await invoicesOf(sub.id)).length).toBe(1); // only the first month: July 1 renewal was not billed
    await advance(clock, "2025-07-15T00:00:00Z");
    const s = (await api("GET", `/api/v1/subscriptions/${sub.id}`)).body;
    expect(s).toMatchObject({ status: "active", pausedUntil: null, currentPeriodStart: T("2025-07-01"), currentPeriodEnd: T("2025-08-01") });
    await advance(clock, "2025-08-01T00:00:00Z");
    expect((await invoicesOf(sub.id)).map((i: any) => i.total.amountMinor)).toEqual([900, 900]);
  });

  it("cancels immediately with a final invoice and a prorated credit", async () => {
    const clock = await clockAt("2024-03-01T00:00:00Z");
    const customer = await createCustomer({ testClockId: clock });
    const plan = await createPlan({ name: "C", ...flatAndUsage("31", "1") });
    const sub = (await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id } })).body;
    await advance(clock, "2024-03-11T00:00:00Z");
    await usage(sub.id, 3, "2024-03-10T00:00:00Z");
    const r = await api("POST", `/api/v1/subscriptions/${sub.id}/cancel`, { body: { reason: "fraud", cancelAtPeriodEnd: false, prorate: true } });
    expect(r.status).toBe(200);
    expect(r.body.subscription).toMatchObject({ status: "canceled", endedAt: T("2024-03-11") });
    const final = await invoice(r.body.finalInvoiceId);
    // usage 3 × 1; 21 of 31 days unused of the 31.00 advance fee → −21.00
    expect(final.lines.map((l: any) => [l.kind, l.amount.amountMinor])).toEqual([
      ["usage", 300],
      ["proration", -2100],
    ]);
    expect(final).toMatchObject({ total: { amountMinor: -1800 }, amountDue: { amountMinor: 0 }, status: "paid" });
    const refused = await api("POST", "/api/v1/usage", { body: { subscriptionId: sub.id, meterId: "api_calls", quantity: 1, timestamp: "2024-03-11T00:00:00Z" } });
    expect(refused.body.reason).toBe("subscription_canceled");
    // The 18.00 owed becomes customer credit, spent by the customer's next invoice.
    expect((await api("GET", `/api/v1/customers/${customer.id}`)).body.creditBalance).toEqual({ amount: "18.00", amountMinor: 1800 });
    const again = (await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id } })).body;
    const [first] = await invoicesOf(again.id);
    expect(first).toMatchObject({ total: { amountMinor: 3100 }, creditApplied: { amountMinor: 1800 }, amountDue: { amountMinor: 1300 }, status: "open" });
    expect((await api("GET", `/api/v1/customers/${customer.id}`)).body.creditBalance.amountMinor).toBe(0);
  });
});

describe("usage on a test clock that was never advanced", () => {
  it("lives in the clock's time from the subscription's creation: counted in the clock's period and billed on its invoice", async () => {
    const clock = await clockAt("2021-01-15T12:00:00Z");
    const customer = await createCustomer({ testClockId: clock });
    const plan = await createPlan({ name: "Clock usage", ...flatAndUsage("5", "0.01") });
    const sub = (await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id } })).body;
    expect(sub).toMatchObject({ currentPeriodStart: T("2021-01-15T12:00:00Z"), currentPeriodEnd: T("2021-02-15T12:00:00Z") });

    const unstamped = await api("POST", "/api/v1/usage", { body: { subscriptionId: sub.id, meterId: "api_calls", quantity: 100 } });
    expect(unstamped.status, JSON.stringify(unstamped.body)).toBe(202);
    expect(unstamped.body).toMatchObject({ accepted: 1 });
    const stamped = await api("POST", "/api/v1/usage", { body: { subscriptionId: sub.id, meterId: "api_calls", quantity: 50, timestamp: "2021-01-15T12:00:00Z" } });
    expect(stamped.status, JSON.stringify(stamped.body)).toBe(202);

    const summary = (await api("GET", `/api/v1/usage/${sub.id}/summary`)).body;
    expect(summary.period).toEqual({ start: T("2021-01-15T12:00:00Z"), end: T("2021-02-15T12:00:00Z") });
    expect(summary.meters[0]).toMatchObject({ value: "150", eventCount: 2 });
    const events = async () => (await api("GET", `/api/v1/usage/${sub.id}/events`)).body.data.map((e: any) => e.timestamp);
    expect(await events()).toEqual([T("2021-01-15T12:00:00Z"), T("2021-01-15T12:00:00Z")]);
    // The meter's housekeeping keeps events for their dedup window in clock time too (not years "old" by the wall clock).
    expect(await runDurableObjectAlarm(env.USAGE_METER.get(env.USAGE_METER.idFromName(sub.id)))).toBe(true);
    expect(await events()).toHaveLength(2);

    const renewal = await advance(clock, "2021-02-15T13:00:00Z");
    expect(renewal.invoiceIds).toHaveLength(1);
    const inv = await invoice(renewal.invoiceIds[0]);
    expect(inv.lines.find((l: any) => l.kind === "usage")).toMatchObject({ quantity: "150", amount: { amountMinor: 150 }, period: { start: T("2021-01-15T12:00:00Z"), end: T("2021-02-15T12:00:00Z") } });
  });
});

describe("real-time invoice generation", () => {
  it("is idempotent: running it again creates nothing new", { timeout: 120_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 10_000 }), { minLength: 0, maxLength: 5 }), async (quantities) => {
        const customer = await createCustomer();
        const plan = await createPlan({ name: "RT", ...flatAndUsage("12.34", "0.0006") });
        const sub = (await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id } })).body;
        for (const q of quantities) await usage(sub.id, q, new Date().toISOString());
        // Move the period into the past, beyond the grace window, as if a month had gone by.
        const now = Date.now();
        const start = now - 40 * 86_400_000;
        const end = now - 2 * 3_600_000;
        await env.DB.prepare("UPDATE subscriptions SET current_period_start = ?, current_period_end = ?, billing_anchor = ?, config_version = config_version + 1 WHERE id = ?").bind(start, end, start, sub.id).run();
        const stub = env.USAGE_METER.get(env.USAGE_METER.idFromName(sub.id));
        const cfg = (await stub.getConfig())!;
        await stub.configure({ ...cfg, currentPeriodStart: start, currentPeriodEnd: end, billingAnchor: start, version: cfg.version + 1 });
        const jobs = spyQueue();
        const first = await api("POST", "/api/v1/invoices/generate-pending", { as: "finance", env: { JOB_QUEUE: jobs } });
        expect(first.status).toBe(200);
        expect(first.body.queued).toBeGreaterThanOrEqual(1);
        // The renewal runs from the jobs queue: its message, delivered to the consumer here (not waited for).
        const renewal = jobs.sent.filter((m) => m.body.subscriptionId === sub.id).map((m) => m.body);
        expect(renewal).toHaveLength(1);
        expect((await deliver("billing-jobs", renewal)).retryMessages).toEqual([]);
        expect(await invoicesOf(sub.id)).toHaveLength(2);
        // Nothing is due any more: a second run has nothing of this subscription's to queue.
        expect(await env.DB.prepare("SELECT count(*) AS n FROM subscriptions WHERE id = ? AND current_period_end <= ?").bind(sub.id, Date.now()).first<{ n: number }>()).toEqual({ n: 0 });
        const again = spyQueue();
        const second = await api("POST", "/api/v1/invoices/generate-pending", { as: "finance", env: { JOB_QUEUE: again } });
        expect(second.status).toBe(200);
        expect(again.sent.filter((m) => m.body.subscriptionId === sub.id)).toEqual([]);
        const invs = await invoicesOf(sub.id);
        expect(invs).toHaveLength(2);
        const renewed = await invoice(invs[1].id);
        const lineSum = renewed.lines.reduce((n: number, l: any) => n + l.amount.amountMinor, 0);
        expect(renewed.subtotal.amountMinor).toBe(lineSum);
        expect(renewed.total.amountMinor).toBe(renewed.subtotal.amountMinor - renewed.discount.amountMinor + renewed.tax.amountMinor);
      }),
      { numRuns: 4 },
    );
  });
});

describe("changing the billing interval", () => {
  it("now: closes the month out (credit for unused time) and starts a yearly cycle today with its full fee", async () => {
    const clock = await clockAt("2024-03-01T00:00:00Z");
    const customer = await createCustomer({ testClockId: clock });
    const monthly = await createPlan({ name: "Monthly", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "31" }] });
    const yearly = await createPlan({ name: "Yearly", currency: "USD", interval: "year", prices: [{ type: "flat", amount: "300" }] });
    const sub = (await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: monthly.id } })).body;
    await advance(clock, "2024-03-11T00:00:00Z");
    const r = await api("PUT", `/api/v1/subscriptions/${sub.id}/plan`, { body: { newPlanId: yearly.id, prorate: true, effectiveDate: "now" } });
    expect(r.status).toBe(200);
    expect(r.body.subscription).toMatchObject({ planId: yearly.id, currentPeriodStart: T("2024-03-11"), currentPeriodEnd: T("2025-03-11"), billingAnchor: T("2024-03-11") });
    // 21 of 31 days unused of 31.00 → −21.00; the year in advance 300.00.
    expect(r.body.prorationLines.map((l: any) => l.amountMinor)).toEqual([-2100, 30000]);
    const invs = await invoicesOf(sub.id);
    expect(invs.map((i: any) => [i.billingReason, i.total.amountMinor])).toEqual([
      ["subscription_create", 3100],
      ["subscription_update", 27900],
    ]);
    // The next renewal is a year later, at the yearly fee.
    await advance(clock, "2025-03-11T00:00:00Z");
    const after = await invoicesOf(sub.id);
    expect(after.at(-1)).toMatchObject({ billingReason: "subscription_cycle", total: { amountMinor: 30000 }, period: { start: T("2025-03-11"), end: T("2026-03-11") } });
  });

  it("at the next cycle: the yearly cycle starts at the switch, not on the old monthly anchor's grid", async () => {
    const clock = await clockAt("2025-01-31T00:00:00Z");
    const customer = await createCustomer({ testClockId: clock });
    const monthly = await createPlan({ name: "M", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "10" }] });
    const yearly = await createPlan({ name: "Y", currency: "USD", interval: "year", prices: [{ type: "flat", amount: "100" }] });
    const sub = (await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: monthly.id } })).body;
    await api("PUT", `/api/v1/subscriptions/${sub.id}/plan`, { body: { newPlanId: yearly.id, effectiveDate: "next_billing_cycle" } });
    await advance(clock, "2025-02-28T00:00:00Z");
    const s = (await api("GET", `/api/v1/subscriptions/${sub.id}`)).body;
    expect(s).toMatchObject({ planId: yearly.id, currentPeriodStart: T("2025-02-28"), currentPeriodEnd: T("2026-02-28") });
  });
});
