import { and, eq, isNull, sql, type Placeholder } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type { z } from "@hono/zod-openapi";
import type { Db } from "../../db/client";
import { coupons, discounts, invoiceDiscounts, subscriptions } from "../../db/schema";
import { couponPeriods, type DiscountSpec } from "../../domain/discounts";
import { newId } from "../../lib/ids";
import { assertChanged } from "../../db/assert";
import { iso } from "../../lib/time";
import type { CouponRow, Redemption } from "./service";
import type { Discount } from "./schemas";

export type DiscountRow = typeof discounts.$inferSelect;
export type CurrentDiscount = { discount: DiscountRow; coupon: CouponRow };

export function toDiscount(r: DiscountRow): z.infer<typeof Discount> {
  return {
    id: r.id,
    object: "discount",
    subscriptionId: r.subscriptionId,
    customerId: r.customerId,
    couponId: r.couponId,
    promotionCodeId: r.promotionCodeId,
    periods: r.periods,
    periodsUsed: r.periodsUsed,
    periodsRemaining: r.periods === null ? null : Math.max(0, r.periods - r.periodsUsed),
    endsAt: iso(r.endsAt),
    endedAt: iso(r.endedAt),
    createdAt: iso(r.createdAt),
  };
}

/** The subscription's current discount (not removed, replaced or used up) with its coupon, or null. */
/**
 * The subscription's current discount and its coupon as two single-table queries a caller can put in its batched
 * read (a join in a D1 batch comes back as raw rows whose same-named columns collide), and their result.
 */
export const currentDiscountQueries = (db: Db, subscriptionId: string | Placeholder) =>
  [
    db.select().from(discounts).where(and(eq(discounts.subscriptionId, subscriptionId), isNull(discounts.endedAt))).limit(1),
    db
      .select()
      .from(coupons)
      .where(eq(coupons.id, sql`(SELECT ${discounts.couponId} FROM ${discounts} WHERE ${discounts.subscriptionId} = ${subscriptionId} AND ${discounts.endedAt} IS NULL LIMIT 1)`)),
  ] as const;

export const currentDiscountOf = (discount: (typeof discounts.$inferSelect)[], coupon: (typeof coupons.$inferSelect)[]): CurrentDiscount | null =>
  discount[0] && coupon[0] ? { discount: discount[0], coupon: coupon[0] } : null;

export async function currentDiscount(db: Db, subscriptionId: string): Promise<CurrentDiscount | null> {
  const row = await db
    .select({ discount: discounts, coupon: coupons })
    .from(discounts)
    .innerJoin(coupons, eq(coupons.id, discounts.couponId))
    .where(and(eq(discounts.subscriptionId, subscriptionId), isNull(discounts.endedAt)))
    .get();
  return row ?? null;
}

/** A new discount of a redemption on a subscription, its periods counted on the subscription's plan interval. */
export function newDiscount(r: Redemption, sub: { id: string; customerId: string }, plan: { interval: "day" | "week" | "month" | "year"; intervalCount: number }, now: number, endsAt: number | null = null): DiscountRow {
  return {
    id: newId("di"),
    subscriptionId: sub.id,
    customerId: sub.customerId,
    couponId: r.coupon.id,
    promotionCodeId: r.promotionCode?.id ?? null,
    periods: couponPeriods(r.coupon, plan),
    periodsUsed: 0,
    endsAt,
    endedAt: null,
    createdAt: now,
  };
}

/** Ends the subscription's current discount (if any) and, given one, starts `next`: at most one is ever current. */
export function replaceDiscountStatements(db: Db, subscriptionId: string, next: DiscountRow | null, now: number): BatchItem<"sqlite">[] {
  const out: BatchItem<"sqlite">[] = [db.update(discounts).set({ endedAt: now }).where(and(eq(discounts.subscriptionId, subscriptionId), isNull(discounts.endedAt)))];
  if (next) out.push(db.insert(discounts).values(next));
  return out;
}

/** The mirror columns `discountPercent`/`discountUntil` the subscription object (and MRR) show for a discount. */
export const mirrorOf = (d: CurrentDiscount | { discount: DiscountRow; coupon: CouponRow } | null) => ({
  discountPercent: d ? d.coupon.percentOff : null,
  discountUntil: d ? d.discount.endsAt : null,
  discount: d ? toDiscount(d.discount) : null,
});

/** Invoices that bill a period: they apply a limited discount and count one of its periods. */
export const billsPeriod = (reason: string) => reason === "subscription_create" || reason === "subscription_cycle";

/**
 * The discount an invoice of `sub` billed at `billedAt` gets from `d`: none when its time bound passed, its
 * periods are used up, its coupon is limited to other plans, or (amount off) in another currency.
 */
export function applicableDiscount(d: CurrentDiscount | null, sub: { planId: string; currency: string }, billedAt: number): { spec: DiscountSpec; d: CurrentDiscount } | null {
  if (!d) return null;
  const { discount, coupon } = d;
  if (discount.endsAt !== null && billedAt > discount.endsAt) return null;
  if (discount.periods !== null && discount.periodsUsed >= discount.periods) return null;
  if (coupon.appliesToPlanIds && !coupon.appliesToPlanIds.includes(sub.planId)) return null;
  if (coupon.percentOff !== null) return { spec: { percentOff: coupon.percentOff }, d };
  if (coupon.amountOff !== null && coupon.currency === sub.currency) return { spec: { amountOff: coupon.amountOff }, d };
  return null;
}

/**
 * What an invoice that used a discount writes in its own batch: the amount it took (shown on the invoice), and for
 * a period invoice one period counted — the discount ends with the batch of its last period, and the
 * subscription's mirror columns are cleared then. Guarded on the count read, so a replayed run cannot count twice.
 */
export function discountUsedStatements(db: Db, input: { invoiceId: string; d: CurrentDiscount; amount: number; countsPeriod: boolean; now: number }): BatchItem<"sqlite">[] {
  const { discount } = input.d;
  const out: BatchItem<"sqlite">[] = [
    db.insert(invoiceDiscounts).values({ invoiceId: input.invoiceId, discountId: discount.id, couponId: discount.couponId, promotionCodeId: discount.promotionCodeId, amount: input.amount }),
  ];
  if (input.countsPeriod && discount.periods !== null) {
    const last = discount.periodsUsed + 1 >= discount.periods;
    out.push(
      db
        .update(discounts)
        .set({ periodsUsed: discount.periodsUsed + 1, ...(last ? { endedAt: input.now } : {}) })
        .where(and(eq(discounts.id, discount.id), eq(discounts.periodsUsed, discount.periodsUsed), isNull(discounts.endedAt))),
      assertChanged(db),
    );
    if (last) out.push(db.update(subscriptions).set({ discountPercent: null, discountUntil: null, discount: null }).where(eq(subscriptions.id, discount.subscriptionId)));
    else {
      const used = discount.periodsUsed + 1;
      // The subscription object's mirror of this discount counts the period too.
      out.push(
        db
          .update(subscriptions)
          .set({ discount: sql`json_set(${subscriptions.discount}, '$.periodsUsed', ${used}, '$.periodsRemaining', ${discount.periods - used})` })
          .where(and(eq(subscriptions.id, discount.subscriptionId), sql`json_extract(${subscriptions.discount}, '$.id') = ${discount.id}`)),
      );
    }
  }
  return out;
}

/** The discounts an invoice shows (Stripe's total_discount_amounts). */
export async function invoiceDiscountsOf(db: Db, invoiceId: string) {
  return db.select().from(invoiceDiscounts).where(eq(invoiceDiscounts.invoiceId, invoiceId)).all();
}

