import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";

import { weeklyRevenueReport } from "../../src/modules/analytics/routes";
import { notificationEventCount, unique, api, created as createdWith, attemptPayment, servicesOf } from "../helpers";

// Storage is shared by the tests of this file only, so totals are exact. The order matters: the churn test
// (last) adds SEK subscriptions; the earlier tests look at the USD and GBP data made in beforeAll.

type Role = "admin" | "finance" | "support" | "viewer";

/** Messages to the payments and webhooks queues are kept out of the real queues: the tests decide what runs. */
let webhookSent: any[] = [];
const spyPayments = { send: async () => {}, sendBatch: async () => {} } as unknown as Queue;
const spyWebhooks = { send: async (body: unknown) => void webhookSent.push(body), sendBatch: async () => {} } as unknown as Queue;
const testEnv = () => ({ ...env, PAYMENT_QUEUE: spyPayments, WEBHOOK_QUEUE: spyWebhooks }) as Env;

const call = (method: string, path: string, body?: unknown, opts: { role?: Role | null; raw?: string } = {}) =>
  api(method, path, { body, rawBody: opts.raw, as: opts.role, env: testEnv() });

const created = (path: string, body: unknown) => createdWith(path, body, { env: testEnv() });

async function pay(invoiceId: string) {
  expect((await attemptPayment(invoiceId, 1, { env: testEnv() })).explicitAcks).toHaveLength(1);
}

const DAY = 86_400_000;
const setRow = (table: string, id: string, cols: Record<string, unknown>) =>
  env.DB.prepare(`UPDATE ${table} SET ${Object.keys(cols).map((k) => `${k} = ?`).join(", ")} WHERE id = ?`)
    .bind(...Object.values(cols), id)
    .run();
const invoiceOf = async (subscriptionId: string) => (await call("GET", `/api/v1/invoices?subscriptionId=${subscriptionId}`)).body.data[0];
const customer = (currency: string, name?: string) => created("/api/v1/customers", { email: `${unique("an")}@example.com`, currency, ...(name ? { name } : {}) });
const subscribe = async (customerId: string, planId: string, extra: Record<string, unknown> = {}) =>
  created("/api/v1/subscriptions", { customerId, planId, paymentMethod: "pm_card_visa", ...extra });
const cancelNow = async (id: string, reason: string, feedback?: string) => {
  const r = await call("POST", `/api/v1/subscriptions/${id}/cancel`, { reason, cancelAtPeriodEnd: false, ...(feedback ? { feedback } : {}) });
  expect(r.status).toBe(200);
};

const m = (amount: string, amountMinor: number, currency = "USD") => ({ amount, amountMinor, currency });
const usd = (body: any) => body.currencies.find((c: any) => c.currency === "USD");

const w: Record<string, any> = {};

beforeAll(async () => {
  w.monthly = await created("/api/v1/plans", {
    name: "Analytics Monthly",
    currency: "USD",
    interval: "month",
    prices: [
      { type: "flat", amount: "29.99" },
      { type: "metered", meterId: "api_calls", aggregation: "sum", pricingModel: "per_unit", unitAmount: "0.001" },
    ],
  });
  w.yearly = await created("/api/v1/plans", { name: "Analytics Yearly", currency: "USD", interval: "year", prices: [{ type: "flat", amount: "1200.00" }] });
  w.weekly = await created("/api/v1/plans", { name: "Analytics Weekly", currency: "USD", interval: "week", prices: [{ type: "flat", amount: "10.00" }] });

  w.custA = await customer("USD", "Acme Corp");
  w.subA = await subscribe(w.custA.id, w.monthly.id, { quantity: 2, discountPercent: "10" }); // 59.98 less 10 % = 53.98
  w.subB = await subscribe((await customer("USD")).id, w.yearly.id); // 1200.00
  w.subC = await subscribe((await customer("USD")).id, w.weekly.id); // 10.00
  w.custD = await customer("USD");
  w.subD = await subscribe(w.custD.id, w.weekly.id); // 10.00, canceled below
  w.subF = await subscribe((await customer("USD")).id, w.monthly.id); // 29.99, unpaid: past_due
  w.subG = await subscribe((await customer("USD")).id, w.monthly.id); // 29.99, unpaid: paused
  // A test-clock subscription lives in simulated time: in no figure.
  const clock = await created("/api/v1/test-clocks", { frozenTime: new Date().toISOString() });
  await subscribe((await created("/api/v1/customers", { email: `${unique("tc")}@example.com`, currency: "USD", testClockId: clock.id })).id, w.yearly.id);

  for (const s of ["subA", "subB", "subC", "subD", "subF", "subG"]) w[`inv${s.slice(3)}`] = await invoiceOf(w[s].id);
  for (const s of ["A", "B", "C", "D"]) await pay(w[`inv${s}`].id);
  w.paymentB = (await call("GET", `/api/v1/payments?invoiceId=${w.invB.id}`)).body.data[0];
  const refund = await call("POST", "/api/v1/refunds", { paymentId: w.paymentB.id, amount: 200, reason: "customer_request" }, { role: "finance" });
  expect(refund.body).toMatchObject({ status: "succeeded", amountMinor: 20000 });
  await cancelNow(w.subD.id, "too_expensive", "Price went up");
  await setRow("subscriptions", w.subF.id, { status: "past_due" });
  await setRow("subscriptions", w.subG.id, { status: "paused" });

  // GBP usage revenue, written directly: one usage line counts; a void invoice's and an old one's do not.
  const gbp = await customer("GBP");
  const now = Date.now();
  const invoice = async (status: string, finalizedAt: number, usage: number, discount: number) => {
    const id = unique("inv_gbp");
    await env.DB.prepare(
      "INSERT INTO invoices (id, customer_id, status, billing_reason, currency, period_start, period_end, subtotal, discount, tax, total, amount_paid, amount_due, finalized_at, generation_key, created_at, updated_at) VALUES (?, ?, ?, 'manual', 'GBP', ?, ?, ?, ?, 0, ?, 0, ?, ?, ?, ?, ?)",
    )
      .bind(id, gbp.id, status, finalizedAt - DAY, finalizedAt, usage + 500, discount, usage + 500 - discount, usage + 500 - discount, finalizedAt, id, finalizedAt, finalizedAt)
      .run();
    for (const [i, kind, amount, disc] of [[0, "flat", 500, 0], [1, "usage", usage, discount]] as const) {
      await env.DB.prepare("INSERT INTO invoice_lines (id, invoice_id, position, kind, description, quantity, amount, discount_amount, period_start, period_end, computation) VALUES (?, ?, ?, ?, 'x', '1', ?, ?, ?, ?, 'test')")
        .bind(unique("il"), id, i, kind, amount, disc, finalizedAt - DAY, finalizedAt)
        .run();
    }
  };
  await invoice("open", now - 10 * DAY, 1234, 34);
  await invoice("void", now - 5 * DAY, 999, 0);
  await invoice("paid", now - 40 * DAY, 777, 0);
});

beforeEach(() => {
  webhookSent = [];
});

describe("GET /api/v1/analytics/revenue/today", () => {
  it("collected (by success time), refunded, net and invoiced today, per currency", async () => {
    const r = await call("GET", "/api/v1/analytics/revenue/today", undefined, { role: "finance" });
    expect(r.status).toBe(200);
    expect(r.body.date).toBe(new Date().toISOString().slice(0, 10));
    expect(r.body.from).toBe(`${r.body.date}T00:00:00.000Z`);
    expect(r.body.currencies).toEqual([
      {
        currency: "USD",
        collected: { ...m("1273.98", 127398), count: 4 }, // 53.98 + 1200 + 10 + 10
        refunded: { ...m("200.00", 20000), count: 1 },
        net: m("1073.98", 107398),
        invoiced: { ...m("1333.96", 133396), count: 6 }, // + 29.99 × 2 unpaid; the test-clock invoice is left out
      },
    ]);
  });

  it("a payment refunded today but collected earlier is not today's collection", async () => {
    // Move B's success to yesterday: its refund (today) moved the payment's updatedAt, which must not count.
    await env.DB.prepare("UPDATE audit_log SET at = at - ? WHERE action = 'payment.processed' AND target_id = ?").bind(DAY, w.paymentB.id).run();
    try {
      const r = await call("GET", "/api/v1/analytics/revenue/today", undefined, { role: "finance" });
      expect(usd(r.body)).toMatchObject({ collected: { amountMinor: 7398, count: 3 }, refunded: { amountMinor: 20000 }, net: { amount: "-126.02", amountMinor: -12602 } });
    } finally {
      await env.DB.prepare("UPDATE audit_log SET at = at + ? WHERE action = 'payment.processed' AND target_id = ?").bind(DAY, w.paymentB.id).run();
    }
  });
});

describe("GET /api/v1/analytics/mrr", () => {
  it("normalizes flat prices to a month, less discounts, per plan; past_due counts, paused/canceled/test clocks do not", async () => {
    const r = await call("GET", "/api/v1/analytics/mrr", undefined, { role: "finance" });
    expect(r.status).toBe(200);
    expect(r.body.method).toContain("Metered (usage) prices are not in MRR");
    expect(usd(r.body)).toEqual({
      currency: "USD",
      mrr: m("227.30", 22730), // 53.98 + 100.00 + 43.33 + 29.99
      arr: m("2727.60", 272760),
      subscriptions: 4,
      customers: 4,
      arpa: m("56.83", 5683), // 227.30 / 4 = 56.825, half away from zero
      byPlan: [
        { planId: w.yearly.id, planName: "Analytics Yearly", subscriptions: 1, mrr: m("100.00", 10000) },
        { planId: w.monthly.id, planName: "Analytics Monthly", subscriptions: 2, mrr: m("83.97", 8397) },
        { planId: w.weekly.id, planName: "Analytics Weekly", subscriptions: 1, mrr: m("43.33", 4333) },
      ],
      usageRevenueLast30Days: m("0.00", 0),
    });
    expect(r.body.currencies.find((c: any) => c.currency === "GBP")).toEqual({
      currency: "GBP",
      mrr: m("0.00", 0, "GBP"),
      arr: m("0.00", 0, "GBP"),
      subscriptions: 0,
      customers: 0,
      arpa: m("0.00", 0, "GBP"),
      byPlan: [],
      usageRevenueLast30Days: m("12.00", 1200, "GBP"), // 12.34 less 0.34 discount; void and 40-day-old lines left out
    });
  });

  it("stops subtracting a discount once it has ended, as invoices do", async () => {
    await env.DB.prepare("UPDATE subscriptions SET discount_until = ? WHERE id = ?").bind(Date.now() - 1000, w.subA.id).run();
    try {
      const r = await call("GET", "/api/v1/analytics/mrr", undefined, { role: "finance" });
      expect(usd(r.body).mrr).toEqual(m("233.30", 23330)); // 59.98 instead of 53.98
    } finally {
      await env.DB.prepare("UPDATE subscriptions SET discount_until = NULL WHERE id = ?").bind(w.subA.id).run();
    }
  });
});

describe("GET /api/v1/analytics/revenue/breakdown", () => {
  const breakdown = (q: string) => call("GET", `/api/v1/analytics/revenue/breakdown?${q}`, undefined, { role: "finance" });

  it("groups finalized invoices of the period by plan, per currency, with what was paid on them", async () => {
    const r = await breakdown("groupBy=plan&period=month");
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ groupBy: "plan", period: "month", hasMore: false });
    expect(r.body.totals).toEqual([
      { currency: "GBP", invoiced: m("17.00", 1700, "GBP"), collected: m("0.00", 0, "GBP"), invoices: 1 },
      { currency: "USD", invoiced: m("1333.96", 133396), collected: m("1273.98", 127398), invoices: 6 },
    ]);
    expect(r.body.groups).toEqual([
      { key: null, label: null, currency: "GBP", invoiced: m("17.00", 1700, "GBP"), collected: m("0.00", 0, "GBP"), invoices: 1 },
      { key: w.yearly.id, label: "Analytics Yearly", currency: "USD", invoiced: m("1200.00", 120000), collected: m("1200.00", 120000), invoices: 1 },
      { key: w.monthly.id, label: "Analytics Monthly", currency: "USD", invoiced: m("113.96", 11396), collected: m("53.98", 5398), invoices: 3 },
      { key: w.weekly.id, label: "Analytics Weekly", currency: "USD", invoiced: m("20.00", 2000), collected: m("20.00", 2000), invoices: 2 },
    ]);
  });

  it("groups by customer, currency and billing reason; the period bounds the invoices; limit pages", async () => {
    const byCustomer = await breakdown("groupBy=customer&period=week");
    expect(byCustomer.body.groups.find((g: any) => g.key === w.custA.id)).toEqual({ key: w.custA.id, label: "Acme Corp", currency: "USD", invoiced: m("53.98", 5398), collected: m("53.98", 5398), invoices: 1 });
    expect(byCustomer.body.groups.filter((g: any) => g.currency === "USD")).toHaveLength(6);
    expect(byCustomer.body.groups.some((g: any) => g.currency === "GBP")).toBe(false); // finalized 10 days ago

    const byCurrency = await breakdown("groupBy=currency&period=quarter");
    expect(byCurrency.body.groups.map((g: any) => [g.key, g.invoiced.amountMinor, g.invoices])).toEqual([["GBP", 2977, 2], ["USD", 133396, 6]]);
    const byReason = await breakdown("groupBy=billing_reason&period=year");
    expect(byReason.body.groups.map((g: any) => [g.key, g.currency, g.invoiced.amountMinor])).toEqual([["manual", "GBP", 2977], ["subscription_create", "USD", 133396]]);

    const page = await breakdown("groupBy=plan&period=day&limit=1");
    expect(page.body.groups).toHaveLength(1);
    expect(page.body.hasMore).toBe(true);
    expect(page.body.totals).toEqual([{ currency: "USD", invoiced: m("1333.96", 133396), collected: m("1273.98", 127398), invoices: 6 }]);

    // Defaults: by plan over the month, as the runbook calls it.
    expect((await call("GET", "/api/v1/analytics/revenue/breakdown")).body).toMatchObject({ groupBy: "plan", period: "month" });
    expect((await breakdown("groupBy=product")).status).toBe(400);
    expect((await breakdown("period=decade")).status).toBe(400);
  });
});

describe("POST /api/v1/reports/weekly-revenue", () => {
  it("stores the report in R2 and queues one email per date and address (runbook curl, no Content-Type)", async () => {
    const r = await call("POST", "/api/v1/reports/weekly-revenue", undefined, { role: "finance", raw: '{"email": "finance@exalt.com"}' });
    expect(r.status).toBe(200);
    const date = new Date().toISOString().slice(0, 10);
    expect(r.body.key).toBe(`reports/revenue/weekly-${date}.json`);
    expect(r.body.notification).toMatchObject({ email: "finance@exalt.com", status: "queued" });
    const report = r.body.report;
    expect(report.date).toBe(date);
    expect(Date.parse(report.window.to) - Date.parse(report.window.from)).toBe(7 * DAY);
    const revenue = report.revenue.find((x: any) => x.currency === "USD");
    expect(revenue).toMatchObject({
      invoiced: { ...m("1333.96", 133396), count: 6 },
      collected: { ...m("1273.98", 127398), count: 4 },
      refunded: { ...m("200.00", 20000), count: 1 },
      net: m("1073.98", 107398),
    });
    expect(revenue.byPlan[0]).toEqual({
      planId: w.yearly.id,
      planName: "Analytics Yearly",
      invoiced: { ...m("1200.00", 120000), count: 1 },
      collected: { ...m("1200.00", 120000), count: 1 },
      refunded: { ...m("200.00", 20000), count: 1 },
      net: m("1000.00", 100000),
    });
    expect(revenue.byPlan.map((p: any) => p.planId)).toEqual([w.yearly.id, w.monthly.id, w.weekly.id]);
    expect(report.revenue.some((x: any) => x.currency === "GBP")).toBe(false); // finalized 10 days ago
    expect(usd(report.mrr).mrr).toEqual(m("227.30", 22730));
    // D was created and canceled this week: not churn of the week's start (nothing was active then), counted apart.
    expect(report.churn.subscriptions).toMatchObject({ activeAtStart: 0, canceled: 0, newAndCanceled: 1, churnRate: null });

    const stored = await env.ARCHIVE.get(r.body.key);
    expect(JSON.parse(await stored!.text())).toEqual(report);
    const row = await env.DB.prepare("SELECT id, kind, template, customer_id AS customerId, dedupe_key AS dedupeKey, status, payload FROM notifications WHERE id = ?").bind(r.body.notification.id).first<any>();
    expect(row).toMatchObject({ kind: "report.weekly_revenue", template: "weekly_revenue", customerId: "system", dedupeKey: `weekly_revenue:${date}:finance@exalt.com`, status: "queued" });
    expect(JSON.parse(row.payload)).toMatchObject({ email: "finance@exalt.com", reportKey: r.body.key, date });
    expect(await notificationEventCount(r.body.notification.id)).toBe(1);
    const audit = await call("GET", `/api/v1/audit/search?action=report.weekly_revenue_queued&target=${r.body.notification.id}`);
    expect(audit.body.data).toHaveLength(1);

    // Same day, same address: the report is replaced, no second email.
    webhookSent = [];
    const again = await call("POST", "/api/v1/reports/weekly-revenue", { email: "finance@exalt.com" }, { role: "finance" });
    expect(again.body.notification).toEqual({ id: r.body.notification.id, email: "finance@exalt.com", status: "already_queued" });
    expect(webhookSent).toEqual([]);
    const count = await env.DB.prepare("SELECT count(*) AS n FROM notifications WHERE kind = 'report.weekly_revenue'").first<{ n: number }>();
    expect(count!.n).toBe(1);
  });

  it("without an email only stores the report; the cron entry point does the same; bad bodies are 400", async () => {
    const r = await call("POST", "/api/v1/reports/weekly-revenue", undefined, { role: "admin", raw: "" });
    expect(r.status).toBe(200);
    expect(r.body.notification).toBeNull();
    expect(webhookSent).toEqual([]);

    const monday = Date.UTC(2031, 0, 6, 4);
    const cron = await weeklyRevenueReport(servicesOf({ now: monday }, testEnv()));
    expect(cron.key).toBe("reports/revenue/weekly-2031-01-06.json");
    expect(cron.notification).toBeNull();
    expect(cron.report.window).toEqual({ from: "2030-12-30T04:00:00.000Z", to: "2031-01-06T04:00:00.000Z" });
    expect(cron.report.revenue).toEqual([]);
    expect(await env.ARCHIVE.head(cron.key)).not.toBeNull();

    expect((await call("POST", "/api/v1/reports/weekly-revenue", undefined, { role: "finance", raw: '{"email": "not-an-email"}' })).status).toBe(400);
    expect((await call("POST", "/api/v1/reports/weekly-revenue", undefined, { role: "finance", raw: "{email:" })).status).toBe(400);
  });
});

describe("GET /api/v1/analytics/churn", () => {
  it("subscription, customer and revenue churn, reasons, feedback and trial conversion of the period", async () => {
    const now = Date.now();
    const sekMonthly = await created("/api/v1/plans", { name: "SEK Monthly", currency: "SEK", interval: "month", prices: [{ type: "flat", amount: "100.00" }] });
    const sekSmall = await created("/api/v1/plans", { name: "SEK Small", currency: "SEK", interval: "month", prices: [{ type: "flat", amount: "50.00" }] });
    const sekWeekly = await created("/api/v1/plans", { name: "SEK Weekly", currency: "SEK", interval: "week", prices: [{ type: "flat", amount: "10.00" }] });
    const x3 = await customer("SEK");
    const s1 = await subscribe((await customer("SEK")).id, sekMonthly.id); // active throughout
    const s2 = await subscribe((await customer("SEK")).id, sekMonthly.id); // churns 5 days ago: customer churned
    const s3 = await subscribe(x3.id, sekSmall.id); // churns 10 days ago; its customer keeps s4
    const s4 = await subscribe(x3.id, sekWeekly.id);
    const s5 = await subscribe((await customer("SEK")).id, sekMonthly.id); // ended before the month
    const s6 = await subscribe((await customer("SEK")).id, sekMonthly.id, { trialDays: 14 }); // trial converted 6 days ago
    const s7 = await subscribe((await customer("SEK")).id, sekMonthly.id, { trialDays: 14 }); // canceled during its trial
    const s8 = await subscribe((await customer("SEK")).id, sekMonthly.id); // new, 5 days ago
    await cancelNow(s2.id, "too_expensive", "Too pricey for us");
    await cancelNow(s3.id, "missing_features");
    await cancelNow(s5.id, "too_expensive", "Old feedback, outside the window");
    await cancelNow(s7.id, "trial_not_needed", "Only evaluating");
    const ago = (days: number) => now - days * DAY;
    for (const s of [s1, s2, s5]) await setRow("subscriptions", s.id, { created_at: ago(60) });
    for (const s of [s3, s4]) await setRow("subscriptions", s.id, { created_at: ago(90) });
    await setRow("subscriptions", s2.id, { ended_at: ago(5), canceled_at: ago(5) });
    await setRow("subscriptions", s3.id, { ended_at: ago(10), canceled_at: ago(10) });
    await setRow("subscriptions", s5.id, { ended_at: ago(40), canceled_at: ago(40) });
    await setRow("subscriptions", s6.id, { created_at: ago(20), trial_end: ago(6), trial_converted_at: ago(6), status: "active" });
    await setRow("subscriptions", s7.id, { created_at: ago(10), trial_end: ago(-4), ended_at: ago(3), canceled_at: ago(3) });
    await setRow("subscriptions", s8.id, { created_at: ago(5) });

    const r = await call("GET", "/api/v1/analytics/churn?period=month", undefined, { role: "viewer" });
    expect(r.status).toBe(200);
    expect(r.body.period).toBe("month");
    // Active at the start: s1-s4. New: s6, s7, s8 and the six USD subscriptions of today. Churned: s2 and s3, of the
    // four active at the start. USD's D was created and canceled inside the month: it is not churn of the month's
    // start (it would make "1 canceled of 0" when nothing else happened), it is counted apart as newAndCanceled.
    expect(r.body.subscriptions).toEqual({ activeAtStart: 4, new: 9, newWithTrial: 2, canceled: 2, newAndCanceled: 1, churnRate: "0.5000" });
    // Customers active at the start: s1's, s2's, x3; churned: s2's (x3 keeps s4; D's customer was not there at the start).
    expect(r.body.customers).toEqual({ activeAtStart: 3, churned: 1, churnRate: "0.3333" });
    // Revenue churn: the MRR lost among the subscriptions paying at the start (D's was never there at the start).
    expect(r.body.revenue).toEqual([{ currency: "SEK", mrrAtStart: m("293.33", 29333, "SEK"), mrrLost: m("150.00", 15000, "SEK"), churnRate: "0.5114" }]);
    expect(r.body.cancellationReasons).toEqual([
      { reason: "too_expensive", count: 2 },
      { reason: "missing_features", count: 1 },
    ]);
    expect(r.body.recentFeedback).toEqual([
      { subscriptionId: w.subD.id, customerId: w.custD.id, reason: "too_expensive", feedback: "Price went up", endedAt: expect.any(String) },
      { subscriptionId: s2.id, customerId: s2.customerId, reason: "too_expensive", feedback: "Too pricey for us", endedAt: new Date(ago(5)).toISOString() },
    ]);
    expect(r.body.trials).toEqual({ converted: 1, canceledDuringTrial: 1, conversionRate: "0.5000" });

    // The week: s1, s2, s4 were paying at its start (s3 had ended, s6 was in trial); s2 churned, D came and went.
    const week = await call("GET", "/api/v1/analytics/churn?period=week");
    expect(week.body.subscriptions).toMatchObject({ activeAtStart: 3, canceled: 1, newAndCanceled: 1, churnRate: "0.3333" });
    expect(week.body.trials).toEqual({ converted: 1, canceledDuringTrial: 1, conversionRate: "0.5000" });
    // The runbook's call: no period is the month.
    expect((await call("GET", "/api/v1/analytics/churn")).body.subscriptions).toEqual(r.body.subscriptions);
    expect((await call("GET", "/api/v1/analytics/churn?period=fortnight")).status).toBe(400);
  });
});

describe("analytics: access", () => {
  it.each([
    ["GET", "/api/v1/analytics/revenue/today", ["admin", "finance"]],
    ["GET", "/api/v1/analytics/mrr", ["admin", "finance"]],
    ["GET", "/api/v1/analytics/revenue/breakdown?groupBy=customer", ["admin", "finance"]],
    ["GET", "/api/v1/analytics/churn", ["admin", "finance", "support", "viewer"]],
    ["POST", "/api/v1/reports/weekly-revenue", ["admin", "finance"]],
  ] as const)("%s %s: token required; allowed for %j only", async (method, path, allowed) => {
    expect((await call(method, path, undefined, { role: null })).status).toBe(401);
    for (const role of ["admin", "finance", "support", "viewer"] as const) {
      expect((await call(method, path, undefined, { role })).status).toBe((allowed as readonly string[]).includes(role) ? 200 : 403);
    }
  });
});
