import { and, isNull, ne, sql, type SQL } from "drizzle-orm";
import { plans, subscriptions } from "../../db/schema";

type SubscriptionRow = typeof subscriptions.$inferSelect;

export type DueStep =
  | { kind: "resume"; at: number; runAt: number }
  | { kind: "plan_change"; at: number; runAt: number }
  | { kind: "period_end"; at: number; runAt: number };

/**
 * The next thing that falls due for a subscription: `at` is its logical time, `runAt` when it may run. A period
 * with usage runs after the late-event grace window, so its invoice sees every event. Ties: resume, plan change,
 * then the period end. Pure: a function of the row alone.
 */
export function nextDueStep(sub: SubscriptionRow, opts: { hasMeters: boolean; graceMs: number }): DueStep | null {
  if (sub.status === "canceled") return null;
  const steps: DueStep[] = [];
  if (sub.status === "paused" && sub.pausedUntil !== null) steps.push({ kind: "resume", at: sub.pausedUntil, runAt: sub.pausedUntil });
  if (sub.pendingChangeAt !== null && sub.pendingChangeAt < sub.currentPeriodEnd) {
    steps.push({ kind: "plan_change", at: sub.pendingChangeAt, runAt: sub.pendingChangeAt });
  }
  const grace = opts.hasMeters && sub.status !== "trialing" && sub.status !== "paused" ? opts.graceMs : 0;
  steps.push({ kind: "period_end", at: sub.currentPeriodEnd, runAt: sub.currentPeriodEnd + grace });
  const order = { resume: 0, plan_change: 1, period_end: 2 } as const;
  steps.sort((a, b) => a.at - b.at || order[a.kind] - order[b.kind]);
  return steps[0] ?? null;
}

/** The late-usage grace window (`USAGE_GRACE_SECONDS`, default one hour) in milliseconds. */
export const graceMsOf = (env: { USAGE_GRACE_SECONDS?: string }) => Number(env.USAGE_GRACE_SECONDS ?? "3600") * 1000;
export const DEFAULT_GRACE_MS = 3_600_000;

/**
 * `nextDueStep` in SQL, over the subscriptions row: `at` is the earliest step's logical time, `runAt` when it may
 * run (the period end of a metered plan waits out the grace window, except in a trial or a pause). Null for a
 * canceled subscription. The two agree row for row (test/modules/due-predicate.test.ts).
 */
export function dueStepSql(graceMs: number): { at: SQL<number | null>; runAt: SQL<number | null> } {
  const s = subscriptions;
  const never = sql.raw(String(Number.MAX_SAFE_INTEGER));
  const resumeAt = sql`CASE WHEN ${s.status} = 'paused' AND ${s.pausedUntil} IS NOT NULL THEN ${s.pausedUntil} ELSE ${never} END`;
  const changeAt = sql`CASE WHEN ${s.pendingChangeAt} IS NOT NULL AND ${s.pendingChangeAt} < ${s.currentPeriodEnd} THEN ${s.pendingChangeAt} ELSE ${never} END`;
  const earlier = sql`MIN(${resumeAt}, ${changeAt})`;
  const metered = sql`EXISTS (SELECT 1 FROM ${plans}, json_each(${plans.prices}) AS p WHERE ${plans.id} = ${s.planId} AND ${plans.version} = ${s.planVersion} AND json_extract(p.value, '$.type') = 'metered')`;
  const grace = sql`CASE WHEN ${s.status} NOT IN ('trialing', 'paused') AND ${metered} THEN ${sql.raw(String(Math.max(0, Math.trunc(graceMs))))} ELSE 0 END`;
  // Ties go to the resume (the plan change is always before the period end), whose runAt is its at.
  const at = sql<number | null>`CASE WHEN ${s.status} = 'canceled' THEN NULL ELSE MIN(${earlier}, ${s.currentPeriodEnd}) END`;
  const runAt = sql<number | null>`CASE WHEN ${s.status} = 'canceled' THEN NULL WHEN ${earlier} <= ${s.currentPeriodEnd} THEN ${earlier} ELSE ${s.currentPeriodEnd} + ${grace} END`;
  return { at, runAt };
}

/**
 * The same question in SQL for real-time subscriptions: is the next step runnable at `now` (the hourly run, the
 * backlog gauge)? Exactly when `nextDueStep(row).runAt <= now`, grace included, so a subscription is queued once per
 * step and never to do nothing.
 */
export function isDue(now: number, graceMs: number): SQL {
  // The cheap, indexable bound first: no step can run before the earliest of the three times.
  const maybe = sql`(${subscriptions.currentPeriodEnd} <= ${now} OR ${subscriptions.pausedUntil} <= ${now} OR ${subscriptions.pendingChangeAt} <= ${now})`;
  return and(isNull(subscriptions.testClockId), ne(subscriptions.status, "canceled"), maybe, sql`${dueStepSql(graceMs).runAt} <= ${now}`)!;
}
