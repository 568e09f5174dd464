import { sql } from "drizzle-orm";
import type { Db } from "../../db/client";
import type { Actor } from "../../env";
import { subscriptions } from "../../db/schema";
import { SYSTEM_ACTOR } from "../../platform/actor";
import { isDue } from "./due";
import { finalizeDrafts } from "../invoices/finalize";
import { runDue, type StepResult } from "./renewal";
import { emitTrialWillEnd } from "./transitions";
import type { JobMessage } from "../../../queues/messages";

const BATCH = 200;

export type RunReport = { processed: number; steps: StepResult[]; invoiceIds: string[]; finalized: string[]; errors: { subscriptionId: string; error: string }[] };

function dueQuery(db: Db, now: number) {
  return db.select({ id: subscriptions.id }).from(subscriptions).where(isDue(now)).orderBy(sql`${subscriptions.currentPeriodEnd}`, subscriptions.id);
}

/**
 * POST /invoices/generate-pending: every real-time subscription with something due runs it, in time order, up to
 * `BATCH` here and now; the rest go to the jobs queue (`billing.run_due`). Leftover drafts are finalized.
 * Idempotent: a second run finds nothing due.
 */
export async function generatePending(env: Env, db: Db, now: number, actor: Actor = SYSTEM_ACTOR, requestId?: string): Promise<RunReport & { queued: number }> {
  const due = await dueQuery(db, now).limit(BATCH + 1).all();
  const report: RunReport & { queued: number } = { processed: 0, steps: [], invoiceIds: [], finalized: [], errors: [], queued: 0 };
  for (const { id } of due.slice(0, BATCH)) {
    try {
      const steps = await runDue(env, db, id, now, { actor, ...(requestId ? { requestId } : {}) });
      report.processed++;
      report.steps.push(...steps);
      for (const s of steps) if (s.invoiceId) report.invoiceIds.push(s.invoiceId);
    } catch (e) {
      report.errors.push({ subscriptionId: id, error: String(e) });
      console.log(JSON.stringify({ level: "error", msg: "billing run failed for subscription", subscriptionId: id, error: String(e) }));
    }
  }
  if (due.length > BATCH) report.queued = await enqueueDue(env, db, now);
  const finalized = await finalizeDrafts(env, db, { actor, now, ...(requestId ? { requestId } : {}) }, { testClockId: null });
  report.finalized = finalized.map((f) => f.id);
  return report;
}

/**
 * The hourly cron: emits the trial_will_end events owed, then fans every due subscription out to the jobs queue, so
 * a month-start peak runs in parallel.
 */
export async function enqueueDue(env: Env, db: Db, now: number): Promise<number> {
  // Trials ending within three days: customer.subscription.trial_will_end, once per subscription. A failure here
  // must not hold up the renewals; the next hourly run emits what this one could not.
  await emitTrialWillEnd(db, now, { testClockId: null }, { actor: SYSTEM_ACTOR }).catch((e) =>
    console.log(JSON.stringify({ level: "error", msg: "trial_will_end emission failed; the next run retries", error: String(e) })),
  );
  let queued = 0;
  for (let offset = 0; ; offset += 1000) {
    const page = await dueQuery(db, now).limit(1000).offset(offset).all();
    const messages = page.map((r) => ({ body: { type: "billing.run_due", subscriptionId: r.id } satisfies JobMessage }));
    for (let i = 0; i < messages.length; i += 100) await env.JOB_QUEUE.sendBatch(messages.slice(i, i + 100));
    queued += page.length;
    if (page.length < 1000) return queued;
  }
}
