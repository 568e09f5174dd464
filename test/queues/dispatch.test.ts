import { describe, expect, it, vi } from "vitest";
import { env } from "cloudflare:workers";
import { createExecutionContext, createMessageBatch, createScheduledController, getQueueResult, waitOnExecutionContext } from "cloudflare:test";
import entry from "../../src/index";

// The full ExportedHandler signature, so handlers are called exactly as the runtime calls them (with a ctx).
const worker: Required<Pick<ExportedHandler<Env>, "fetch" | "queue" | "scheduled">> = entry;
import { jobHandlers } from "../../queues/jobs";
import { backoffSeconds } from "../../queues/dispatch";
import { meterStub } from "../../src/modules/usage/meter-config";
import { createSubscription, notificationEventCount, servicesOf } from "../helpers";

let seq = 0;
const msg = (body: unknown, attempts = 1, id = `msg-${Date.now()}-${seq++}`) => ({ id, timestamp: new Date(), attempts, body });

/** Runs the worker's queue handler; `retryMessages` also reports the delay each retry asked for. */
async function runQueue(queue: string, messages: ReturnType<typeof msg>[], e: Env = env) {
  const batch = createMessageBatch(queue, messages);
  // getQueueResult() does not record retry delays: capture them on the way through.
  const delays = new Map<string, number | undefined>();
  for (const m of batch.messages) {
    const retry = m.retry.bind(m);
    m.retry = (options?: QueueRetryOptions) => {
      delays.set(m.id, options?.delaySeconds);
      retry(options);
    };
  }
  const ctx = createExecutionContext();
  await worker.queue(batch, e, ctx);
  const result = await getQueueResult(batch, ctx);
  return { ...result, retryMessages: result.retryMessages.map((r) => ({ msgId: r.msgId, delaySeconds: delays.get(r.msgId) })) };
}

async function runCron(cron: string, e: Env = env, scheduledTime = Date.now()) {
  // A trigger queues one message per task; they run here from the tasks queue, one message per invocation.
  const tasks: unknown[] = [];
  const taskQueue = {
    send: async (b: unknown) => void tasks.push(b),
    sendBatch: async (msgs: Iterable<{ body: unknown }>) => void tasks.push(...[...msgs].map((m) => m.body)),
  } as unknown as Queue;
  const withTasks = { ...e, TASK_QUEUE: taskQueue } as Env;
  const ctx = createExecutionContext();
  await worker.scheduled(createScheduledController({ scheduledTime, cron }), withTasks, ctx);
  await waitOnExecutionContext(ctx);
  const retried: unknown[] = [];
  for (let body = tasks.shift(); body !== undefined; body = tasks.shift()) {
    if ((await runQueue("billing-tasks", [msg(body)], withTasks)).retryMessages.length) retried.push(body);
  }
  return retried;
}

const deadLetters = (messageId: string) => env.DB.prepare("SELECT * FROM dead_letters WHERE message_id = ?").bind(messageId).all<Record<string, any>>();

describe("queue consumers", () => {
  it("a known job (idempotency.purge) runs and is acked", async () => {
    const now = Date.now();
    await env.DB.prepare(
      "INSERT INTO idempotency_keys (scoped_key, request_hash, state, locked_until, created_at, expires_at) VALUES ('queue:expired', ?, 'done', 0, 0, ?)",
    )
      .bind("a".repeat(64), now - 1000)
      .run();
    const m = msg({ type: "idempotency.purge" });
    const result = await runQueue("billing-jobs", [m]);
    expect(result.explicitAcks).toEqual([m.id]);
    expect(result.retryMessages).toEqual([]);
    expect(result.retryBatch.retry).toBe(false);
    expect(await env.DB.prepare("SELECT * FROM idempotency_keys WHERE scoped_key = 'queue:expired'").first()).toBeNull();
  });

  it("an unknown message type is retried with backoff (so it ends in the DLQ), not dropped", async () => {
    const known = msg({ type: "idempotency.purge" });
    const unknown = msg({ type: "no.such.job" }, 3);
    const noType = msg("just a string");
    const result = await runQueue("billing-jobs", [known, unknown, noType]);
    expect(result.explicitAcks).toEqual([known.id]);
    expect(result.retryMessages).toEqual([
      { msgId: unknown.id, delaySeconds: backoffSeconds(3) },
      { msgId: noType.id, delaySeconds: backoffSeconds(1) },
    ]);
    expect(result.ackAll).toBe(false);
  });

  it("a job whose handler throws is retried, the rest of the batch still runs", async () => {
    const failing = { ...env, ARCHIVE: { put: () => Promise.reject(new Error("r2 down")) } } as unknown as Env;
    const a = msg({ type: "audit.verify", reportKey: "reports/audit/fail.json" }, 2);
    const b = msg({ type: "idempotency.purge" });
    const result = await runQueue("billing-jobs", [a, b], failing);
    expect(result.retryMessages).toEqual([{ msgId: a.id, delaySeconds: backoffSeconds(2) }]);
    expect(result.explicitAcks).toEqual([b.id]);
  });

  it("backoff doubles and is capped at an hour", () => {
    expect([1, 2, 3, 4].map((n) => backoffSeconds(n))).toEqual([10, 20, 40, 80]);
    expect(backoffSeconds(30)).toBe(3600);
  });

  it("a payment attempt for an unknown invoice is acked as nothing to collect; a failing handler is retried", async () => {
    const p = msg({ type: "payment.attempt", invoiceId: "inv_does_not_exist", attempt: 1 });
    const payments = await runQueue("billing-payments", [p]);
    expect(payments.explicitAcks).toEqual([p.id]);
    const broken = { ...env, DB: { prepare() { throw new Error("D1 down"); } } as unknown as D1Database };
    const q = msg({ type: "payment.attempt", invoiceId: "inv_x", attempt: 1 }, 2);
    const failed = await runQueue("billing-payments", [q], broken);
    expect(failed.explicitAcks).toEqual([]);
    expect(failed.retryMessages).toEqual([{ msgId: q.id, delaySeconds: backoffSeconds(2) }]);
  });

  it("the DLQ consumer stores each dead letter once per message id and acks it", async () => {
    const a = msg({ type: "no.such.job", n: 1 }, 4);
    const b = msg({ type: "payment.attempt", invoiceId: "inv_9", attempt: 5 }, 6);
    const first = await runQueue("billing-dlq", [a, b]);
    expect(first.explicitAcks.sort()).toEqual([a.id, b.id].sort());

    const rows = (await deadLetters(a.id)).results;
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ id: expect.stringMatching(/^dlq_/), message_id: a.id, attempts: 4, replayed_at: null });
    expect(JSON.parse(rows[0]!.body)).toEqual({ type: "no.such.job", n: 1 });

    // Redelivered (at-least-once): acked again, still one row, the first copy kept.
    const again = await runQueue("billing-dlq", [{ ...a, attempts: 9 }, b]);
    expect(again.explicitAcks.sort()).toEqual([a.id, b.id].sort());
    const after = (await deadLetters(a.id)).results;
    expect(after).toHaveLength(1);
    expect(after[0]!.attempts).toBe(4);
    expect((await deadLetters(b.id)).results).toHaveLength(1);
  });

  it("a batch for an unknown queue is retried as a whole", async () => {
    const m = msg({ type: "idempotency.purge" });
    const result = await runQueue("billing-nonexistent", [m]);
    expect(result.retryBatch.retry).toBe(true);
    expect(result.explicitAcks).toEqual([]);
    expect(result.ackAll).toBe(false);
  });
});

describe("cron triggers", () => {
  it("hourly: meters.resync re-pushes subscriptions whose meter is behind", async () => {
    const sub = await createSubscription({});
    await env.DB.prepare("UPDATE subscriptions SET config_version = config_version + 1, quantity = 7 WHERE id = ?").bind(sub.id).run();
    const behind = await env.DB.prepare("SELECT config_version, meter_synced_version FROM subscriptions WHERE id = ?").bind(sub.id).first<any>();
    expect(behind.meter_synced_version).toBeLessThan(behind.config_version);

    await runCron("0 * * * *");

    const synced = await env.DB.prepare("SELECT config_version, meter_synced_version FROM subscriptions WHERE id = ?").bind(sub.id).first<any>();
    expect(synced.meter_synced_version).toBe(synced.config_version);
    expect((await meterStub(env, sub.id).getConfig())!.version).toBe(synced.config_version);
  });

  it("hourly: a meter that cannot be reached leaves the subscription behind for the next run", async () => {
    const sub = await createSubscription({});
    await env.DB.prepare("UPDATE subscriptions SET config_version = config_version + 1 WHERE id = ?").bind(sub.id).run();
    const unreachable = {
      ...env,
      USAGE_METER: { idFromName: () => ({}), get: () => ({ configure: () => Promise.reject(new Error("meter unreachable")) }) },
    } as unknown as Env;
    await runCron("0 * * * *", unreachable);
    const row = await env.DB.prepare("SELECT config_version, meter_synced_version FROM subscriptions WHERE id = ?").bind(sub.id).first<any>();
    expect(row.meter_synced_version).toBeLessThan(row.config_version);
    await runCron("0 * * * *");
    const fixed = await env.DB.prepare("SELECT config_version, meter_synced_version FROM subscriptions WHERE id = ?").bind(sub.id).first<any>();
    expect(fixed.meter_synced_version).toBe(fixed.config_version);
  });

  it("weekly: enqueues one audit.verify job with a dated report key", async () => {
    const send = vi.fn(async () => undefined);
    const spied = { ...env, JOB_QUEUE: { send } } as unknown as Env;
    await runCron("0 4 * * 1", spied, Date.UTC(2026, 10, 2, 4, 0, 0));
    expect(send).toHaveBeenCalledTimes(1);
    expect(send).toHaveBeenCalledWith({ type: "audit.verify", reportKey: "reports/audit/2026-11-02.json" });
  });

  it("the audit.verify job writes a JSON report to R2", async () => {
    await createSubscription({}); // some audit rows to verify
    const reportKey = `reports/audit/test-${Date.now()}.json`;
    const m = msg({ type: "audit.verify", reportKey });
    const result = await runQueue("billing-jobs", [m]);
    expect(result.explicitAcks).toEqual([m.id]);
    const obj = await env.ARCHIVE.get(reportKey);
    expect(obj).not.toBeNull();
    expect(obj!.httpMetadata?.contentType).toBe("application/json");
    const report = (await obj!.json()) as any;
    const rows = (await env.DB.prepare("SELECT count(*) AS n FROM audit_log").first<{ n: number }>())!.n;
    expect(report).toMatchObject({ valid: true, checked: rows, firstBrokenRow: null, verifiedAt: expect.any(String) });
    expect(rows).toBeGreaterThan(0);
  });

  it("the audit.verify report records a broken chain", async () => {
    const seq = 1;
    const original = await env.DB.prepare("SELECT after FROM audit_log WHERE seq = ?").bind(seq).first<{ after: string }>();
    await env.DB.prepare("UPDATE audit_log SET after = '{}' WHERE seq = ?").bind(seq).run();
    try {
      const reportKey = `reports/audit/broken-${Date.now()}.json`;
      const result = await runQueue("billing-jobs", [msg({ type: "audit.verify", reportKey })]);
      expect(result.explicitAcks).toHaveLength(1);
      const report = (await (await env.ARCHIVE.get(reportKey))!.json()) as any;
      expect(report).toMatchObject({ valid: false, firstBrokenRow: { seq } });
    } finally {
      await env.DB.prepare("UPDATE audit_log SET after = ? WHERE seq = ?").bind(original!.after, seq).run();
    }
  });

  it("the audit.verify handler is the one the weekly job runs", async () => {
    const reportKey = `reports/audit/direct-${Date.now()}.json`;
    expect(await jobHandlers["audit.verify"]({ type: "audit.verify", reportKey }, servicesOf())).toEqual({ status: "done" });
    expect(await env.ARCHIVE.head(reportKey)).not.toBeNull();
  });

  it("an unknown cron expression does nothing and does not throw", async () => {
    const send = vi.fn(async () => undefined);
    const spied = { ...env, JOB_QUEUE: { send } } as unknown as Env;
    const keysBefore = (await env.DB.prepare("SELECT count(*) AS n FROM idempotency_keys").first<{ n: number }>())!.n;
    await expect(runCron("*/5 * * * *", spied)).resolves.toEqual([]);
    expect(send).not.toHaveBeenCalled();
    expect((await env.DB.prepare("SELECT count(*) AS n FROM idempotency_keys").first<{ n: number }>())!.n).toBe(keysBefore);
  });

  it("a failing cron task is retried on its own: the trigger and the other tasks of its run are not held back", async () => {
    const old = Date.now() - 400 * 86_400_000;
    const sub = await createSubscription({});
    const invoice = (await env.DB.prepare("SELECT id FROM invoices WHERE subscription_id = ?").bind(sub.id).first<{ id: string }>())!;
    await env.DB.prepare("UPDATE invoices SET status = 'void', created_at = ?, finalized_at = ? WHERE id = ?").bind(old, old, invoice.id).run();
    const spied = { ...env, JOB_QUEUE: { send: () => Promise.reject(new Error("queue down")) } } as unknown as Env;
    const retried = await runCron("0 4 * * 1", spied);
    expect(retried).toEqual([expect.objectContaining({ type: "cron.task", task: "audit.verify" })]);
    // invoices.archive ran in its own invocation although audit.verify failed.
    expect((await env.DB.prepare("SELECT archive_key FROM invoices WHERE id = ?").bind(invoice.id).first<{ archive_key: string | null }>())!.archive_key).not.toBeNull();
  });

  it("every expression in CRON has tasks", async () => {
    const { cronTasks, CRON } = await import("../../src/scheduled");
    for (const cron of Object.values(CRON)) expect(cronTasks[cron]?.length).toBeGreaterThan(0);
  });
});

describe("requeue while payments are frozen", () => {
  it("a bulk refund item is re-sent with a delay and acked, so a long freeze never exhausts its retries", async () => {
    const stub = env.PAYMENT_GUARD.get(env.PAYMENT_GUARD.idFromName("global"));
    await stub.setMode("frozen", "long incident", "test");
    try {
      const sent: { body: unknown; delaySeconds?: number }[] = [];
      const spy = { send: async (body: unknown, o?: { delaySeconds?: number }) => void sent.push({ body, ...(o?.delaySeconds !== undefined ? { delaySeconds: o.delaySeconds } : {}) }) } as unknown as Queue;
      const m = msg({ type: "refund.bulk_item", bulkId: "rfb_x", paymentId: "pay_x", reason: "r", notify: false }, 5);
      const r = await runQueue("billing-payments", [m], { ...env, PAYMENT_QUEUE: spy });
      expect(r.explicitAcks).toEqual([m.id]);
      expect(r.retryMessages).toEqual([]);
      expect(sent).toHaveLength(1);
      expect(sent[0]!.body).toEqual(m.body);
      expect(sent[0]!.delaySeconds).toBeGreaterThan(0);
    } finally {
      await stub.setMode("normal", null, "test");
    }
  });
});

describe("hourly billing fan-out", () => {
  it("sends every due subscription to the jobs queue, whose handler renews it", async () => {
    const sub = await createSubscription();
    const now = Date.now();
    await env.DB.prepare("UPDATE subscriptions SET current_period_start = ?, current_period_end = ?, billing_anchor = ? WHERE id = ?").bind(now - 31 * 86_400_000, now - 3 * 3_600_000, now - 31 * 86_400_000, sub.id).run();
    const sent: unknown[] = [];
    const spy = { sendBatch: async (msgs: { body: unknown }[]) => void sent.push(...msgs.map((m) => m.body)), send: async (b: unknown) => void sent.push(b) } as unknown as Queue;
    await runCron("0 * * * *", { ...env, JOB_QUEUE: spy, PAYMENT_QUEUE: spy });
    expect(sent).toContainEqual({ type: "billing.run_due", subscriptionId: sub.id });
    const m = msg({ type: "billing.run_due", subscriptionId: sub.id });
    const r = await runQueue("billing-jobs", [m], { ...env, PAYMENT_QUEUE: spy });
    expect(r.explicitAcks).toEqual([m.id]);
    const row = await env.DB.prepare("SELECT current_period_end FROM subscriptions WHERE id = ?").bind(sub.id).first<{ current_period_end: number }>();
    expect(row!.current_period_end).toBeGreaterThan(now - 3 * 3_600_000);
  });
});

describe("notification outbox sweep", () => {
  it("the hourly cron gives queued notifications without an event (older rows) their customer.notification event, once; not sent ones", async () => {
    const now = Date.now();
    const insert = (id: string, status: string, createdAt: number) =>
      env.DB.prepare("INSERT INTO notifications (id, kind, customer_id, template, payload, dedupe_key, status, created_at) VALUES (?, 'test', 'cus_x', 't', '{}', ?, ?, ?)").bind(id, `k-${id}`, status, createdAt).run();
    await insert("ntf_stale", "queued", now - 60 * 60_000);
    await insert("ntf_done", "sent", now - 60 * 60_000);
    const spy = { sendBatch: async () => {}, send: async () => {} } as unknown as Queue;
    await runCron("0 * * * *", { ...env, WEBHOOK_QUEUE: spy, JOB_QUEUE: spy }, now);
    expect(await notificationEventCount("ntf_stale")).toBe(1);
    expect(await notificationEventCount("ntf_done")).toBe(0);
    // A second run finds it has its event: no second one.
    await runCron("0 * * * *", { ...env, WEBHOOK_QUEUE: spy, JOB_QUEUE: spy }, now + 3_600_000);
    expect(await notificationEventCount("ntf_stale")).toBe(1);
  });
});
