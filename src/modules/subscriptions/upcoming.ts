import { and, gt, inArray, isNull, lte, eq, sql } from "drizzle-orm";
import type { Services } from "../../platform/services";
import { batchAssertions, events, plans, subscriptions } from "../../db/schema";
import { billingLines, priceLines } from "../../domain/invoice";
import { formatMinor } from "../../domain/money";
import { periodAt } from "../../domain/periods";
import { DAY_MS, iso } from "../../lib/time";
import { SYSTEM_ACTOR } from "../../platform/actor";
import { change, commit } from "../../platform/change-set";
import type { AuditContext } from "../../platform/audit";
import type { EventType } from "../../platform/events";
import { sendAll } from "../../platform/queue-send";
import { isAssertionFailure } from "../../db/assert";
import { asPrices, pendingToLine, unbilledPending } from "../invoices/invoice-builder";

type SubscriptionRow = typeof subscriptions.$inferSelect;
type PlanRow = typeof plans.$inferSelect;

/** Stripe's default for "upcoming renewal events": 7 days before the renewal. */
export const DEFAULT_UPCOMING_DAYS = 7;
/** Subscriptions per invocation: each costs ~4 D1 queries and one meter call; the rest continues on the tasks queue. */
export const UPCOMING_PAGE = 50;
const UPCOMING: EventType = "invoice.upcoming";

/** UPCOMING_INVOICE_DAYS (a wrangler var, 0 turns the event off; default 7), days before a renewal. */
export function upcomingDaysOf(env: Env): number {
  const raw = (env as unknown as Record<string, string | undefined>).UPCOMING_INVOICE_DAYS;
  const n = raw === undefined || raw === "" ? DEFAULT_UPCOMING_DAYS : Number(raw);
  return Number.isInteger(n) && n >= 0 && n <= 60 ? n : DEFAULT_UPCOMING_DAYS;
}

/** The event's object id: one per (subscription, renewal), which is also what makes it once per period. */
export const upcomingObjectId = (subscriptionId: string, renewsAt: number) => `upcoming_${subscriptionId}_${renewsAt}`;

const mo = (minor: number, currency: string) => ({ amount: formatMinor(minor, currency), amountMinor: minor });

/**
 * The invoice the renewal at the end of the current period will create, as known now: the next period's advance
 * fees, this period's arrears fees and usage so far (`usage`), and pending items. An estimate: before discounts,
 * tax and credit, which the real invoice applies when it is built.
 */
export function upcomingInvoice(sub: SubscriptionRow, plan: PlanRow, usage: ReadonlyMap<string, string>, pending: Parameters<typeof pendingToLine>[0][]) {
  const ended = { start: sub.currentPeriodStart, end: sub.currentPeriodEnd };
  const next = { start: ended.end, end: periodAt(sub.billingAnchor, plan.interval, plan.intervalCount, ended.end).end };
  const wasTrial = sub.status === "trialing";
  const drafts = billingLines({
    currency: sub.currency,
    quantity: sub.quantity,
    planName: plan.name,
    advance: { prices: asPrices(plan.prices), period: next },
    arrears: wasTrial ? null : { prices: asPrices(plan.prices), period: ended, usage, from: sub.arrearsFrom },
    pending: pending.map(pendingToLine),
  });
  const { lines, totals } = priceLines(drafts, { taxRate: null });
  return {
    id: null,
    object: "invoice" as const,
    upcoming: true as const,
    estimate: "before discounts, tax and credit, with usage so far",
    customerId: sub.customerId,
    subscriptionId: sub.id,
    status: "draft" as const,
    billingReason: "subscription_cycle",
    currency: sub.currency,
    renewsAt: iso(ended.end),
    period: { start: iso(ended.start), end: iso(next.end) },
    lines: lines.map((l) => ({
      kind: l.kind,
      description: l.description,
      priceId: l.priceId,
      meterId: l.meterId,
      quantity: l.quantity,
      unitAmount: l.unitAmount,
      amount: mo(l.amount, sub.currency),
      period: { start: iso(l.periodStart), end: iso(l.periodEnd) },
      computation: l.computation,
    })),
    subtotal: mo(totals.subtotal, sub.currency),
    total: mo(totals.total, sub.currency),
    amountDue: mo(totals.amountDue, sub.currency),
  };
}

async function usageSoFar(s: Services, sub: SubscriptionRow, plan: PlanRow, at: number): Promise<Map<string, string>> {
  if (!plan.prices.some((p) => p.type === "metered")) return new Map();
  const summary = await s.meters.of(sub.id).summary({ kind: "current" }, at);
  return summary.ok ? new Map(summary.meters.map((m) => [m.meterId, m.value])) : new Map();
}

/**
 * invoice.upcoming for live subscriptions (active, trialing, past_due; not ending at period end) that renew within
 * `days` of `now`, once per renewal: a keyset page by id after `after`, each emitted in its own batch guarded by
 * the events table (a concurrent run's emission aborts the second). Queues its continuation on the tasks queue.
 */
export async function upcomingInvoicesPage(s: Services, now: number, after: string | null, page = UPCOMING_PAGE): Promise<{ emitted: number; next: string | null }> {
  const r = await emitUpcoming(s, now, { testClockId: null }, { actor: SYSTEM_ACTOR }, after, page);
  if (r.next) await s.queues.tasks.sendAll([{ type: "invoices.upcoming", now, after: r.next }]);
  return r;
}

/**
 * invoice.upcoming for a test clock's subscriptions renewing within `days` of the clock's time `now` (its advance
 * calls this before each step and at its target): once per renewal, stamped in the clock's time `days` before the
 * renewal (or at the period start, for a shorter period). A page; `next` non-null when there is more.
 */
export function upcomingForClock(s: Services, now: number, testClockId: string, ctx: Omit<AuditContext, "now">, page: number) {
  return emitUpcoming(s, now, { testClockId }, ctx, null, page);
}

async function emitUpcoming(s: Services, now: number, scope: { testClockId: string | null }, ctx: Omit<AuditContext, "now">, after: string | null, page: number): Promise<{ emitted: number; next: string | null }> {
  const { env, db } = s;
  const days = upcomingDaysOf(env);
  if (days === 0) return { emitted: 0, next: null };
  const rows = await db
    .select()
    .from(subscriptions)
    .innerJoin(plans, and(eq(plans.id, subscriptions.planId), eq(plans.version, subscriptions.planVersion)))
    .where(
      and(
        inArray(subscriptions.status, ["active", "trialing", "past_due"]),
        scope.testClockId === null ? isNull(subscriptions.testClockId) : eq(subscriptions.testClockId, scope.testClockId),
        eq(subscriptions.cancelAtPeriodEnd, false),
        // A clock's renewal due at `now` has not run yet when its advance asks (before the step): still owed.
        scope.testClockId === null ? gt(subscriptions.currentPeriodEnd, now) : undefined,
        lte(subscriptions.currentPeriodEnd, now + days * DAY_MS),
        after === null ? undefined : gt(subscriptions.id, after),
        sql`NOT EXISTS (SELECT 1 FROM ${events} WHERE ${events.objectId} = 'upcoming_' || ${subscriptions.id} || '_' || ${subscriptions.currentPeriodEnd} AND ${events.type} = ${UPCOMING})`,
      ),
    )
    .orderBy(subscriptions.id)
    .limit(page)
    .all();
  let emitted = 0;
  for (const { subscriptions: sub, plans: plan } of rows) {
    const objectId = upcomingObjectId(sub.id, sub.currentPeriodEnd);
    // Real time: now. A clock: when the event fell due in its time, which its advance may have passed over.
    const at = scope.testClockId === null ? now : Math.min(now, Math.max(sub.currentPeriodStart, sub.currentPeriodEnd - days * DAY_MS));
    const object = upcomingInvoice(sub, plan, await usageSoFar(s, sub, plan, at), await unbilledPending(db, sub.id));
    const exists = sql`SELECT 1 FROM ${events} WHERE ${events.objectId} = ${objectId} AND ${events.type} = ${UPCOMING}`;
    try {
      await commit(
        db,
        change({
          statements: [db.insert(batchAssertions).select(sql`SELECT 0 WHERE EXISTS (${exists})`)],
          events: [{ type: UPCOMING, objectType: "invoice", objectId, customerId: sub.customerId, object, ...(sub.testClockId ? { livemode: false } : {}) }],
        }),
        { ...ctx, now: at },
      );
      emitted++;
    } catch (e) {
      if (!isAssertionFailure(e)) throw e; // a concurrent run emitted it
    }
  }
  return { emitted, next: rows.length === page ? rows[rows.length - 1]!.subscriptions.id : null };
}
