import { and, gt } from "drizzle-orm";
import type { Services } from "../../platform/services";
import { subscriptions } from "../../db/schema";
import { SYSTEM_ACTOR } from "../../platform/actor";
import { sendAll } from "../../platform/queue-send";
import { fail, ok, type Outcome } from "../../platform/failure";
import { LimitExceeded } from "../../platform/limits";
import { graceMsOf, isDue } from "./due";
import { emitTrialWillEnd } from "./transitions";

/** Due subscriptions read per query, and pages per invocation: 5 queries and 5 × 10 sendBatch calls + 1 send at most. */
export const ENQUEUE_PAGE = 1000;
export const ENQUEUE_PAGES_PER_INVOCATION = 5;

export type EnqueueReport = { queued: number; next: string | null };

/**
 * Sends due real-time subscriptions (by id after `after`, a keyset cursor: a consumer finishing a subscription never
 * shifts the pages still to read) to the jobs queue as `billing.run_due`, up to a few pages, then queues its own
 * continuation on the tasks queue. `now` is fixed for the whole chain. Each message's sends are retried (sendAll).
 */
export async function enqueueDuePages(s: Services, now: number, after: string | null): Promise<EnqueueReport> {
  const { env, db } = s;
  let queued = 0;
  let cursor = after;
  for (let page = 0; page < ENQUEUE_PAGES_PER_INVOCATION; page++) {
    const rows = await db
      .select({ id: subscriptions.id })
      .from(subscriptions)
      .where(and(isDue(now, graceMsOf(env)), cursor === null ? undefined : gt(subscriptions.id, cursor)))
      .orderBy(subscriptions.id)
      .limit(ENQUEUE_PAGE)
      .all();
    queued += await s.queues.jobs.sendAll(rows.map((r) => ({ type: "billing.run_due", subscriptionId: r.id })));
    if (rows.length < ENQUEUE_PAGE) return { queued, next: null };
    cursor = rows[rows.length - 1]!.id;
  }
  await s.queues.tasks.sendAll([{ type: "billing.enqueue_due", now, after: cursor }]);
  return { queued, next: cursor };
}

/**
 * POST /invoices/generate-pending and the hourly cron: the due work fans out through the queues (renewals on the
 * jobs queue, leftover drafts on the tasks queue), never inline, so the call costs the same at any number due.
 * Idempotent: a subscription queued twice renews once. A send that keeps failing fails the call (503), never silently.
 */
export async function generatePending(s: Services, now: number): Promise<Outcome<{ queued: number; continues: boolean }, "unavailable">> {
  try {
    const r = await enqueueDuePages(s, now, null);
    await s.queues.tasks.sendAll([{ type: "invoices.finalize_drafts", now, after: null, testClockId: null }]);
    return ok({ queued: r.queued, continues: r.next !== null });
  } catch (e) {
    if (e instanceof LimitExceeded) throw e;
    return fail("unavailable", `the due work could not be queued: ${String(e)}; nothing is lost, call again (it is idempotent)`);
  }
}

/** Trials ending within three days hear of it (customer.subscription.trial_will_end): one page, then continues. */
export async function trialWillEndPage(s: Services, now: number): Promise<number> {
  const r = await emitTrialWillEnd(s.db, now, { testClockId: null }, { actor: SYSTEM_ACTOR }, 1);
  if (r.more) await s.queues.tasks.sendAll([{ type: "subscriptions.trial_will_end", now }]);
  return r.emitted;
}

