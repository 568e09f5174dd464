import { and, count, countDistinct, desc, inArray, isNotNull, ne, notInArray, sql, type SQL } from "drizzle-orm";
import type { Db } from "../../db/client";
import { subscriptions } from "../../db/schema";
import { money, type Money } from "../../domain/money";
import { churnRate, mrrOf, revenueChurnRate, trialConversionRate } from "../../domain/revenue";
import { iso } from "../../lib/time";
import { mrrLines, realTimeSubscription } from "./mrr";

// Churn over a window [from, to). Only paying subscriptions churn: a trial canceled before it ended is a trial
// that did not convert (counted under `trials`), not churn. As Stripe's and ChartMogul's rates, churn is measured
// against the start of the window: of those paying then, how many (and how much MRR) were lost. A subscription
// that started paying inside the window and ended in it too is not in that base, so it is not in the rate either
// (counted it made "1 canceled of 0", and revenue churn above 100 %): it is reported apart, as newAndCanceled.

const s = subscriptions;
const FEEDBACK_SAMPLES = 5;

export const CHURN_METHOD =
  "Paying subscriptions only (test clocks excluded); a subscription that ended at or before its trial end is a trial that did not convert. " +
  "activeAtStart: created before the window, out of trial by its start and not ended before it (state history is not kept, so one paused then is counted). " +
  "canceled: active at the start and ended in the window. newAndCanceled: ended in the window but not active at its start (started paying inside it), " +
  "not part of any rate. churnRate = canceled ÷ activeAtStart. Customers churned: active at the start, with a subscription canceled in the window and no " +
  "subscription left that is not canceled; their rate is ÷ customers active at the start. Revenue churn per currency: the MRR of the canceled subscriptions " +
  "(active at the start) ÷ the MRR of those active at the start, both priced with each subscription's current plan version, quantity and discount. Rates are fractions with 4 decimals (null when the base is 0).";

/** The subscription never got past its trial. */
const endedInTrial = sql`(${s.endedAt} is not null and ${s.trialEnd} is not null and ${s.endedAt} <= ${s.trialEnd})`;
const activeAt = (t: number): SQL =>
  sql`(${s.createdAt} < ${t} and coalesce(${s.trialEnd}, 0) <= ${t} and (${s.endedAt} is null or ${s.endedAt} >= ${t}) and not ${endedInTrial})`;
/** Every paying subscription that ended in the window, whether or not it was there at its start. */
const canceledIn = (from: number, to: number): SQL =>
  sql`(${s.status} = 'canceled' and ${s.endedAt} >= ${from} and ${s.endedAt} < ${to} and not ${endedInTrial})`;
const sumWhen = (cond: SQL) => sql<number>`coalesce(sum(case when ${cond} then 1 else 0 end), 0)`.mapWith(Number);

export type ChurnReport = {
  from: string;
  to: string;
  method: string;
  subscriptions: { activeAtStart: number; new: number; newWithTrial: number; canceled: number; newAndCanceled: number; churnRate: string | null };
  customers: { activeAtStart: number; churned: number; churnRate: string | null };
  revenue: { currency: string; mrrAtStart: Money; mrrLost: Money; churnRate: string | null }[];
  cancellationReasons: { reason: string; count: number }[];
  recentFeedback: { subscriptionId: string; customerId: string; reason: string | null; feedback: string; endedAt: string }[];
  trials: { converted: number; canceledDuringTrial: number; conversionRate: string | null };
};

/**
 * Subscription, customer and revenue churn of [from, to) (reported with `to` as its last millisecond), the reasons
 * given, and trials that ended in it. Lost MRR counts the discounts in effect at `now`.
 */
export async function churnBetween(db: Db, from: number, to: number, now: number): Promise<ChurnReport> {
  const ended = canceledIn(from, to);
  const canceled = sql`(${ended} and ${activeAt(from)})`;
  const newAndCanceled = sql`(${ended} and not ${activeAt(from)})`;
  const customersAtStartQ = db.select({ customerId: s.customerId }).from(s).where(and(realTimeSubscription, activeAt(from)));
  const stillSubscribed = db.select({ customerId: s.customerId }).from(s).where(and(realTimeSubscription, ne(s.status, "canceled")));
  const convertedIn = sql`(${s.trialConvertedAt} >= ${from} and ${s.trialConvertedAt} < ${to} and not (${s.endedAt} is not null and ${s.endedAt} <= ${s.trialConvertedAt}))`;
  const trialCanceledIn = sql`(${s.status} = 'canceled' and ${s.endedAt} >= ${from} and ${s.endedAt} < ${to} and ${endedInTrial})`;
  const newIn = sql`(${s.createdAt} >= ${from} and ${s.createdAt} < ${to})`;
  const reason = sql<string>`coalesce(${s.cancelReason}, 'unspecified')`;

  const [counts, customersAtStart, churnedCustomers, reasons, feedback, startLines, lostLines] = await Promise.all([
    db
      .select({
        activeAtStart: sumWhen(activeAt(from)),
        new: sumWhen(newIn),
        newWithTrial: sumWhen(sql`${newIn} and ${s.trialEnd} is not null`),
        canceled: sumWhen(canceled),
        newAndCanceled: sumWhen(newAndCanceled),
        converted: sumWhen(convertedIn),
        canceledDuringTrial: sumWhen(trialCanceledIn),
      })
      .from(s)
      .where(realTimeSubscription)
      .get(),
    db.select({ n: countDistinct(s.customerId) }).from(s).where(and(realTimeSubscription, activeAt(from))).get(),
    db
      .select({ n: countDistinct(s.customerId) })
      .from(s)
      .where(and(realTimeSubscription, canceled, inArray(s.customerId, customersAtStartQ), notInArray(s.customerId, stillSubscribed)))
      .get(),
    // Reasons and feedback are those of every cancellation of the window (newAndCanceled ones too).
    db.select({ reason, count: count() }).from(s).where(and(realTimeSubscription, ended)).groupBy(reason).orderBy(desc(count()), reason).all(),
    db
      .select({ subscriptionId: s.id, customerId: s.customerId, reason: s.cancelReason, feedback: s.cancelFeedback, endedAt: s.endedAt })
      .from(s)
      .where(and(realTimeSubscription, ended, isNotNull(s.cancelFeedback), sql`trim(${s.cancelFeedback}) <> ''`))
      .orderBy(desc(s.endedAt), desc(s.id))
      .limit(FEEDBACK_SAMPLES)
      .all(),
    mrrLines(db, activeAt(from), now),
    mrrLines(db, canceled, now),
  ]);

  const c = counts ?? { activeAtStart: 0, new: 0, newWithTrial: 0, canceled: 0, newAndCanceled: 0, converted: 0, canceledDuringTrial: 0 };
  const atStart = new Map(mrrOf(startLines).map((m) => [m.currency, m.mrrMinor]));
  const lost = new Map(mrrOf(lostLines).map((m) => [m.currency, m.mrrMinor]));
  const currencies = [...new Set([...atStart.keys(), ...lost.keys()])].sort();
  const customersActive = customersAtStart?.n ?? 0;
  const customersChurned = churnedCustomers?.n ?? 0;
  return {
    from: iso(from),
    to: iso(to - 1),
    method: CHURN_METHOD,
    subscriptions: { activeAtStart: c.activeAtStart, new: c.new, newWithTrial: c.newWithTrial, canceled: c.canceled, newAndCanceled: c.newAndCanceled, churnRate: churnRate(c.canceled, c.activeAtStart) },
    customers: { activeAtStart: customersActive, churned: customersChurned, churnRate: churnRate(customersChurned, customersActive) },
    revenue: currencies.map((currency) => {
      const start = atStart.get(currency) ?? 0;
      const gone = lost.get(currency) ?? 0;
      return { currency, mrrAtStart: money(start, currency), mrrLost: money(gone, currency), churnRate: revenueChurnRate(gone, start) };
    }),
    cancellationReasons: reasons,
    recentFeedback: feedback.map((f) => ({ subscriptionId: f.subscriptionId, customerId: f.customerId, reason: f.reason, feedback: f.feedback!, endedAt: iso(f.endedAt!) })),
    trials: { converted: c.converted, canceledDuringTrial: c.canceledDuringTrial, conversionRate: trialConversionRate(c.converted, c.canceledDuringTrial) },
  };
}
