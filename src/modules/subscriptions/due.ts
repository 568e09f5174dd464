import { and, isNull, lte, ne, or, type SQL } from "drizzle-orm";
import { subscriptions } from "../../db/schema";

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

/** The same question in SQL for real-time subscriptions: anything due at `now` (the hourly run, the backlog gauge). */
export function isDue(now: number): SQL {
  return and(
    isNull(subscriptions.testClockId),
    ne(subscriptions.status, "canceled"),
    or(lte(subscriptions.currentPeriodEnd, now), lte(subscriptions.pausedUntil, now), lte(subscriptions.pendingChangeAt, now)),
  )!;
}
