import { describe, expect, it, vi } from "vitest";
import { env, exports } from "cloudflare:workers";
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import entry from "../../src/index";
import { SYSTEM_ACTOR } from "../../src/platform/actor";
import { sendReminders } from "../../src/modules/invoices/reminders";
import type { Role } from "../../src/http/auth";
import { notificationEventCount, api, createCustomer, createPlan, createSubscription, runCron as runCronTasks, tokenFor, servicesOf } from "../helpers";

const worker: Required<Pick<ExportedHandler<Env>, "fetch" | "queue" | "scheduled">> = entry;

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const isoAt = (ms: number) => new Date(ms).toISOString();
const utcDay = (ms: number) => isoAt(ms).slice(0, 10);

let flatPlan: Promise<any> | undefined;
const plan = () => (flatPlan ??= createPlan({ name: "Ops flat", prices: [{ type: "flat", amount: "10.00" }] }));

/** An active subscription on a flat 10.00 plan and its finalized, open first invoice. */
async function openInvoice(overrides: Record<string, unknown> = {}) {
  const sub = await createSubscription({ planId: (await plan()).id, ...overrides });
  const list = await api("GET", `/api/v1/invoices?subscriptionId=${sub.id}`);
  expect(list.body.data).toHaveLength(1);
  return { sub, invoice: list.body.data[0] };
}

/** One after another: concurrent creations contend for the audit chain's next sequence number. */
async function openInvoices(n: number) {
  const out = [];
  for (let i = 0; i < n; i++) out.push(await openInvoice());
  return out;
}

/** UPDATE invoices SET <cols> WHERE id = ? (column names as in SQL). */
const setRow = (table: "invoices" | "subscriptions", id: string, cols: Record<string, unknown>) =>
  env.DB.prepare(`UPDATE ${table} SET ${Object.keys(cols).map((k) => `${k} = ?`).join(", ")} WHERE id = ?`)
    .bind(...Object.values(cols), id)
    .run();
const invoiceRow = (id: string) => env.DB.prepare("SELECT * FROM invoices WHERE id = ?").bind(id).first<Record<string, any>>();
const auditCount = (action: string, targetId: string) =>
  env.DB.prepare("SELECT count(*) AS n FROM audit_log WHERE action = ? AND target_id = ?").bind(action, targetId).first<{ n: number }>().then((r) => r!.n);

/** Calls the worker with some bindings replaced (queue spies). */
async function callWith(patch: Partial<Env>, method: string, path: string, body: unknown, role: Role = "finance") {
  const ctx = createExecutionContext();
  const res = await worker.fetch(
    new Request(`http://localhost${path}`, { method, headers: { authorization: `Bearer ${await tokenFor(role)}`, "content-type": "application/json" }, body: JSON.stringify(body) }),
    { ...env, ...patch } as Env,
    ctx,
  );
  await waitOnExecutionContext(ctx);
  return { status: res.status, body: (await res.json()) as any };
}

const spyQueue = () => {
  const send = vi.fn(async (_m: unknown) => undefined);
  // sendBatch records each message as a send, so assertions see every message however it was sent.
  const sendBatch = async (msgs: { body: unknown }[]) => {
    for (const m of msgs) await send(m.body);
  };
  return { send, queue: { send, sendBatch } as unknown as Queue };
};
const sent = (send: ReturnType<typeof spyQueue>["send"]) => send.mock.calls.map((c) => c[0]);

describe("POST /api/v1/invoices/retry-failed", () => {
  it("re-queues failed collections in range below maxRetries, skips the rest and finalizes leftover drafts", async () => {
    const mar = (d: number, h = 12) => Date.UTC(2020, 2, d, h);
    const [a, b, c, d, e, f, g, h] = await openInvoices(8);
    await setRow("invoices", a!.invoice.id, { attempt_count: 1, last_error: "card_declined", finalized_at: mar(10) });
    await setRow("invoices", b!.invoice.id, { attempt_count: 0, last_error: "network", finalized_at: mar(31, 23) }); // end date includes its whole day
    await setRow("invoices", c!.invoice.id, { attempt_count: 3, last_error: "card_declined", finalized_at: mar(15) });
    await setRow("invoices", d!.invoice.id, { attempt_count: 1, finalized_at: Date.UTC(2020, 3, 1) }); // out of range
    await setRow("invoices", e!.invoice.id, { finalized_at: mar(12) }); // open, never failed
    await setRow("invoices", f!.invoice.id, { status: "draft", number: null, finalized_at: null, due_at: null, created_at: mar(20) });
    await setRow("invoices", g!.invoice.id, { status: "paid", amount_due: 0, attempt_count: 2, finalized_at: mar(11) });
    // A test clock's failed collection moves with its clock, not with this real-time operation.
    const clock = await api("POST", "/api/v1/test-clocks", { body: { frozenTime: "2020-03-10T12:00:00Z" } });
    await setRow("invoices", h!.invoice.id, { attempt_count: 1, last_error: "card_declined", finalized_at: mar(10), test_clock_id: clock.body.id });

    const { send, queue } = spyQueue();
    const r = await callWith({ PAYMENT_QUEUE: queue }, "POST", "/api/v1/invoices/retry-failed", { startDate: "2020-03-01", endDate: "2020-03-31", maxRetries: 3 });
    expect(r.status).toBe(200);
    expect(r.body.paymentRetries.count).toBe(2);
    expect([...r.body.paymentRetries.invoiceIds].sort()).toEqual([a!.invoice.id, b!.invoice.id].sort());
    expect(r.body.skipped).toEqual({ count: 1, invoiceIds: [c!.invoice.id] });
    expect(r.body.finalized).toEqual({ count: 1, invoiceIds: [f!.invoice.id] });
    expect(r.body.regenerated).toEqual({ count: 0, subscriptionIds: [], invoiceIds: [] });
    expect(r.body.errors).toEqual([]);

    // The retries carry the next attempt number; the finalized draft gets its first attempt.
    expect(sent(send)).toHaveLength(3);
    expect(sent(send)).toEqual(
      expect.arrayContaining([
        { type: "payment.attempt", invoiceId: a!.invoice.id, attempt: 2 },
        { type: "payment.attempt", invoiceId: b!.invoice.id, attempt: 1 },
        { type: "payment.attempt", invoiceId: f!.invoice.id, attempt: 1 },
      ]),
    );
    expect(await auditCount("invoice.retry_requested", a!.invoice.id)).toBe(1);
    expect(await auditCount("invoice.retry_requested", b!.invoice.id)).toBe(1);
    expect(await auditCount("invoice.retry_requested", c!.invoice.id)).toBe(0);
    const finalized = await invoiceRow(f!.invoice.id);
    expect(finalized).toMatchObject({ status: "open", number: expect.stringMatching(/^INV-\d{4}-\d{6}$/) });

    // A lower maxRetries moves a to the skipped list.
    const again = await callWith({ PAYMENT_QUEUE: spyQueue().queue }, "POST", "/api/v1/invoices/retry-failed", { startDate: "2020-03-01T00:00:00Z", endDate: "2020-03-31T23:59:59Z", maxRetries: 1 });
    expect(again.body.paymentRetries.invoiceIds).toEqual([b!.invoice.id]);
    expect([...again.body.skipped.invoiceIds].sort()).toEqual([a!.invoice.id, c!.invoice.id].sort());
    expect(again.body.finalized.count).toBe(0);
  });

  it("renews real-time subscriptions whose period ended in the range without being renewed", async () => {
    const now = Date.now();
    const { sub } = await openInvoice();
    const { sub: canceled } = await openInvoice();
    for (const s of [sub, canceled]) await setRow("subscriptions", s.id, { current_period_start: now - 30 * DAY, current_period_end: now - 2 * HOUR, billing_anchor: now - 2 * HOUR });
    await setRow("subscriptions", canceled.id, { status: "canceled" });

    const { send, queue } = spyQueue();
    const r = await callWith({ PAYMENT_QUEUE: queue }, "POST", "/api/v1/invoices/retry-failed", { startDate: isoAt(now - 3 * HOUR), endDate: isoAt(now - HOUR), maxRetries: 3 });
    expect(r.status).toBe(200);
    expect(r.body.regenerated.subscriptionIds).toEqual([sub.id]);
    expect(r.body.regenerated.invoiceIds).toHaveLength(1);
    const inv = await invoiceRow(r.body.regenerated.invoiceIds[0]);
    expect(inv).toMatchObject({ subscription_id: sub.id, billing_reason: "subscription_cycle", status: "open", subtotal: 1000 });
    expect(sent(send)).toEqual([{ type: "payment.attempt", invoiceId: inv!.id, attempt: 1 }]);
    const renewed = await env.DB.prepare("SELECT current_period_end FROM subscriptions WHERE id = ?").bind(sub.id).first<{ current_period_end: number }>();
    expect(renewed!.current_period_end).toBeGreaterThan(now);
    const untouched = await env.DB.prepare("SELECT current_period_end FROM subscriptions WHERE id = ?").bind(canceled.id).first<{ current_period_end: number }>();
    expect(untouched!.current_period_end).toBe(now - 2 * HOUR);
  });

  it("a run larger than one invocation's budget does a bounded share and continues from its cursor until every one is renewed", async () => {
    const { retryFailed } = await import("../../src/modules/subscriptions/retry-failed");
    const now = Date.now();
    const subs = [];
    for (let i = 0; i < 4; i++) subs.push((await openInvoice()).sub);
    // A window only these four are in: their periods ended a few minutes ago.
    const endedAt = now - 5 * 60_000 - Math.floor(Math.random() * 1000);
    for (const s of subs) await setRow("subscriptions", s.id, { current_period_start: endedAt - 30 * DAY, current_period_end: endedAt, billing_anchor: endedAt });
    const tasks: any[] = [];
    const { queue } = spyQueue();
    const s = servicesOf({}, { PAYMENT_QUEUE: queue, TASK_QUEUE: { send: async (b: unknown) => void tasks.push(b), sendBatch: async () => undefined } as unknown as Queue });
    const input = { start: endedAt, end: endedAt + 1, maxRetries: 3 };
    // A budget of 2 page reads and one renewal step (30) per invocation.
    const first = await retryFailed(s, input, 35);
    expect(first.continues).toBe(true);
    const renewed = [...first.regenerated.subscriptionIds];
    let invocations = 1;
    for (let m = tasks.shift(); m; m = tasks.shift()) {
      expect(m).toMatchObject({ type: "invoices.retry_failed", input, cursor: { phase: "renewals" } });
      if (++invocations > 10) throw new Error("the run does not converge");
      const r = await retryFailed(s.withNow(m.now), m.input, 35, m.cursor, m.step); // as the tasks consumer calls it
      renewed.push(...r.regenerated.subscriptionIds);
    }
    expect(renewed.sort()).toEqual(subs.map((x) => x.id).sort()); // each exactly once
    expect(invocations).toBeGreaterThanOrEqual(4);
  });

  it("validates the range and needs the finance role", async () => {
    const body = { startDate: "2020-03-10", endDate: "2020-03-01", maxRetries: 3 };
    expect((await api("POST", "/api/v1/invoices/retry-failed", { as: "finance", body })).status).toBe(422);
    const bad = await api("POST", "/api/v1/invoices/retry-failed", { body: { startDate: "June", endDate: "2020-03-01", maxRetries: 0 } });
    expect(bad.status).toBe(400);
    expect(bad.body.errors.map((e: any) => e.path)).toEqual(expect.arrayContaining(["startDate", "maxRetries"]));
    for (const as of ["viewer", "support"] as const) expect((await api("POST", "/api/v1/invoices/retry-failed", { as, body: { ...body, endDate: "2020-03-31" } })).status).toBe(403);
    expect((await api("POST", "/api/v1/invoices/retry-failed", { as: null, body })).status).toBe(401);
  });
});

describe("POST /api/v1/invoices/send-reminders", () => {
  it("queues one reminder per overdue open invoice per UTC day", async () => {
    const now = Date.now();
    const [overdue, recent, paid, voided] = await openInvoices(4);
    await setRow("invoices", overdue!.invoice.id, { due_at: now - 5 * DAY - HOUR });
    await setRow("invoices", recent!.invoice.id, { due_at: now - 12 * HOUR });
    await setRow("invoices", paid!.invoice.id, { due_at: now - 5 * DAY, status: "paid", amount_due: 0 });
    await setRow("invoices", voided!.invoice.id, { due_at: now - 5 * DAY, status: "void", amount_due: 0 });
    const customer = (await api("GET", `/api/v1/customers/${overdue!.sub.customerId}`)).body;

    const { send, queue } = spyQueue();
    const r = await callWith({ WEBHOOK_QUEUE: queue }, "POST", "/api/v1/invoices/send-reminders", { daysOverdue: 1, template: "payment-reminder" });
    expect(r.status).toBe(200);
    expect(r.body.invoiceIds).toContain(overdue!.invoice.id);
    for (const other of [recent, paid, voided]) expect(r.body.invoiceIds).not.toContain(other!.invoice.id);
    expect(r.body.queued).toBe(r.body.invoiceIds.length);

    const rows = await env.DB.prepare("SELECT * FROM notifications WHERE invoice_id = ?").bind(overdue!.invoice.id).all<Record<string, any>>();
    expect(rows.results).toHaveLength(1);
    const n = rows.results[0]!;
    expect(n).toMatchObject({ kind: "invoice.reminder", template: "payment-reminder", status: "queued", customer_id: overdue!.sub.customerId, dedupe_key: `reminder:${overdue!.invoice.id}:${utcDay(now)}`, sent_at: null });
    expect(JSON.parse(n.payload)).toMatchObject({
      invoiceNumber: overdue!.invoice.number,
      amountDue: overdue!.invoice.amountDue.amount,
      amountDueMinor: overdue!.invoice.amountDue.amountMinor,
      currency: "USD",
      daysOverdue: 5,
      customerEmail: customer.email,
    });
    expect(await notificationEventCount(n.id)).toBe(1);
    expect(await auditCount("invoice.reminder_queued", overdue!.invoice.id)).toBe(1);

    // Same day: nothing new for it.
    const second = spyQueue();
    const again = await callWith({ WEBHOOK_QUEUE: second.queue }, "POST", "/api/v1/invoices/send-reminders", { daysOverdue: 1, template: "payment-reminder" });
    expect(again.body.invoiceIds).not.toContain(overdue!.invoice.id);
    expect(again.body.alreadySentToday).toBeGreaterThanOrEqual(1);
    expect(await notificationEventCount(n.id)).toBe(1);
    expect((await env.DB.prepare("SELECT count(*) AS n FROM notifications WHERE invoice_id = ?").bind(overdue!.invoice.id).first<{ n: number }>())!.n).toBe(1);

    // The next UTC day it is reminded again.
    const tomorrow = spyQueue();
    const next = await sendReminders(servicesOf({ actor: SYSTEM_ACTOR, now: now + DAY }, { WEBHOOK_QUEUE: tomorrow.queue }), { daysOverdue: 1, template: "payment-reminder" });
    expect(next.invoiceIds).toContain(overdue!.invoice.id);
    expect(next.invoiceIds).toContain(recent!.invoice.id); // now 1.5 days overdue
    const keys = await env.DB.prepare("SELECT dedupe_key FROM notifications WHERE invoice_id = ? ORDER BY created_at").bind(overdue!.invoice.id).all<{ dedupe_key: string }>();
    expect(keys.results.map((k) => k.dedupe_key)).toEqual([`reminder:${overdue!.invoice.id}:${utcDay(now)}`, `reminder:${overdue!.invoice.id}:${utcDay(now + DAY)}`]);
  });

  it("validates the body and needs the finance role", async () => {
    expect((await api("POST", "/api/v1/invoices/send-reminders", { body: { daysOverdue: -1, template: "x" } })).status).toBe(400);
    expect((await api("POST", "/api/v1/invoices/send-reminders", { body: { daysOverdue: 1, template: "bad template!" } })).status).toBe(400);
    expect((await api("POST", "/api/v1/invoices/send-reminders", { as: "viewer", body: { daysOverdue: 1, template: "x" } })).status).toBe(403);
  });
});


describe("POST /admin/invoices/archive", () => {
  it("moves old final invoices to R2, removes their lines from D1, and GET still shows them", async () => {
    const now = Date.now();
    const old = now - 400 * DAY;
    const [paid, voided, openOld, paidNew] = await openInvoices(4);
    await setRow("invoices", paid!.invoice.id, { status: "paid", amount_paid: paid!.invoice.total.amountMinor, amount_due: 0, paid_at: old, created_at: old, finalized_at: old });
    await setRow("invoices", voided!.invoice.id, { status: "void", amount_due: 0, voided_at: old, created_at: old, finalized_at: old });
    await setRow("invoices", openOld!.invoice.id, { created_at: old, finalized_at: old });
    await setRow("invoices", paidNew!.invoice.id, { status: "paid", amount_due: 0, paid_at: now });
    const before = await api("GET", `/api/v1/invoices/${paid!.invoice.id}`, { as: "viewer" });
    expect(before.body.lines).toHaveLength(1);

    const r = await api("POST", "/admin/invoices/archive", { body: { olderThan: utcDay(now - 365 * DAY) } });
    expect(r.status).toBe(200);
    expect(r.body.invoiceIds).toEqual(expect.arrayContaining([paid!.invoice.id, voided!.invoice.id]));
    expect(r.body.invoiceIds).not.toContain(openOld!.invoice.id);
    expect(r.body.invoiceIds).not.toContain(paidNew!.invoice.id);
    expect(r.body.archived).toBe(r.body.invoiceIds.length);
    expect(r.body.hasMore).toBe(false);

    const key = `invoices/${new Date(old).getUTCFullYear()}/${paid!.invoice.id}.json`;
    const row = await invoiceRow(paid!.invoice.id);
    expect(row).toMatchObject({ archive_key: key, archived_at: expect.any(Number) });
    const obj = await env.ARCHIVE.get(key);
    expect(obj!.httpMetadata?.contentType).toBe("application/json");
    const doc = (await obj!.json()) as any;
    expect(doc).toMatchObject({ id: paid!.invoice.id, status: "paid", archived: true, lines: before.body.lines });
    const lines = await env.DB.prepare("SELECT count(*) AS n FROM invoice_lines WHERE invoice_id IN (?, ?)").bind(paid!.invoice.id, voided!.invoice.id).first<{ n: number }>();
    expect(lines!.n).toBe(0);
    expect(await auditCount("invoice.archived", paid!.invoice.id)).toBe(1);

    const after = await api("GET", `/api/v1/invoices/${paid!.invoice.id}`, { as: "viewer" });
    expect(after.status).toBe(200);
    expect(after.body).toEqual({ ...before.body, archived: true });

    const again = await api("POST", "/admin/invoices/archive", { body: { olderThan: utcDay(now - 365 * DAY) } });
    expect(again.body.invoiceIds).not.toContain(paid!.invoice.id);
  });

  it("is admin only and refuses a future date", async () => {
    expect((await api("POST", "/admin/invoices/archive", { as: "finance", body: { olderThan: "2020-01-01" } })).status).toBe(403);
    expect((await api("POST", "/admin/invoices/archive", { body: { olderThan: utcDay(Date.now() + 2 * DAY) } })).status).toBe(422);
    expect((await api("POST", "/admin/invoices/archive", { body: { olderThan: "last year" } })).status).toBe(422);
  });
});

describe("cron tasks", () => {
  const runCron = (cron: string, patch: Partial<Env>, scheduledTime = Date.now()) => runCronTasks(cron, { env: patch, scheduledTime });

  it("daily: reminds overdue invoices with the invoice_overdue template", async () => {
    const { invoice } = await openInvoice();
    await setRow("invoices", invoice.id, { due_at: Date.now() - 2 * DAY });
    const { send, queue } = spyQueue();
    await runCron("0 3 * * *", { WEBHOOK_QUEUE: queue });
    const n = await env.DB.prepare("SELECT id, template FROM notifications WHERE invoice_id = ?").bind(invoice.id).first<{ id: string; template: string }>();
    expect(n!.template).toBe("invoice_overdue");
    expect(await notificationEventCount(n!.id)).toBe(1);
  });

  it("weekly: archives final invoices older than a year", async () => {
    const { invoice } = await openInvoice();
    const old = Date.now() - 366 * DAY;
    await setRow("invoices", invoice.id, { status: "uncollectible", created_at: old, finalized_at: old });
    await runCron("0 4 * * 1", { JOB_QUEUE: spyQueue().queue });
    expect((await invoiceRow(invoice.id))!.archive_key).toBe(`invoices/${new Date(old).getUTCFullYear()}/${invoice.id}.json`);
  });
});

describe("invoices: void", () => {
  it("open → void; void again, paid → 409; viewer → 403; unknown → 404", async () => {
    const [a, b] = await openInvoices(2);
    expect((await api("POST", `/api/v1/invoices/${a!.invoice.id}/void`, { as: "viewer", body: { reason: "dup" } })).status).toBe(403);
    const r = await api("POST", `/api/v1/invoices/${a!.invoice.id}/void`, { as: "finance", body: { reason: "Duplicate charge" } });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ id: a!.invoice.id, status: "void", voidReason: "Duplicate charge", amountDue: { amount: "0.00", amountMinor: 0 }, voidedAt: expect.any(String) });
    expect(await auditCount("invoice.voided", a!.invoice.id)).toBe(1);
    const twice = await api("POST", `/api/v1/invoices/${a!.invoice.id}/void`, { as: "finance", body: { reason: "again" } });
    expect(twice.status).toBe(409);
    expect(twice.headers.get("content-type")).toBe("application/problem+json");
    await setRow("invoices", b!.invoice.id, { status: "paid", amount_due: 0 });
    expect((await api("POST", `/api/v1/invoices/${b!.invoice.id}/void`, { as: "finance", body: { reason: "x" } })).status).toBe(409);
    expect((await invoiceRow(b!.invoice.id))!.status).toBe("paid");
    expect((await api("POST", "/api/v1/invoices/inv_nope/void", { body: { reason: "x" } })).status).toBe(404);
  });

  it("gives back the customer credit the invoice spent, once, audited", async () => {
    const customer = await createCustomer();
    const grant = await api("POST", `/api/v1/customers/${customer.id}/credit-grants`, { as: "finance", body: { amount: "4.00", currency: "USD", category: "promotional" } });
    expect(grant.status).toBe(201);
    const { invoice } = await openInvoice({ customerId: customer.id });
    expect(invoice).toMatchObject({ status: "open", total: { amountMinor: 1000 }, creditApplied: { amountMinor: 400 }, amountDue: { amountMinor: 600 } });
    const balance = async () => (await api("GET", `/api/v1/customers/${customer.id}`)).body.creditBalance.amountMinor;
    expect(await balance()).toBe(0);

    const voided = await api("POST", `/api/v1/invoices/${invoice.id}/void`, { as: "finance", body: { reason: "wrong plan" } });
    expect(voided.status).toBe(200);
    expect(await balance()).toBe(400);
    const returned = await env.DB.prepare("SELECT actor, after FROM audit_log WHERE action = 'customer.credit_returned' AND target_id = ?").bind(customer.id).all<{ actor: string; after: string }>();
    expect(returned.results).toHaveLength(1);
    expect(JSON.parse(returned.results[0]!.after)).toMatchObject({ invoiceId: invoice.id, amountMinor: 400 });

    const again = await Promise.all([1, 2].map(() => api("POST", `/api/v1/invoices/${invoice.id}/void`, { as: "finance", body: { reason: "again" } })));
    expect(again.map((r) => r.status)).toEqual([409, 409]);
    expect(await balance()).toBe(400);
  });
});

describe("GET /api/v1/invoices", () => {
  it("filters by customer, subscription, status and creation time, and pages newest first", async () => {
    const customer = await createCustomer();
    const subs = [];
    for (let i = 0; i < 3; i++) subs.push((await openInvoice({ customerId: customer.id })).sub);
    const all = await api("GET", `/api/v1/invoices?customerId=${customer.id}`, { as: "viewer" });
    expect(all.body.data).toHaveLength(3);
    expect(all.body.data[0].lines).toBeUndefined();
    expect(all.body.data[0]).toMatchObject({ customerId: customer.id, status: "open", billingReason: "subscription_create", number: expect.stringMatching(/^INV-\d{4}-\d{6}$/), total: { amount: "10.00", amountMinor: 1000 } });
    const created = all.body.data.map((i: any) => Date.parse(i.createdAt));
    expect([...created].sort((x, y) => y - x)).toEqual(created);

    const p1 = await api("GET", `/api/v1/invoices?customerId=${customer.id}&limit=2`);
    expect(p1.body).toMatchObject({ hasMore: true, nextCursor: p1.body.data[1].id });
    const p2 = await api("GET", `/api/v1/invoices?customerId=${customer.id}&limit=2&startingAfter=${p1.body.nextCursor}`);
    expect(p2.body).toMatchObject({ hasMore: false, nextCursor: null });
    expect([...p1.body.data, ...p2.body.data].map((i: any) => i.id)).toEqual(all.body.data.map((i: any) => i.id));

    const bySub = await api("GET", `/api/v1/invoices?subscriptionId=${subs[1].id}`);
    expect(bySub.body.data.map((i: any) => i.subscriptionId)).toEqual([subs[1].id]);
    await api("POST", `/api/v1/invoices/${bySub.body.data[0].id}/void`, { body: { reason: "test" } });
    const voided = await api("GET", `/api/v1/invoices?customerId=${customer.id}&status=void`);
    expect(voided.body.data.map((i: any) => i.id)).toEqual([bySub.body.data[0].id]);
    expect((await api("GET", `/api/v1/invoices?customerId=${customer.id}&status=open`)).body.data).toHaveLength(2);
    const future = isoAt(Date.now() + DAY);
    expect((await api("GET", `/api/v1/invoices?customerId=${customer.id}&createdFrom=${future}`)).body.data).toHaveLength(0);
    expect((await api("GET", `/api/v1/invoices?customerId=${customer.id}&createdTo=${future}`)).body.data).toHaveLength(3);
    expect((await api("GET", "/api/v1/invoices?startingAfter=inv_nope")).status).toBe(400);
    expect((await api("GET", "/api/v1/invoices?status=bogus")).status).toBe(400);
  });

  it("GET /{id} has the lines; 404 for an unknown id", async () => {
    const { invoice } = await openInvoice();
    const r = await api("GET", `/api/v1/invoices/${invoice.id}`, { as: "viewer" });
    expect(r.body.lines).toEqual([expect.objectContaining({ kind: "flat", amount: { amount: "10.00", amountMinor: 1000 } })]);
    expect((await api("GET", "/api/v1/invoices/inv_nope")).status).toBe(404);
  });
});

describe("archive as the runbook's weekly script calls it", () => {
  it('accepts `-d \'{"olderThan": "1 year"}\'` without a Content-Type, and refuses a nonsense duration', async () => {
    const token = await tokenFor("admin");
    const send = (body: string) =>
      exports.default.fetch(new Request("http://localhost/admin/invoices/archive", { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/x-www-form-urlencoded" }, body }));
    const ok = await send('{"olderThan": "1 year"}');
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ hasMore: false });
    const bad = await send('{"olderThan": "a while"}');
    expect(bad.status).toBe(422);
    expect(((await bad.json()) as any).errors[0].path).toBe("olderThan");
  });
});
