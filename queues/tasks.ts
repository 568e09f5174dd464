import { messageServices, type Services } from "../src/platform/services";
import { consumer } from "./dispatch";
import { enqueueDuePages, trialWillEndPage } from "../src/modules/subscriptions/billing-run";
import { finalizeDraftsChained } from "../src/modules/invoices/finalize";
import { upcomingInvoicesPage } from "../src/modules/subscriptions/upcoming";
import { continueAdvance } from "../src/modules/test-clocks/service";
import { runCronTask } from "../src/scheduled";
import { continueRetentionRun } from "../src/modules/retention/run";
import { continueWeeklyVerification } from "../src/modules/audit/verify";
import { RETRY_BUDGET, retryFailed } from "../src/modules/subscriptions/retry-failed";
import { continueDump } from "../src/modules/exports/dump";
import { continueReconciliationRun } from "../src/modules/reconciliation/run";
import { requeueFailed } from "../src/modules/payments/service";
import { sendRemindersChained } from "../src/modules/invoices/reminders";
import { notifyPaymentIssue } from "../src/modules/admin/notifications";
import type { TaskMessage } from "./messages";
import { queueNames } from "./messages";

type Of<K extends TaskMessage["type"]> = Extract<TaskMessage, { type: K }>;
const done = { status: "done" as const };

/**
 * The tasks queue delivers one message per invocation (max_batch_size = 1): each handler does a bounded amount of
 * work and queues its own continuation, so every invocation stays inside Cloudflare's limits at any N.
 */
export const taskHandlers = {
  "cron.task": async (m: Of<"cron.task">, s: Services) => {
    await runCronTask(s.env, m.cron, m.task, m.scheduledTime, m.after ?? null, m.step ?? 0);
    return done;
  },
  "billing.enqueue_due": async (m: Of<"billing.enqueue_due">, s: Services) => {
    await enqueueDuePages(s, m.now, m.after);
    return done;
  },
  "invoices.finalize_drafts": async (m: Of<"invoices.finalize_drafts">, s: Services) => {
    await finalizeDraftsChained(s.withNow(m.now), m.testClockId, m.after);
    return done;
  },
  "subscriptions.trial_will_end": async (m: Of<"subscriptions.trial_will_end">, s: Services) => {
    await trialWillEndPage(s, m.now);
    return done;
  },
  "invoices.upcoming": async (m: Of<"invoices.upcoming">, s: Services) => {
    await upcomingInvoicesPage(s, m.now, m.after);
    return done;
  },
  "test_clock.advance": async (m: Of<"test_clock.advance">, s: Services) => {
    await continueAdvance(s, m.clockId, m.target, m.meterAfter ?? null);
    return done;
  },
  "invoices.retry_failed": async (m: Of<"invoices.retry_failed">, s: Services) => {
    const r = await retryFailed((m.actor ? s.as(m.actor) : s).withNow(m.now), m.input, RETRY_BUDGET, m.cursor, m.step ?? 0);
    s.log.info("retry-failed continued", { cursor: m.cursor, paymentRetries: r.paymentRetries.count, finalized: r.finalized.count, regenerated: r.regenerated.count, skipped: r.skipped.count, errors: r.errors, continues: r.continues });
    return done;
  },
  "audit.verify_continue": async (m: Of<"audit.verify_continue">, s: Services) => {
    await continueWeeklyVerification(s, m.reportKey, m.progress, m.startedAt, m.rowsPerInvocation);
    return done;
  },
  "retention.run": async (m: Of<"retention.run">, s: Services) => {
    await continueRetentionRun(s, m);
    return done;
  },
  "payments.requeue_failed": async (m: Of<"payments.requeue_failed">, s: Services) => {
    const r = await requeueFailed(s.as(m.actor).withNow(m.now), m.after, m.step ?? 0);
    s.log.info("requeue-failed continued", { requeued: r.invoiceIds.length, continues: r.continues });
    return done;
  },
  "invoices.send_reminders": async (m: Of<"invoices.send_reminders">, s: Services) => {
    const r = await sendRemindersChained(s.as(m.actor).withNow(m.now), m.input, m.after, m.step ?? 0);
    s.log.info("send-reminders continued", { queued: r.queued, alreadySentToday: r.alreadySentToday, continues: r.continues });
    return done;
  },
  "notifications.payment_issue": async (m: Of<"notifications.payment_issue">, s: Services) => {
    const r = await notifyPaymentIssue(s.as(m.actor).withNow(m.now), m.input, m.after, m.step ?? 0);
    s.log.info("payment-issue notices continued", { notified: r.notified, alreadyNotifiedToday: r.alreadyNotifiedToday, continues: r.continues });
    return done;
  },
  "dump.continue": async (m: Of<"dump.continue">, s: Services) => {
    const state = await continueDump(s, m.prefix, m.runId, m.step);
    if (state) s.log.info("dump continued", { prefix: m.prefix, step: m.step, done: state.done, files: state.files.length });
    return done;
  },
  "reconciliation.continue": async (m: Of<"reconciliation.continue">, s: Services) => {
    await continueReconciliationRun(s, m.runId, m.step);
    return done;
  },
};

export const consumeTasks = consumer<TaskMessage>(queueNames.tasks, taskHandlers, { services: messageServices });
