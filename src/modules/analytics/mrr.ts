import { and, asc, count, countDistinct, eq, gte, inArray, isNull, lte, sql, type SQL } from "drizzle-orm";
import { alias } from "drizzle-orm/sqlite-core";
import type { Db } from "../../db/client";
import { coupons, creditNoteLines, creditNotes, discounts, invoiceLines, invoices, plans, subscriptions } from "../../db/schema";
import { money, type Money } from "../../domain/money";
import { arpa, mrrOf, type MrrLine } from "../../domain/revenue";
import { iso, DAY_MS } from "../../lib/time";
import { FINALIZED_STATUSES, sumOf } from "./flows";

const latestPlan = alias(plans, "latest_plan");
// A usage line's net amount less what issued credit notes credited on it (pre-tax, like the line).
const usageNet = sql`${invoiceLines.amount} - ${invoiceLines.discountAmount} - coalesce((select sum(${creditNoteLines.amount}) from ${creditNoteLines} inner join ${creditNotes} on ${creditNotes.id} = ${creditNoteLines.creditNoteId} where ${creditNoteLines.invoiceLineId} = ${invoiceLines.id} and ${creditNotes.status} = 'issued'), 0)`;

export const realTimeSubscription = isNull(subscriptions.testClockId);
export const MRR_STATUSES = ["active", "past_due"] as const;

export const MRR_METHOD =
  "Active and past_due subscriptions (test clocks excluded): the flat recurring prices of the subscription's plan version × quantity, " +
  "normalized to a month (day ×365/12, week ×52/12, year ÷12, each ÷ intervalCount), less the subscription's current coupon while it lasts " +
  "(percent off, then an amount off each billing period in the subscription's currency, never below 0), " +
  "rounded once per subscription, half away from zero. Metered (usage) prices are not in MRR: usageRevenueLast30Days shows usage " +
  "lines of invoices finalized in the last 30 days, after line discounts and credit notes, before tax. ARR = MRR × 12; ARPA = MRR ÷ customers with an MRR subscription. " +
  "Trialing and paused subscriptions are not counted; subscriptions set to cancel at period end are, until they end.";

/** The discount a subscription has at `now`: none once its `discount_until` has passed (as invoices see it). */
export const effectiveDiscount = (now: number) =>
  sql<string | null>`case when ${subscriptions.discountUntil} is not null and ${subscriptions.discountUntil} < ${now} then null else ${subscriptions.discountPercent} end`;

/**
 * The amount off each period a subscription's current coupon takes at `now` (as its next invoice would): an
 * amount-off coupon in the subscription's currency, for its plan, not past its end; 0 otherwise. Periods used up end
 * the discount row (endedAt), so they need no check here.
 */
export const effectiveAmountOff = (now: number) =>
  // Spelled with table-qualified names: drizzle leaves column references unqualified in a single-table select, where
  // `id` and `currency` would be ambiguous inside this subquery (GET /api/v1/analytics/mrr/movement answered 500).
  sql<number>`coalesce((select c.amount_off from discounts d inner join coupons c on c.id = d.coupon_id
    where d.subscription_id = "subscriptions"."id" and d.ended_at is null and (d.ends_at is null or d.ends_at >= ${now})
      and c.amount_off is not null and c.currency = "subscriptions"."currency"
      and (c.applies_to_plan_ids is null or exists (select 1 from json_each(c.applies_to_plan_ids) where value = "subscriptions"."plan_id"))
    limit 1), 0)`;

/** Identical subscriptions matching `where`, grouped with the plan version that prices them. */
export async function mrrLines(db: Db, where: SQL | undefined, now: number): Promise<MrrLine[]> {
  const s = subscriptions;
  const discount = effectiveDiscount(now);
  const amountOff = effectiveAmountOff(now);
  const rows = await db
    .select({
      currency: s.currency,
      planId: s.planId,
      quantity: s.quantity,
      discountPercent: discount,
      amountOffMinor: amountOff,
      interval: plans.interval,
      intervalCount: plans.intervalCount,
      prices: plans.prices,
      planName: latestPlan.name,
      subscriptions: count(),
    })
    .from(s)
    .innerJoin(plans, and(eq(plans.id, s.planId), eq(plans.version, s.planVersion)))
    .leftJoin(latestPlan, and(eq(latestPlan.id, s.planId), eq(latestPlan.isLatest, true)))
    .where(and(realTimeSubscription, where))
    .groupBy(s.currency, s.planId, s.planVersion, s.quantity, discount, amountOff, latestPlan.name)
    .all();
  return rows.map((r) => ({
    currency: r.currency,
    planId: r.planId,
    planName: r.planName,
    quantity: r.quantity,
    discountPercent: r.discountPercent,
    amountOffMinor: Number(r.amountOffMinor),
    interval: r.interval,
    intervalCount: r.intervalCount,
    amountMinor: r.prices.reduce((sum, p) => (p.type === "flat" ? sum + p.amountMinor : sum), 0),
    subscriptions: r.subscriptions,
  }));
}

export type MrrReport = {
  asOf: string;
  method: string;
  currencies: {
    currency: string;
    mrr: Money;
    arr: Money;
    subscriptions: number;
    customers: number;
    arpa: Money;
    byPlan: { planId: string; planName: string | null; subscriptions: number; mrr: Money }[];
    usageRevenueLast30Days: Money;
  }[];
};

/** MRR now, per currency and plan, with ARPA and the last 30 days of usage revenue (which MRR leaves out). */
export async function currentMrr(db: Db, now: number): Promise<MrrReport> {
  const inMrr = inArray(subscriptions.status, [...MRR_STATUSES]);
  const [lines, accounts, usage] = await Promise.all([
    mrrLines(db, inMrr, now),
    db
      .select({ currency: subscriptions.currency, customers: countDistinct(subscriptions.customerId) })
      .from(subscriptions)
      .where(and(realTimeSubscription, inMrr))
      .groupBy(subscriptions.currency)
      .all(),
    db
      .select({ currency: invoices.currency, amountMinor: sumOf(usageNet) })
      .from(invoiceLines)
      .innerJoin(invoices, eq(invoices.id, invoiceLines.invoiceId))
      .where(
        and(
          eq(invoiceLines.kind, "usage"),
          inArray(invoices.status, [...FINALIZED_STATUSES]),
          gte(invoices.finalizedAt, now - 30 * DAY_MS),
          lte(invoices.finalizedAt, now),
          isNull(invoices.testClockId),
        ),
      )
      .groupBy(invoices.currency)
      .orderBy(asc(invoices.currency))
      .all(),
  ]);
  const customersOf = new Map(accounts.map((a) => [a.currency, a.customers]));
  const usageOf = new Map(usage.map((u) => [u.currency, u.amountMinor]));
  const byCurrency = new Map(mrrOf(lines).map((c) => [c.currency, c]));
  const currencies = [...new Set([...byCurrency.keys(), ...usageOf.keys()])].sort();
  return {
    asOf: iso(now),
    method: MRR_METHOD,
    currencies: currencies.map((currency) => {
      const c = byCurrency.get(currency) ?? { mrrMinor: 0, subscriptions: 0, byPlan: [] };
      const customerCount = customersOf.get(currency) ?? 0;
      return {
        currency,
        mrr: money(c.mrrMinor, currency),
        arr: money(c.mrrMinor * 12, currency),
        subscriptions: c.subscriptions,
        customers: customerCount,
        arpa: money(arpa(c.mrrMinor, customerCount), currency),
        byPlan: c.byPlan.map((p) => ({ planId: p.planId, planName: p.planName, subscriptions: p.subscriptions, mrr: money(p.mrrMinor, currency) })),
        usageRevenueLast30Days: money(usageOf.get(currency) ?? 0, currency),
      };
    }),
  };
}
