import { and, eq, gte, inArray, isNull, lt, or } from "drizzle-orm";
import type { Db } from "../../db/client";
import { auditLog, plans, subscriptions } from "../../db/schema";
import { money, type Money } from "../../domain/money";
import { lastMonths, mrrMovement, type MovementChange, type MovementSubscription } from "../../domain/mrr-movement";
import { subscriptionMrr } from "../../domain/revenue";
import { iso } from "../../lib/time";
import { effectiveAmountOff } from "./mrr";

export const MRR_MOVEMENT_METHOD =
  "Per UTC calendar month, per currency, real-time subscriptions only (test clocks excluded). A subscription starts counting at creation, " +
  "or when its trial ends (never, if it ended during the trial). new: its MRR on its first plan when it starts counting; expansion / contraction: " +
  "the rise / fall of MRR by plan or quantity changes (audit `subscription.plan_changed`) while it counts; churn: its MRR when it ended. " +
  "MRR as GET /api/v1/analytics/mrr computes it (flat prices × quantity, normalized to a month), with the subscription's current discount (percent off, and an amount-off coupon's amount per period); pauses are not movements.";

export type MrrMovementReport = {
  asOf: string;
  method: string;
  months: string[];
  currencies: { currency: string; movement: { month: string; new: Money; expansion: Money; contraction: Money; churn: Money; net: Money }[] }[];
};

type Version = { planId: string; planVersion: number; quantity: number };

/** MRR movement of the last `count` months (the current one included). */
export async function mrrMovementReport(db: Db, now: number, count: number): Promise<MrrMovementReport> {
  const months = lastMonths(now, count);
  const from = months[0]!.start;
  const s = subscriptions;
  // Subscriptions that could move MRR in the window: created before its end, not ended before its start.
  const subs = await db
    .select({ id: s.id, currency: s.currency, planId: s.planId, planVersion: s.planVersion, quantity: s.quantity, discountPercent: s.discountPercent, amountOffMinor: effectiveAmountOff(now), createdAt: s.createdAt, trialEnd: s.trialEnd, endedAt: s.endedAt })
    .from(s)
    .where(and(isNull(s.testClockId), lt(s.createdAt, now), or(isNull(s.endedAt), gte(s.endedAt, from))))
    .all();
  const changeRows = subs.length
    ? await db
        .select({ targetId: auditLog.targetId, at: auditLog.at, before: auditLog.before, after: auditLog.after })
        .from(auditLog)
        .where(and(eq(auditLog.action, "subscription.plan_changed"), gte(auditLog.at, Math.min(from, ...subs.map((x) => x.createdAt))), lt(auditLog.at, now)))
        .orderBy(auditLog.seq)
        .all()
    : [];
  const planRows = await db.select({ id: plans.id, version: plans.version, interval: plans.interval, intervalCount: plans.intervalCount, prices: plans.prices }).from(plans).where(inArray(plans.id, [...new Set(subs.map((x) => x.planId))].concat(changePlanIds(changeRows)))).all();
  const planOf = new Map(planRows.map((p) => [`${p.id}@${p.version}`, p]));
  const discountOf = new Map(subs.map((x) => [x.id, x.discountPercent]));
  const amountOffOf = new Map(subs.map((x) => [x.id, Number(x.amountOffMinor)]));
  const mrrOf = (subscriptionId: string, v: Version): number => {
    const p = planOf.get(`${v.planId}@${v.planVersion}`);
    if (!p) return 0;
    const amountMinor = p.prices.reduce((sum, price) => (price.type === "flat" ? sum + price.amountMinor : sum), 0);
    return subscriptionMrr({ amountMinor, quantity: v.quantity, interval: p.interval, intervalCount: p.intervalCount, discountPercent: discountOf.get(subscriptionId) ?? null, amountOffMinor: amountOffOf.get(subscriptionId) ?? 0 });
  };
  const changes: (MovementChange & { before: Version })[] = [];
  for (const r of changeRows) {
    if (!discountOf.has(r.targetId)) continue;
    const before = parseVersion(r.before);
    const after = parseVersion(r.after);
    if (!before || !after) continue;
    changes.push({ subscriptionId: r.targetId, at: r.at, before, beforeMrr: mrrOf(r.targetId, before), afterMrr: mrrOf(r.targetId, after) });
  }
  const firstChange = new Map<string, Version>();
  for (const c of changes) if (!firstChange.has(c.subscriptionId)) firstChange.set(c.subscriptionId, c.before);
  const movementSubs: MovementSubscription[] = subs.map((x) => {
    const current = { planId: x.planId, planVersion: x.planVersion, quantity: x.quantity };
    const countsFrom = x.trialEnd !== null && x.trialEnd > x.createdAt ? (x.trialEnd <= now ? x.trialEnd : null) : x.createdAt;
    return { id: x.id, currency: x.currency, countsFrom, endedAt: x.endedAt, initialMrr: mrrOf(x.id, firstChange.get(x.id) ?? current), finalMrr: mrrOf(x.id, current) };
  });
  const byCurrency = mrrMovement(months, movementSubs, changes);
  return {
    asOf: iso(now),
    method: MRR_MOVEMENT_METHOD,
    months: months.map((m) => m.month),
    currencies: [...byCurrency.keys()].sort().map((currency) => ({
      currency,
      movement: byCurrency.get(currency)!.map((m) => ({
        month: m.month,
        new: money(m.new, currency),
        expansion: money(m.expansion, currency),
        contraction: money(m.contraction, currency),
        churn: money(m.churn, currency),
        net: money(m.net, currency),
      })),
    })),
  };
}

function parseVersion(raw: string | null): Version | null {
  if (!raw) return null;
  try {
    const v = JSON.parse(raw) as Partial<Version>;
    return typeof v.planId === "string" && typeof v.planVersion === "number" && typeof v.quantity === "number" ? { planId: v.planId, planVersion: v.planVersion, quantity: v.quantity } : null;
  } catch {
    return null;
  }
}

function changePlanIds(rows: { before: string | null; after: string | null }[]): string[] {
  const ids = new Set<string>();
  for (const r of rows) for (const v of [parseVersion(r.before), parseVersion(r.after)]) if (v) ids.add(v.planId);
  return [...ids];
}
