import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";

import { CRON, cronServices, cronTasks } from "../../src/scheduled";
import { dropSettingsCache } from "../../src/platform/settings";
import { unique, api, attemptPayment } from "../helpers";

// Payment retries and "uncollectible" move a test clock's invoices only when their clock moves, live ones only in real time.

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const T = (s: string) => new Date(s).toISOString();

/** Messages sent to the payments queue, kept out of the real queue so the test decides when attempts run. */
let sent: { body: any; delaySeconds?: number }[] = [];
const spyQueue = {
  send: async (body: unknown, opts?: { delaySeconds?: number }) => void sent.push({ body, ...(opts?.delaySeconds !== undefined ? { delaySeconds: opts.delaySeconds } : {}) }),
  sendBatch: async (msgs: { body: unknown }[]) => void sent.push(...msgs.map((m) => ({ body: m.body }))),
} as unknown as Queue;
const testEnv = () => ({ ...env, PAYMENT_QUEUE: spyQueue }) as Env;
const attemptsFor = (invoiceId: string) => sent.filter((m) => m.body.type === "payment.attempt" && m.body.invoiceId === invoiceId).map((m) => m.body.attempt);

const call = (method: string, path: string, body?: unknown) => api(method, path, { body, env: testEnv() });

const deliver = async (invoiceId: string, attempt: number) => void (await attemptPayment(invoiceId, attempt, { env: testEnv() }));

/** Runs one task of a cron trigger, as the scheduled handler would at `scheduledTime` (without the trigger's other jobs). */
async function cron(expression: string, task: string, scheduledTime: number) {
  const t = cronTasks[expression]!.find((x) => x.name === task);
  expect(t, task).toBeDefined();
  await t!.run(cronServices(testEnv(), expression, task, scheduledTime), scheduledTime);
}

async function advance(clockId: string, time: string) {
  const r = await call("POST", `/api/v1/test-clocks/${clockId}/advance`, { frozenTime: time });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
}

/** A declining card on a flat 10.00 plan (on `testClockId` when given): its open first invoice. */
async function decliningSubscription(testClockId?: string) {
  const customer = await call("POST", "/api/v1/customers", { email: `${unique("d")}@example.com`, currency: "USD", ...(testClockId ? { testClockId } : {}) });
  expect(customer.status).toBe(201);
  const plan = await call("POST", "/api/v1/plans", { name: "Dunning", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "10.00" }] });
  const sub = await call("POST", "/api/v1/subscriptions", { customerId: customer.body.id, planId: plan.body.id, paymentMethod: "pm_card_chargeDeclined" });
  expect(sub.status, JSON.stringify(sub.body)).toBe(201);
  const invoice = (await call("GET", `/api/v1/invoices?subscriptionId=${sub.body.id}`)).body.data[0];
  expect(invoice.status).toBe("open");
  return { sub: sub.body, invoice };
}
const invoiceOf = async (id: string) => (await call("GET", `/api/v1/invoices/${id}`)).body;
const subscriptionOf = async (id: string) => (await call("GET", `/api/v1/subscriptions/${id}`)).body;
const latestPayment = async (invoiceId: string) => (await call("GET", `/api/v1/payments?invoiceId=${invoiceId}&limit=1`)).body.data[0];

/** Two attempts `initialDelay` seconds apart, uncollectible 3 days after the last. */
async function retryConfig(initialDelay: number) {
  const cfg = await call("PUT", "/api/v1/payments/retry-config", { maxAttempts: 2, backoffMultiplier: 1, initialDelay, gracePeriodDays: 3 });
  expect(cfg.status).toBe(200);
}

beforeAll(async () => {
  await env.DB.prepare("DELETE FROM settings WHERE key = 'payments.retry'").run();
  dropSettingsCache();
});
beforeEach(() => {
  sent = [];
});

describe("dunning on a test clock", () => {
  it("retries and gives up in the clock's time, when the clock is advanced, never by the real-time cron", async () => {
    await retryConfig(3600); // short enough for a delayed queue message, which would move the invoice in real time
    const clock = await call("POST", "/api/v1/test-clocks", { frozenTime: "2021-01-15T12:00:00Z", name: "dunning" });
    expect(clock.status).toBe(201);
    const { sub, invoice } = await decliningSubscription(clock.body.id);
    expect(attemptsFor(invoice.id)).toEqual([1]);
    sent = [];
    await deliver(invoice.id, 1);
    // The decline is dated in the clock's time, and its retry waits for the clock (no real-time queue delay).
    expect(await latestPayment(invoice.id)).toMatchObject({ attempt: 1, status: "failed", nextRetryAt: T("2021-01-15T13:00:00Z") });
    expect(attemptsFor(invoice.id)).toEqual([]);

    // Real time is years past the retry date: the hourly cron still leaves the clock's invoice alone.
    await cron(CRON.hourly, "payments.retries_due", Date.now() + 10 * DAY);
    expect(attemptsFor(invoice.id)).toEqual([]);
    await advance(clock.body.id, "2021-01-15T12:59:00Z");
    expect(attemptsFor(invoice.id)).toEqual([]);
    await advance(clock.body.id, "2021-01-15T13:00:00Z");
    expect(attemptsFor(invoice.id)).toEqual([2]);
    // Moving on does not send it again.
    await advance(clock.body.id, "2021-01-15T14:00:00Z");
    expect(attemptsFor(invoice.id)).toEqual([2]);

    await deliver(invoice.id, 2);
    expect(await subscriptionOf(sub.id)).toMatchObject({ status: "past_due" });
    expect(await invoiceOf(invoice.id)).toMatchObject({ status: "open", attemptCount: 2 });

    // Collection gave up at 14:00 clock time; the daily cron, however late in real time, does not mark it.
    await cron(CRON.daily, "invoices.uncollectible", Date.now() + 400 * DAY);
    expect((await invoiceOf(invoice.id)).status).toBe("open");
    await advance(clock.body.id, "2021-01-18T13:59:00Z");
    expect((await invoiceOf(invoice.id)).status).toBe("open");
    await advance(clock.body.id, "2021-01-18T14:00:00Z");
    expect((await invoiceOf(invoice.id)).status).toBe("uncollectible");
    const audit = await env.DB.prepare("SELECT at FROM audit_log WHERE action = 'invoice.marked_uncollectible' AND target_id = ?").bind(invoice.id).all<{ at: number }>();
    expect(audit.results.map((r) => T(new Date(r.at).toISOString()))).toEqual([T("2021-01-18T14:00:00Z")]);
  });
});

describe("live dunning", () => {
  it("retries and gives up in real time through the cron", async () => {
    await retryConfig(86_400); // beyond a queue message's 12 h delay: the cron sends it
    const { sub, invoice } = await decliningSubscription();
    sent = [];
    const failedAt = Date.now();
    await deliver(invoice.id, 1);
    const p = await latestPayment(invoice.id);
    expect(Date.parse(p.nextRetryAt) - failedAt).toBeGreaterThanOrEqual(DAY - 60_000);
    await cron(CRON.hourly, "payments.retries_due", failedAt + 2 * HOUR);
    expect(attemptsFor(invoice.id)).toEqual([]);
    await cron(CRON.hourly, "payments.retries_due", failedAt + DAY + HOUR);
    expect(attemptsFor(invoice.id)).toEqual([2]);

    await deliver(invoice.id, 2);
    expect(await subscriptionOf(sub.id)).toMatchObject({ status: "past_due" });
    await cron(CRON.daily, "invoices.uncollectible", Date.now() + 2 * DAY);
    expect((await invoiceOf(invoice.id)).status).toBe("open");
    await cron(CRON.daily, "invoices.uncollectible", Date.now() + 3 * DAY + HOUR);
    expect((await invoiceOf(invoice.id)).status).toBe("uncollectible");
  });
});

describe("the daily uncollectible task at any size", () => {
  it("marks at most its share per invocation and goes on from its cursor in a fresh task message until none is left", async () => {
    const { markUncollectible } = await import("../../src/modules/payments/dunning");
    await retryConfig(86_400);
    const due: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { sub, invoice } = await decliningSubscription();
      await deliver(invoice.id, 1);
      await deliver(invoice.id, 2);
      expect(await subscriptionOf(sub.id)).toMatchObject({ status: "past_due" });
      due.push(invoice.id);
    }
    const later = Date.now() + 30 * DAY;
    const s = cronServices(testEnv(), CRON.daily, "invoices.uncollectible", later);
    // Two per invocation: the first call stops with a cursor, the next goes on after it.
    const first = await markUncollectible(s.db, s.audit, { testClockId: null }, { max: 2 });
    expect(first.marked).toHaveLength(2);
    expect(first.next).not.toBeNull();
    const rest = await markUncollectible(s.db, s.audit, { testClockId: null }, { after: first.next, max: 2 });
    expect([...first.marked, ...rest.marked].filter((id) => due.includes(id)).sort()).toEqual([...due].sort());
    for (const id of due) expect((await invoiceOf(id)).status).toBe("uncollectible");
  });

  it("a paged cron task's continuation carries its cursor in the next cron.task message", async () => {
    const { runCronTask } = await import("../../src/scheduled");
    const sentTasks: any[] = [];
    const e = { ...testEnv(), TASK_QUEUE: { send: async (b: unknown) => void sentTasks.push(b), sendBatch: async () => undefined } } as unknown as Env;
    const probe = { name: "test.paged", run: async (_s: unknown, _t: number, after?: string | null) => (after ? { done: true } : { continueAfter: "inv_cursor" }) };
    cronTasks[CRON.daily]!.push(probe);
    try {
      await runCronTask(e, CRON.daily, "test.paged", 1_700_000_000_000);
      expect(sentTasks).toEqual([{ type: "cron.task", cron: CRON.daily, task: "test.paged", scheduledTime: 1_700_000_000_000, after: "inv_cursor", step: 1 }]);
      await runCronTask(e, CRON.daily, "test.paged", 1_700_000_000_000, "inv_cursor");
      expect(sentTasks).toHaveLength(1); // done: no further message
    } finally {
      cronTasks[CRON.daily]!.splice(cronTasks[CRON.daily]!.indexOf(probe), 1);
    }
  });
});
