import { queuesOf, servicesFor, type Services } from "./platform/services";
import { purgeExpiredIdempotencyKeys } from "./http/idempotency";
import { resyncMeters } from "./modules/usage/meter-config";
import { enqueueDuePages, trialWillEndPage } from "./modules/subscriptions/billing-run";
import { SYSTEM_ACTOR } from "./platform/actor";
import { finalizeDraftsChained } from "./modules/invoices/finalize";
import { runDailyReconciliation } from "./modules/reconciliation/report";
import { sweepReconciliationSeen } from "./modules/reconciliation/run";
import { cleanupWebhookEvents } from "./modules/webhooks/cleanup";
import { WEBHOOK_ACTOR } from "./modules/webhooks/types";
import { weeklyRevenueReport } from "./modules/analytics/weekly-report";
import { runDailyBackup } from "./modules/exports/backup";
import { sweepNotifications } from "./modules/webhook-endpoints/notifications";
import { cleanupWebhookDeliveries, sweepWebhookDeliveries } from "./modules/webhook-endpoints/delivery";
import { settlePendingRefunds } from "./modules/refunds/service";
import { ARCHIVE_MAX_PER_RUN, archiveInvoices } from "./modules/invoices/archive";
import { REMINDER_PAGES_PER_INVOCATION, sendReminders } from "./modules/invoices/reminders";
import { DAY_MS } from "./lib/time";
import { sealAuditChain } from "./modules/audit/verify";
import { startRetentionRun } from "./modules/retention/run";
import { markUncollectible, sendDueRetries, UNCOLLECTIBLE_PER_INVOCATION } from "./modules/payments/dunning";
import type { TaskMessage } from "../queues/messages";
import { sendAll } from "./platform/queue-send";
import { currentCounts, type InvocationCounts } from "./platform/limits";
import { expireDueGrants } from "./modules/credits/service";
import { upcomingInvoicesPage } from "./modules/subscriptions/upcoming";
import { sendOnce, stepKey, sweepContinuations } from "./platform/continuations";

export const CRON = {
  hourly: "0 * * * *",
  daily: "0 3 * * *",
  weekly: "0 4 * * 1",
} as const;

/** `s` acts as the system at the trigger's scheduled time (`s.audit.now`); `t` is that time. */
/**
 * A task runs at the trigger's time; a paged one gets the cursor it left (`after`) and returns `{ continueAfter }` to
 * go on in a fresh `cron.task` message (its own invocation) from there.
 */
type Task = { name: string; run: (s: Services, t: number, after?: string | null) => Promise<unknown> };
const continuesAfter = (result: unknown): string | null =>
  typeof result === "object" && result !== null && typeof (result as { continueAfter?: unknown }).continueAfter === "string" ? (result as { continueAfter: string }).continueAfter : null;

/** What each cron trigger does; each task runs even when an earlier one failed. */
export const cronTasks: Record<string, Task[]> = {
  [CRON.hourly]: [
    { name: "meters.resync", run: (s) => resyncMeters(s) },
    // Each of these does one bounded page and queues the next on the tasks queue (docs/scale.md).
    { name: "subscriptions.trial_will_end", run: (s, t) => trialWillEndPage(s, t) },
    { name: "invoices.upcoming", run: async (s, t) => (await upcomingInvoicesPage(s, t, null)).emitted },
    { name: "billing.enqueue_due", run: (s, t) => enqueueDuePages(s, t, null) },
    { name: "billing.finalize_drafts", run: async (s, t) => (await finalizeDraftsChained(s, null, null)).finalized.length },
    // Live invoices only: a test clock's retries and "uncollectible" move when the clock is advanced.
    { name: "payments.retries_due", run: (s, t) => sendDueRetries(s, t, { testClockId: null }) },
    { name: "notifications.sweep", run: (s, t) => sweepNotifications(s, t) },
    { name: "webhook_endpoints.sweep", run: (s, t) => sweepWebhookDeliveries(s, t) },
    // Expired grants leave the set, so a full page just goes on in a fresh message (the cursor is not needed).
    {
      name: "credits.expire",
      run: async (s, t) => {
        const r = await expireDueGrants(s.db, t, { testClockId: null }, { actor: SYSTEM_ACTOR });
        return { expired: r.expired, skipped: r.skipped, ...(r.hasMore ? { continueAfter: "more" } : {}) };
      },
    },
    {
      name: "refunds.settle_pending",
      run: async (s, _t, after) => {
        const r = await settlePendingRefunds(s, undefined, undefined, after);
        return { settled: r.settled, stillPending: r.stillPending, ...(r.next ? { continueAfter: r.next } : {}) };
      },
    },
    // Audited writes also poke the sealer themselves; this catches what a lost poke left.
    { name: "audit.seal", run: async (s) => { const r = await sealAuditChain(s.env); return { sealed: r.sealed, adopted: r.adopted, headSeq: r.head.seq }; } },
  ],
  [CRON.daily]: [
    { name: "backup.daily", run: (s) => runDailyBackup(s) },
    { name: "reconciliation.daily", run: (s, t) => runDailyReconciliation(s) },
    // reconciliation_seen rows of runs no longer running, bounded per message (src/modules/reconciliation/run.ts).
    { name: "reconciliation.sweep_seen", run: async (s) => { const r = await sweepReconciliationSeen(s.db); return { deleted: r.deleted, ...(r.more ? { continueAfter: "more" } : {}) }; } },
    { name: "webhooks.cleanup", run: (s, t) => cleanupWebhookEvents(s, 30, { actor: WEBHOOK_ACTOR, now: t }) },
    {
      name: "invoices.uncollectible",
      run: async (s, _t, after) => {
        const r = await markUncollectible(s.db, s.audit, { testClockId: null }, { after, max: UNCOLLECTIBLE_PER_INVOCATION });
        return { marked: r.marked.length, ...(r.next ? { continueAfter: r.next } : {}) };
      },
    },
    { name: "idempotency.purge", run: (s, t) => purgeExpiredIdempotencyKeys(s.env, t) },
    // The continuation claims of chains long finished (a chain of the daily or weekly trigger ends within hours).
    {
      name: "tasks.sweep_claims",
      run: async (s, t) => {
        const r = await sweepContinuations(s.db, t - 3 * DAY_MS);
        return { deleted: r.deleted, ...(r.more ? { continueAfter: "more" } : {}) };
      },
    },
    // Events past 30 days, and audit rows, invoice lines, payment attempts past the policy, to R2 (docs/retention.md).
    { name: "retention.run", run: async (s, t) => (await startRetentionRun(s, "cron", t)).run?.id ?? "disabled" },
    { name: "webhook_endpoints.cleanup", run: (s, t) => cleanupWebhookDeliveries(s.db, t) },
    {
      name: "invoices.reminders",
      run: async (s, _t, after) => {
        const r = await sendReminders(s, { daysOverdue: 1, template: "invoice_overdue" }, { after, maxPages: REMINDER_PAGES_PER_INVOCATION });
        return { queued: r.queued, alreadySentToday: r.alreadySentToday, ...(r.next ? { continueAfter: r.next } : {}) };
      },
    },
  ],
  [CRON.weekly]: [
    { name: "reports.weekly_revenue", run: async (s) => ({ key: (await weeklyRevenueReport(s)).key }) },
    {
      name: "audit.verify",
      run: (s, t) =>
        s.queues.jobs.send({ type: "audit.verify", reportKey: `reports/audit/${new Date(t).toISOString().slice(0, 10)}.json` }),
    },
    {
      // A page of ARCHIVE_MAX_PER_RUN per message, then the next from its cursor; an invoice that fails is logged
      // (each one) and skipped, so one bad invoice does not hold the rest back.
      name: "invoices.archive",
      run: async (s, t, after) => {
        const r = await archiveInvoices(s, t - 365 * DAY_MS, ARCHIVE_MAX_PER_RUN, after);
        return { archived: r.archived, errors: r.errors.length, ...(r.next ? { continueAfter: r.next } : {}) };
      },
    },
  ],
};

/** A task's share of its invocation's counts, when limits are counted (src/platform/limits.ts). */
function countsSince(before: InvocationCounts | null): Partial<InvocationCounts> {
  const now = currentCounts();
  if (!before || !now) return {};
  return { d1Queries: now.d1Queries - before.d1Queries, subrequests: now.subrequests - before.subrequests, queueSends: now.queueSends - before.queueSends };
}

/** Runs one task of a cron trigger (the tasks queue's `cron.task`); throws when it fails, so the message is retried. */
export async function runCronTask(env: Env, cron: string, name: string, scheduledTime: number, after: string | null = null, step = 0): Promise<void> {
  const task = cronTasks[cron]?.find((t) => t.name === name);
  if (!task) throw new Error(`no task ${name} for cron ${cron}`);
  const s = cronServices(env, cron, name, scheduledTime);
  const started = Date.now();
  const before = currentCounts();
  try {
    const result = await task.run(s, scheduledTime, after);
    s.log.info("cron task", { ms: Date.now() - started, result, ...(after ? { after } : {}), ...countsSince(before) });
    const next = continuesAfter(result);
    if (next) {
      // Once per step (platform/continuations.ts), by step number: a task whose set shrinks as it works continues
      // with the same cursor ("more"), and a redelivery may end on another one.
      const sent = await sendOnce(s.db, stepKey(`cron.task|${cron}|${name}|${scheduledTime}`, step + 1), s.clock.wall, () =>
        s.queues.tasks.send({ type: "cron.task", cron, task: name, scheduledTime, after: next, step: step + 1 }),
      );
      if (sent === "duplicate") s.log.info("cron task continuation already sent (a duplicate delivery)", { step: step + 1 });
    }
  } catch (e) {
    s.log.error("cron task failed", { error: String(e) });
    throw e;
  }
}

/** The Services of one cron task: the system acting at the trigger's scheduled time, its log lines tagged with the task. */
export const cronServices = (env: Env, cron: string, task: string, scheduledTime: number): Services =>
  servicesFor(env, { actor: SYSTEM_ACTOR, now: scheduledTime }, { cron, task });

/**
 * The worker's `scheduled` handler. Every trigger's tasks each run in their own invocation: it sends one `cron.task`
 * message per task to the tasks queue (one message per invocation), so no task shares Cloudflare's per-invocation
 * limits with another, a failed task is retried on its own (then dead-lettered), and the trigger makes no D1 query.
 * Tasks of one trigger do not depend on each other's order.
 */
export async function scheduled(controller: ScheduledController, env: Env): Promise<void> {
  const tasks = cronTasks[controller.cron];
  if (!tasks) {
    console.log(JSON.stringify({ level: "error", msg: "no tasks for cron", cron: controller.cron }));
    return;
  }
  const messages = tasks.map((t) => ({ type: "cron.task", cron: controller.cron, task: t.name, scheduledTime: controller.scheduledTime }) satisfies TaskMessage);
  await queuesOf(env).tasks.sendAll(messages);
  console.log(JSON.stringify({ level: "info", msg: "cron tasks queued", cron: controller.cron, tasks: tasks.map((t) => t.name) }));
}
