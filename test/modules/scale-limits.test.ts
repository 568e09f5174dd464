import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { CRON } from "../../src/scheduled";
import { recordHttpRequest } from "../../src/http/metrics";
import { api } from "../helpers";
import { cloneSubscriptions, deliver, drainTasks, fetchAs, invocationLog, recordingEnv, runScheduled } from "../scale";

// Each path of the month-start billing run, at an N that broke the old code, under the limit wrapper
// (LIMITS=enforce in the tests: an invocation past 1,000 D1 queries or 10,000 subrequests fails). Each test also
// asserts a per-invocation bound that does not grow with N.
const DAY = 86_400_000;
afterEach(() => vi.restoreAllMocks());

const count = async (sql: string, ...args: unknown[]) => (await env.DB.prepare(sql).bind(...args).first<{ n: number }>())!.n;
const maxOf = (lines: { d1Queries: number; subrequests: number }[]) => ({
  d1Queries: Math.max(0, ...lines.map((l) => l.d1Queries)),
  subrequests: Math.max(0, ...lines.map((l) => l.subrequests)),
});

describe("what an invocation's measurement counts", () => {
  it("its own work: other requests' HTTP metrics, pending since long ago, do not ride along", async () => {
    // Series as earlier files' requests leave them (requests without an execution context never flush), and a last
    // flush long ago: the first request with a context would write them all in its own invocation.
    for (let i = 0; i < 20; i++) recordHttpRequest("GET", `/backlog/${i}`, 200, 0.01);
    const later = Date.now() + 60_000;
    vi.spyOn(Date, "now").mockReturnValue(later);
    const log = invocationLog();
    expect((await fetchAs(env, "GET", "/health/live")).status).toBe(200);
    const line = log().find((l) => l.invocation === "GET /health/live");
    expect(line).toBeDefined();
    expect(line!.d1Queries).toBe(0);
  });
});

describe("POST /api/v1/invoices/generate-pending with 1,000 due", () => {
  it("queues every due subscription exactly once, in invocations whose cost does not grow with N", { timeout: 120_000 }, async () => {
    const now = Date.now();
    const { ids } = await cloneSubscriptions(1000, { periodStart: now - 31 * DAY, periodEnd: now - 2 * 3_600_000 });
    const rec = recordingEnv();
    const log = invocationLog();
    const r = await fetchAs(rec.env, "POST", "/api/v1/invoices/generate-pending");
    expect(r.status).toBe(200);
    expect(r.body.errors).toEqual([]);
    await drainTasks(rec);
    const queued = rec.take("jobs").filter((m) => m.type === "billing.run_due").map((m) => m.subscriptionId as string);
    // Every clone exactly once (other tests' subscriptions in this file may be due too).
    const mine = queued.filter((id) => id.startsWith(ids[0]!.slice(0, -7)));
    expect(mine.sort()).toEqual(ids);
    expect(new Set(queued).size).toBe(queued.length);
    const lines = log();
    expect(lines.find((l) => l.invocation === "POST /api/v1/invoices/generate-pending")).toBeDefined();
    expect(lines.filter((l) => l.limitExceeded)).toEqual([]);
    // A few page reads and sendBatch calls, whatever N is.
    expect(maxOf(lines).d1Queries).toBeLessThanOrEqual(20);
    expect(maxOf(lines).subrequests).toBeLessThanOrEqual(60);
  });
});

/** `n` draft invoices of one subscription, as an interrupted run leaves them. */
async function cloneDrafts(n: number, subscriptionId: string, customerId: string, now: number) {
  const prefix = `inv_scale_${Date.now().toString(36)}`;
  await env.DB.prepare(
    `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
     INSERT INTO invoices (id, customer_id, subscription_id, status, billing_reason, currency, period_start, period_end, subtotal, discount, tax, total, amount_due, generation_key, created_at, updated_at)
     SELECT printf('%s_%06d', ?2, i), ?3, ?4, 'draft', 'subscription_cycle', 'USD', ?5, ?5, 1000, 0, 0, 1000, 1000, printf('%s:%d', ?2, i), ?5, ?5 FROM n`,
  )
    .bind(n, prefix, customerId, subscriptionId, now)
    .run();
  return prefix;
}

describe("the hourly cron at large N", () => {
  it("runs each task in its own invocation, pages due subscriptions and drafts, and stays bounded", { timeout: 300_000 }, async () => {
    const now = Date.now();
    const { ids, customer } = await cloneSubscriptions(6000, { periodStart: now - 31 * DAY, periodEnd: now - 2 * 3_600_000 });
    const drafts = await cloneDrafts(150, ids[0]!, customer.id, now - DAY);
    const rec = recordingEnv();
    const log = invocationLog();
    await runScheduled(rec.env, CRON.hourly, now);
    const tasks = await drainTasks(rec);
    expect(tasks).toBeGreaterThan(8);
    const queued = rec.take("jobs").filter((m) => m.type === "billing.run_due").map((m) => m.subscriptionId as string);
    const mine = new Set(ids);
    expect(queued.filter((id) => mine.has(id)).sort()).toEqual(ids);
    expect(new Set(queued).size).toBe(queued.length);
    expect(await count("SELECT count(*) AS n FROM invoices WHERE id LIKE ? AND status = 'draft'", `${drafts}%`)).toBe(0);
    expect(rec.take("payments").filter((m) => m.type === "payment.attempt")).toHaveLength(150);
    const lines = log();
    expect(lines.filter((l) => l.limitExceeded || l.error)).toEqual([]);
    expect(lines.find((l) => l.invocation === `cron ${CRON.hourly}`)).toMatchObject({ d1Queries: 0, subrequests: 1 });
    // The heaviest invocation is a page of 25 drafts; nothing scales with the 6,000 subscriptions or 150 drafts.
    expect(maxOf(lines).d1Queries).toBeLessThanOrEqual(500);
    expect(maxOf(lines).subrequests).toBeLessThanOrEqual(100);
  });
});

/**
 * One advance of a clock holding `n` subscriptions whose period ends are spread over the month, drained through the
 * tasks queue; asserts the advance's behaviour and returns the per-invocation D1 query counts.
 */
async function advanceClockOf(n: number) {
  const t0 = Date.UTC(2025, 0, 1);
  const clock = (await api("POST", "/api/v1/test-clocks", { body: { frozenTime: new Date(t0).toISOString() } })).body;
  const start = t0 - 20 * DAY;
  // Period ends spread over the month so the advance has an order to keep.
  const { ids, customer } = await cloneSubscriptions(n, { testClockId: clock.id, periodStart: start, periodEnd: t0 + 5 * DAY });
  await env.DB.prepare("UPDATE subscriptions SET current_period_end = current_period_end + (CAST(substr(id, -6) AS INTEGER) * 3600000), billing_anchor = current_period_end + (CAST(substr(id, -6) AS INTEGER) * 3600000) WHERE test_clock_id = ?").bind(clock.id).run();
  const target = t0 + 25 * DAY;
  const rec = recordingEnv();
  const log = invocationLog();
  const r = await fetchAs(rec.env, "POST", `/api/v1/test-clocks/${clock.id}/advance`, { frozenTime: new Date(target).toISOString() });
  expect(r.status).toBe(200);
  // A share is done; the clock shows it is advancing and its time is not past the first unbilled period end.
  expect(r.body.status).toBe("advancing");
  // Progress: renewals, or first (in time order) the invoice.upcoming of the renewals within 7 days.
  const upcoming = () => count("SELECT count(*) AS n FROM events WHERE customer_id = ? AND type = 'invoice.upcoming'", customer.id);
  expect(r.body.steps.length + (await upcoming())).toBeGreaterThan(0);
  const unbilled = await env.DB.prepare("SELECT min(current_period_end) AS t FROM subscriptions WHERE test_clock_id = ? AND current_period_end < ? AND status != 'canceled'").bind(clock.id, t0 + 30 * DAY - 1).first<{ t: number }>();
  expect(Date.parse(r.body.frozenTime)).toBeLessThanOrEqual(unbilled!.t);
  expect(Date.parse(r.body.frozenTime)).toBeLessThan(target);
  await drainTasks(rec);
  const after = (await api("GET", `/api/v1/test-clocks/${clock.id}`)).body;
  expect(after).toMatchObject({ status: "ready", frozenTime: new Date(target).toISOString() });
  // Every subscription billed exactly once for its period end, in one invoice each.
  expect(await count("SELECT count(DISTINCT subscription_id) AS n FROM invoices WHERE test_clock_id = ? AND billing_reason = 'subscription_cycle'", clock.id)).toBe(ids.length);
  expect(await count("SELECT count(*) AS n FROM invoices WHERE test_clock_id = ? AND billing_reason = 'subscription_cycle'", clock.id)).toBe(ids.length);
  expect(await count("SELECT count(*) AS n FROM subscriptions WHERE test_clock_id = ? AND status != 'canceled' AND current_period_end <= ?", clock.id, target)).toBe(0);
  // Each renewal passed had its invoice.upcoming once (the next ones, after the target, not yet).
  expect(await upcoming()).toBe(ids.length);
  const lines = log();
  vi.restoreAllMocks();
  expect(lines.filter((l) => l.limitExceeded || l.error)).toEqual([]);
  const queries = lines.map((l) => l.d1Queries);
  return { invocations: lines.length, max: Math.max(...queries), perSubscription: queries.reduce((a, b) => a + b, 0) / n };
}

describe("one test-clock advance, at two sizes", () => {
  it("advances step by step through the queue: bounded invocations, never past unbilled work, ready when all are billed; doubling N changes neither the heaviest invocation nor the cost per subscription", { timeout: 600_000 }, async () => {
    // Both sizes take a share in the request and continuations on the tasks queue (about 20 renewals a share). The
    // old walk cost about 2N² queries in one invocation: past Cloudflare's 1,000 at either size.
    const small = await advanceClockOf(40);
    const large = await advanceClockOf(80);
    expect(small.invocations).toBeGreaterThanOrEqual(3);
    expect(large.invocations).toBeGreaterThan(small.invocations);
    // The heaviest invocation is one budgeted share (BUDGET plus one unit) whatever N is: not higher at 2N than at N
    // beyond two renewals' worth (~30 queries each), and far inside the limit.
    expect(large.max).toBeLessThanOrEqual(900);
    expect(large.max).toBeLessThanOrEqual(small.max + 60);
    // O(N) in all: a few dozen queries per subscription, and not more per subscription at 2N than at N.
    expect(small.perSubscription).toBeLessThan(40);
    expect(large.perSubscription).toBeLessThan(40);
    expect(large.perSubscription).toBeLessThanOrEqual(small.perSubscription * 1.1);
  });
});

describe("queue consumers", () => {
  it("a jobs batch of 20 renewals and a payments batch of 25 charges (wrangler.toml's batch sizes) stay inside the limits", { timeout: 120_000 }, async () => {
    const now = Date.now();
    const { ids } = await cloneSubscriptions(25, { periodStart: now - 31 * DAY, periodEnd: now - 2 * 3_600_000 });
    const rec = recordingEnv();
    const log = invocationLog();
    await deliver(rec.env, "billing-jobs", ids.slice(0, 20).map((subscriptionId) => ({ type: "billing.run_due", subscriptionId })));
    await deliver(rec.env, "billing-jobs", ids.slice(20).map((subscriptionId) => ({ type: "billing.run_due", subscriptionId })));
    const charges = rec.take("payments").filter((m) => m.type === "payment.attempt");
    expect(charges).toHaveLength(25);
    // One step each, none left due: no continuation messages (a full batch's one-step share is not "more to do").
    expect(rec.take("jobs").filter((m) => m.type === "billing.run_due")).toEqual([]);
    await deliver(rec.env, "billing-payments", charges);
    expect(await count(`SELECT count(*) AS n FROM invoices WHERE subscription_id IN (${ids.map(() => "?").join(",")}) AND status = 'paid'`, ...ids)).toBe(25);
    // Exactly one charge each, although the batch's charges ran concurrently under one shared lease.
    expect(await count(`SELECT count(*) AS n FROM payments p JOIN invoices i ON i.id = p.invoice_id WHERE i.subscription_id IN (${ids.map(() => "?").join(",")}) AND p.status = 'succeeded'`, ...ids)).toBe(25);
    const lines = log();
    const jobs = lines.filter((l) => l.invocation.startsWith("queue billing-jobs ("));
    const payments = lines.filter((l) => l.invocation.startsWith("queue billing-payments ("));
    expect(jobs).toHaveLength(2);
    expect(payments).toHaveLength(1);
    expect(maxOf(jobs).d1Queries).toBeLessThanOrEqual(20 * 30);
    expect(maxOf(payments).d1Queries).toBeLessThanOrEqual(25 * 30);
  });

  it("a jobs batch of 20 subscriptions each several periods behind shares one step budget and continues the rest in fresh messages", { timeout: 120_000 }, async () => {
    const now = Date.now();
    // Two monthly periods behind: two renewal steps each, so every message of the full batch continues once.
    const { ids } = await cloneSubscriptions(20, { periodStart: now - 2 * 31 * DAY, periodEnd: now - 31 * DAY });
    const rec = recordingEnv();
    const log = invocationLog();
    let batch = ids.map((subscriptionId) => ({ type: "billing.run_due", subscriptionId }));
    let rounds = 0;
    while (batch.length) {
      if (++rounds > 20) throw new Error("renewals did not converge");
      await deliver(rec.env, "billing-jobs", batch);
      batch = rec.take("jobs").filter((m) => m.type === "billing.run_due");
      rec.take("payments");
    }
    const invoices = await count(`SELECT count(*) AS n FROM invoices WHERE subscription_id IN (${ids.map(() => "?").join(",")})`, ...ids);
    expect(invoices).toBeGreaterThanOrEqual(20 * 2);
    const jobs = log().filter((l) => l.invocation.startsWith("queue billing-jobs ("));
    expect(jobs.every((l) => !l.limitExceeded)).toBe(true);
    expect(maxOf(jobs).d1Queries).toBeLessThanOrEqual(1_000);
  });
});
