import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { api, createCustomer, createPlan, createSubscription } from "../helpers";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

const flatPlan = (overrides: Record<string, unknown> = {}) => createPlan({ name: "Stats plan", prices: [{ type: "flat", amount: "10.00" }], ...overrides });

/** Sequential on purpose: concurrent creations contend for the audit chain's next sequence number. */
async function subscribe(planId: string, n: number, overrides: Record<string, unknown> = {}) {
  const out = [];
  for (let i = 0; i < n; i++) out.push(await createSubscription({ planId, ...overrides }));
  return out;
}

const setRow = (table: "invoices" | "subscriptions", id: string, cols: Record<string, unknown>) =>
  env.DB.prepare(`UPDATE ${table} SET ${Object.keys(cols).map((k) => `${k} = ?`).join(", ")} WHERE id = ?`)
    .bind(...Object.values(cols), id)
    .run();
const invoiceOf = async (subscriptionId: string) => (await api("GET", `/api/v1/invoices?subscriptionId=${subscriptionId}`)).body.data[0];

describe("GET /api/v1/subscriptions/stats/active", () => {
  it("counts non-canceled real-time subscriptions by status and by plan", async () => {
    const before = (await api("GET", "/api/v1/subscriptions/stats/active", { as: "viewer" })).body;
    const plan = await flatPlan({ name: "Active stats" });
    const [a1, , pd, pz, c1] = await subscribe(plan.id, 5);
    await subscribe(plan.id, 1, { trialDays: 7 });
    await setRow("subscriptions", pd.id, { status: "past_due" });
    await setRow("subscriptions", pz.id, { status: "paused" });
    expect((await api("POST", `/api/v1/subscriptions/${c1.id}/cancel`, { body: { reason: "test", cancelAtPeriodEnd: false } })).status).toBe(200);
    // A test-clock subscription is simulated time: left out.
    const clock = await api("POST", "/api/v1/test-clocks", { body: { frozenTime: new Date().toISOString() } });
    const clocked = await createCustomer({ testClockId: clock.body.id });
    await createSubscription({ planId: plan.id, customerId: clocked.id });
    expect(a1.status).toBe("active");

    const r = await api("GET", "/api/v1/subscriptions/stats/active", { as: "viewer" });
    expect(r.status).toBe(200);
    expect(r.body.byPlan.find((p: any) => p.planId === plan.id)).toEqual({
      planId: plan.id,
      planName: "Active stats",
      total: 5,
      byStatus: { trialing: 1, active: 2, past_due: 1, paused: 1 },
    });
    expect(r.body.total).toBe(before.total + 5);
    expect(r.body.byStatus).toEqual({
      trialing: before.byStatus.trialing + 1,
      active: before.byStatus.active + 2,
      past_due: before.byStatus.past_due + 1,
      paused: before.byStatus.paused + 1,
    });
    expect(r.body.total).toBe(r.body.byPlan.reduce((s: number, p: any) => s + p.total, 0));
  });
});

describe("GET /api/v1/subscriptions/ending-soon", () => {
  it("lists trials ending and cancellations at period end within the window, soonest first", async () => {
    const now = Date.now();
    const plan = await flatPlan();
    const [trial5] = await subscribe(plan.id, 1, { trialDays: 5 });
    const [trial20] = await subscribe(plan.id, 1, { trialDays: 20 });
    const [cancel10, cancel40, renews3] = await subscribe(plan.id, 3);
    for (const s of [cancel10, cancel40]) await api("POST", `/api/v1/subscriptions/${s.id}/cancel`, { body: { reason: "moving", cancelAtPeriodEnd: true } });
    await setRow("subscriptions", cancel10.id, { current_period_end: now + 10 * DAY });
    await setRow("subscriptions", cancel40.id, { current_period_end: now + 40 * DAY });
    await setRow("subscriptions", renews3.id, { current_period_end: now + 3 * DAY });
    const mine = (body: any) => body.data.filter((d: any) => [trial5, trial20, cancel10, cancel40, renews3].some((s) => s.id === d.id));

    const r = await api("GET", "/api/v1/subscriptions/ending-soon?days=30", { as: "viewer" });
    expect(r.status).toBe(200);
    expect(r.body.days).toBe(30);
    expect(mine(r.body)).toEqual([
      { id: trial5.id, customerId: trial5.customerId, planId: plan.id, status: "trialing", endsAt: trial5.trialEnd, reason: "trial_ending" },
      { id: cancel10.id, customerId: cancel10.customerId, planId: plan.id, status: "active", endsAt: new Date(now + 10 * DAY).toISOString(), reason: "cancel_at_period_end" },
      { id: trial20.id, customerId: trial20.customerId, planId: plan.id, status: "trialing", endsAt: trial20.trialEnd, reason: "trial_ending" },
    ]);
    expect(r.body.count).toBeGreaterThanOrEqual(3);
    const ends = r.body.data.map((d: any) => Date.parse(d.endsAt));
    expect([...ends].sort((x, y) => x - y)).toEqual(ends);

    expect(mine((await api("GET", "/api/v1/subscriptions/ending-soon?days=7")).body).map((d: any) => d.id)).toEqual([trial5.id]);
    const page = await api("GET", "/api/v1/subscriptions/ending-soon?days=30&limit=1");
    expect(page.body.data).toHaveLength(1);
    expect(page.body.hasMore).toBe(true);
    expect((await api("GET", "/api/v1/subscriptions/ending-soon?days=0")).status).toBe(400);
  });
});

describe("GET /api/v1/subscriptions/stats/trial-conversion", () => {
  it("counts trials started in the window by outcome, overall and by plan", async () => {
    const may = (d: number) => Date.UTC(2021, 4, d, 12);
    const T = may(24); // trial end
    const p1 = await flatPlan({ trialDays: 14 });
    const p2 = await flatPlan({ trialDays: 14 });
    const [conv, convThenCancel, cancelDuring, cancelAtEnd, trialing, outside] = await subscribe(p1.id, 6);
    const [noTrial] = await subscribe(p1.id, 1, { trialDays: 0 });
    const [conv2, cancel2a, cancel2b] = await subscribe(p2.id, 3);
    const trialRow = { created_at: may(10), trial_end: T };
    for (const s of [conv, convThenCancel, cancelDuring, cancelAtEnd, trialing, conv2, cancel2a, cancel2b]) await setRow("subscriptions", s.id, trialRow);
    await setRow("subscriptions", outside.id, { created_at: Date.UTC(2021, 5, 1), trial_end: T });
    await setRow("subscriptions", noTrial.id, { created_at: may(10) });
    await setRow("subscriptions", conv.id, { status: "active", trial_converted_at: T });
    await setRow("subscriptions", conv2.id, { status: "active", trial_converted_at: T });
    await setRow("subscriptions", convThenCancel.id, { status: "canceled", trial_converted_at: T, ended_at: T + 30 * DAY });
    await setRow("subscriptions", cancelDuring.id, { status: "canceled", ended_at: may(15) });
    await setRow("subscriptions", cancel2a.id, { status: "canceled", ended_at: may(15) });
    await setRow("subscriptions", cancel2b.id, { status: "canceled", ended_at: may(16) });
    // A trial canceled at its end: the period-end step stamps trialConvertedAt too; it is not a conversion.
    await setRow("subscriptions", cancelAtEnd.id, { status: "canceled", trial_converted_at: T, ended_at: T });
    await setRow("subscriptions", trialing.id, { status: "trialing" });

    const r = await api("GET", "/api/v1/subscriptions/stats/trial-conversion?from=2021-05-01&to=2021-05-31", { as: "viewer" });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      from: "2021-05-01T00:00:00.000Z",
      to: "2021-05-31T23:59:59.999Z",
      started: 8,
      converted: 3,
      canceledDuringTrial: 4,
      stillTrialing: 1,
      other: 0,
      conversionRate: "0.4286",
    });
    const byPlan = Object.fromEntries(r.body.byPlan.map((p: any) => [p.planId, p]));
    expect(byPlan[p1.id]).toEqual({ planId: p1.id, started: 5, converted: 2, canceledDuringTrial: 2, stillTrialing: 1, other: 0, conversionRate: "0.5000" });
    expect(byPlan[p2.id]).toEqual({ planId: p2.id, started: 3, converted: 1, canceledDuringTrial: 2, stillTrialing: 0, other: 0, conversionRate: "0.3333" });

    const empty = await api("GET", "/api/v1/subscriptions/stats/trial-conversion?from=1999-01-01&to=1999-12-31");
    expect(empty.body).toMatchObject({ started: 0, converted: 0, conversionRate: null, byPlan: [] });
    expect((await api("GET", "/api/v1/subscriptions/stats/trial-conversion?from=2021-06-01&to=2021-05-01")).status).toBe(422);
    expect((await api("GET", "/api/v1/subscriptions/stats/trial-conversion?from=May")).status).toBe(400);
    // Without a window: every trial so far.
    const all = await api("GET", "/api/v1/subscriptions/stats/trial-conversion");
    expect(all.body.from).toBeNull();
    expect(all.body.started).toBeGreaterThanOrEqual(9);
  });
});

describe("GET /api/v1/subscriptions/health", () => {
  it("counts by status, sums past-due amounts per currency, renewal backlog and pending drafts", async () => {
    const before = (await api("GET", "/api/v1/subscriptions/health", { as: "viewer" })).body;
    const usdPlan = await flatPlan();
    const eurPlan = await flatPlan({ currency: "EUR", prices: [{ type: "flat", amount: "20.00" }] });
    const eurCustomer = await createCustomer({ currency: "EUR" });
    const [usdLate, usdFine, stale, drafted] = await subscribe(usdPlan.id, 4);
    const [eurLate] = await subscribe(eurPlan.id, 1, { customerId: eurCustomer.id });
    for (const s of [usdLate, eurLate]) await setRow("subscriptions", s.id, { status: "past_due" });
    await setRow("subscriptions", stale.id, { current_period_end: Date.now() - HOUR });
    await setRow("invoices", (await invoiceOf(drafted.id)).id, { status: "draft", number: null, finalized_at: null });
    const usdDue = (await invoiceOf(usdLate.id)).amountDue.amountMinor;
    const eurDue = (await invoiceOf(eurLate.id)).amountDue.amountMinor;
    expect(usdFine.status).toBe("active");

    const r = await api("GET", "/api/v1/subscriptions/health", { as: "viewer" });
    expect(r.status).toBe(200);
    expect(r.body.byStatus.past_due).toBe(before.byStatus.past_due + 2);
    expect(r.body.byStatus.active).toBe(before.byStatus.active + 3);
    expect(r.body.pastDue.subscriptions).toBe(before.pastDue.subscriptions + 2);
    const due = (body: any, currency: string) => body.pastDue.amountsDue.find((a: any) => a.currency === currency) ?? { amountMinor: 0, invoices: 0 };
    expect(due(r.body, "USD").amountMinor - due(before, "USD").amountMinor).toBe(usdDue);
    expect(due(r.body, "USD").invoices - due(before, "USD").invoices).toBe(1);
    expect(due(r.body, "EUR").amountMinor - due(before, "EUR").amountMinor).toBe(eurDue);
    expect(due(r.body, "EUR")).toMatchObject({ currency: "EUR", amount: (due(r.body, "EUR").amountMinor / 100).toFixed(2) });
    expect(eurDue).toBe(2000);
    expect(r.body.renewalBacklog.count).toBe(before.renewalBacklog.count + 1);
    expect(Date.parse(r.body.renewalBacklog.oldestPeriodEnd)).toBeLessThan(Date.now());
    expect(r.body.draftsPendingFinalization).toBe(before.draftsPendingFinalization + 1);
  });
});

describe("GET /api/v1/subscriptions/pending-renewals/count", () => {
  it("counts real-time period ends overdue and due within 24 hours", async () => {
    const before = (await api("GET", "/api/v1/subscriptions/pending-renewals/count", { as: "viewer" })).body;
    const now = Date.now();
    const plan = await flatPlan();
    const [overdue, soon, later, canceled] = await subscribe(plan.id, 4);
    await setRow("subscriptions", overdue.id, { current_period_end: now - HOUR });
    await setRow("subscriptions", soon.id, { current_period_end: now + 2 * HOUR });
    await setRow("subscriptions", later.id, { current_period_end: now + 3 * DAY });
    await setRow("subscriptions", canceled.id, { status: "canceled", current_period_end: now - HOUR });
    const r = await api("GET", "/api/v1/subscriptions/pending-renewals/count", { as: "viewer" });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ count: before.count + 2, overdue: before.overdue + 1, dueWithin24h: before.dueWithin24h + 1 });
  });
});

describe("subscription monitoring: access", () => {
  it.each(["/stats/active", "/ending-soon", "/stats/trial-conversion", "/health", "/pending-renewals/count"])("%s needs a token; every read role may call it", async (path) => {
    expect((await api("GET", `/api/v1/subscriptions${path}`, { as: null })).status).toBe(401);
    for (const as of ["viewer", "support", "finance", "admin"] as const) expect((await api("GET", `/api/v1/subscriptions${path}`, { as })).status).toBe(200);
  });
});
