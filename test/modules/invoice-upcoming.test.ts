import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { CRON, cronServices, cronTasks } from "../../src/scheduled";
import { advance, api, clockAt, createCustomer, createPlan } from "../helpers";
import { cloneSubscriptions, drainTasks, invocationLog, recordingEnv, runScheduled } from "../scale";
import { UPCOMING_PAGE } from "../../src/modules/subscriptions/upcoming";

const DAY = 86_400_000;
const upcomingTask = cronTasks[CRON.hourly]!.find((t) => t.name === "invoices.upcoming")!;
const runUpcoming = (t: number) => upcomingTask.run(cronServices(env, CRON.hourly, upcomingTask.name, t), t);
const upcomingOf = async (customerId: string) => (await api("GET", `/api/v1/events?customerId=${customerId}&type=invoice.upcoming&limit=100`)).body.data as any[];

describe("invoice.upcoming", () => {
  it("is emitted once per period, 7 days before the renewal, with the renewal invoice's lines and totals", async () => {
    const customer = await createCustomer();
    const plan = await createPlan();
    const sub = (await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id } })).body;
    const renewsAt = Date.parse(sub.currentPeriodEnd);
    const usage = await api("POST", "/api/v1/usage", { body: { subscriptionId: sub.id, meterId: "api_calls", quantity: 2000, eventId: `e_${sub.id}` } });
    expect(usage.status).toBe(202);

    await runUpcoming(renewsAt - 8 * DAY);
    expect(await upcomingOf(customer.id)).toEqual([]);
    await runUpcoming(renewsAt - 6 * DAY);
    await runUpcoming(renewsAt - 5 * DAY);
    const events = await upcomingOf(customer.id);
    expect(events).toHaveLength(1);
    const object = events[0].data.object;
    expect(events[0].createdAt).toBe(new Date(renewsAt - 6 * DAY).toISOString());
    expect(object).toMatchObject({ object: "invoice", upcoming: true, subscriptionId: sub.id, customerId: customer.id, currency: "USD", renewsAt: sub.currentPeriodEnd });
    // The next period's fee in advance and this period's usage so far: 29.99 + 2000 × 0.001.
    expect(object.lines.map((l: any) => [l.kind, l.amount.amount])).toEqual([
      ["usage", "2.00"],
      ["flat", "29.99"],
    ]);
    expect(object.total).toEqual({ amount: "31.99", amountMinor: 3199 });
  });

  it("is emitted by a test clock advance for the clock's subscriptions, in the clock's time, once per renewal", async () => {
    const clock = await clockAt("2025-01-01T00:00:00Z", "upcoming");
    const customer = await createCustomer({ testClockId: clock });
    const plan = await createPlan({ prices: [{ type: "flat", amount: "10.00" }] });
    const sub = (await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id } })).body;
    await advance(clock, "2025-01-20T00:00:00Z");
    expect(await upcomingOf(customer.id)).toEqual([]);
    // One advance past two renewals: each renewal's event 7 days before it (Jan 25, Feb 22), stamped then.
    await advance(clock, "2025-03-10T00:00:00Z");
    const events = await upcomingOf(customer.id);
    expect(events.map((e) => [e.createdAt, e.data.object.renewsAt, e.livemode])).toEqual([
      ["2025-02-22T00:00:00.000Z", "2025-03-01T00:00:00.000Z", false],
      ["2025-01-25T00:00:00.000Z", "2025-02-01T00:00:00.000Z", false],
    ]);
    expect(events[0].data.object).toMatchObject({ subscriptionId: sub.id, total: { amountMinor: 1000 } });
    // Advancing again, and the real-time hourly task, add nothing.
    await advance(clock, "2025-03-11T00:00:00Z");
    await runUpcoming(Date.parse("2025-03-01T00:00:00Z") - 3 * DAY);
    expect(await upcomingOf(customer.id)).toHaveLength(2);
  });

  it("leaves out subscriptions that end at period end", async () => {
    const plan = await createPlan({ prices: [{ type: "flat", amount: "5.00" }] });
    const customer = await createCustomer();
    const sub = (await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id } })).body;
    expect((await api("POST", `/api/v1/subscriptions/${sub.id}/cancel`, { body: { cancelAtPeriodEnd: true, reason: "leaving" } })).status).toBe(200);
    await runUpcoming(Date.parse(sub.currentPeriodEnd) - DAY);
    expect(await upcomingOf(customer.id)).toEqual([]);
  });

  it("reaches more subscriptions than two pages from the hourly cron in bounded invocations through the tasks queue, each once", { timeout: 300_000 }, async () => {
    const now = Date.now();
    // Two full pages and a few more: the cron's page, a continuation after a full page, and a short last one.
    const n = UPCOMING_PAGE * 2 + 7;
    const { ids, customer } = await cloneSubscriptions(n, { periodStart: now - 27 * DAY, periodEnd: now + 3 * DAY });
    const rec = recordingEnv();
    const log = invocationLog();
    await runScheduled(rec.env, CRON.hourly, now);
    await drainTasks(rec);
    await runScheduled(rec.env, CRON.hourly, now + 3_600_000);
    await drainTasks(rec);
    const rows = await env.DB.prepare("SELECT object_id AS id FROM events WHERE type = 'invoice.upcoming' AND customer_id = ?").bind(customer.id).all<{ id: string }>();
    expect(rows.results.map((r) => r.id).sort()).toEqual(ids.map((id) => `upcoming_${id}_${now + 3 * DAY}`).sort());
    const lines = log();
    expect(lines.filter((l) => l.limitExceeded || l.error)).toEqual([]);
    // A page of UPCOMING_PAGE per task message (a handful of queries each), whatever N is.
    const tasks = lines.filter((l) => l.invocation.startsWith("queue billing-tasks ("));
    expect(tasks.length).toBeGreaterThanOrEqual(Math.ceil(n / UPCOMING_PAGE));
    expect(Math.max(...tasks.map((l) => l.d1Queries))).toBeLessThanOrEqual(250);
  });
});
