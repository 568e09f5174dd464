import type { Services } from "../../platform/services";
import { eq } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type { AuditEntry } from "../../platform/audit";
import { eventInsert, eventRow, eventsCommitted, type EventDraft } from "../../platform/events";
import { subscriptions } from "../../db/schema";
import { formatDecimal, ONE, parseDecimal } from "../../domain/decimal";
import { conflict, invalid, ok, valueOrThrow, type Outcome } from "../../platform/failure";
import { commitSubscriptionChange } from "./commit";
import { legacyPercentCoupon, percentOf, redemptionConflict, redemptionStatements, type Redemption } from "../coupons/service";
import { currentDiscount, mirrorOf, newDiscount, replaceDiscountStatements, toDiscount, type DiscountRow } from "../coupons/discounts";
import { planVersion } from "../invoices/invoice-builder";

type SubscriptionRow = typeof subscriptions.$inferSelect;

/** A stored percentage (an offer's payload) in canonical form: one that fails `percentOf` is a bug, so it throws. */
export const discountPercentOf = (raw: string | number, path = "discountPercent"): string => valueOrThrow(percentOf(raw, path));

/** True when `a` is a larger discount than `b` (null: none). */
export function largerDiscount(a: string, b: string | null): boolean {
  if (b === null) return true;
  const x = parseDecimal(a);
  const y = parseDecimal(b);
  return !y.ok || (x.ok && x.value > y.value);
}

const discountEvent = (type: "customer.discount.created" | "customer.discount.deleted", d: DiscountRow, testClockId: string | null): EventDraft => ({
  type,
  objectType: "discount",
  objectId: d.id,
  customerId: d.customerId,
  object: toDiscount(d),
  ...(testClockId ? { livemode: false } : {}),
});

/**
 * Applies a coupon (a redemption: coupon, maybe through a promotion code) to the subscription from its next
 * invoice on, replacing the discount it had; with null, removes the discount. The redemption counters, the
 * discount rows, the subscription's mirror columns (`discountPercent`, `discountUntil`), the events and the audit
 * rows commit in one batch; a limit reached meanwhile (concurrent redemptions) aborts it with a 409 naming it.
 */
export async function applyDiscount(
  s: Services,
  sub: SubscriptionRow,
  redemption: Redemption | null,
  opts: { endsAt?: number | null; reason?: string | undefined; statements?: BatchItem<"sqlite">[]; audit?: AuditEntry[] } = {},
): Promise<Outcome<SubscriptionRow, "conflict">> {
  const { db, audit: ctx } = s;
  if (sub.status === "canceled") return conflict(`subscription ${sub.id} is canceled`, [{ path: "id", message: "canceled" }]);
  // A past end is refused by setDiscount, the one caller that takes it from a request.
  const endsAt = redemption ? (opts.endsAt ?? null) : null;
  const before = await currentDiscount(db, sub.id);
  const plan = await planVersion(db, sub.planId, sub.planVersion);
  const next = redemption ? newDiscount(redemption, sub, plan, ctx.now, endsAt) : null;
  const events = [
    ...(before ? [eventRow(discountEvent("customer.discount.deleted", { ...before.discount, endedAt: ctx.now }, sub.testClockId), ctx)] : []),
    ...(next ? [eventRow(discountEvent("customer.discount.created", next, sub.testClockId), ctx)] : []),
  ];
  const statements = [...(redemption ? redemptionStatements(db, redemption, ctx.now) : []), ...replaceDiscountStatements(db, sub.id, next, ctx.now), ...events.map((e) => eventInsert(db, e)), ...(opts.statements ?? [])];
  const mirror = mirrorOf(next && redemption ? { discount: next, coupon: redemption.coupon } : null);
  const audit: AuditEntry[] = [
    {
      action: "subscription.discount_changed",
      targetType: "subscription",
      targetId: sub.id,
      before: { discountPercent: sub.discountPercent, until: sub.discountUntil, couponId: before?.coupon.id ?? null },
      after: { discountPercent: mirror.discountPercent, until: mirror.discountUntil, couponId: redemption?.coupon.id ?? null, promotionCodeId: redemption?.promotionCode?.id ?? null, periods: next?.periods ?? null },
      ...(opts.reason ? { reason: opts.reason } : {}),
    },
    ...(opts.audit ?? []),
  ];
  if (!(await commitSubscriptionChange(db, sub, mirror, statements, audit, ctx))) {
    return (redemption ? await redemptionConflict(db, redemption, ctx.now) : null) ?? conflict(`subscription ${sub.id} changed concurrently; retry`);
  }
  eventsCommitted(events.map((e) => e.id));
  return ok((await db.select().from(subscriptions).where(eq(subscriptions.id, sub.id)).get())!);
}

/**
 * Today's percentage discount (PUT /discount, a retention offer), mapped onto coupons: a forever coupon per
 * percentage (`legacy_pct_25`, or the given coupon), bounded in time by `until` when given; null removes it.
 */
export async function setDiscount(
  s: Services,
  sub: SubscriptionRow,
  input: { discountPercent: string | null; until?: number | null | undefined; reason?: string | undefined; coupon?: { id: string; name: string } },
  extra: { statements?: BatchItem<"sqlite">[]; audit?: AuditEntry[] } = {},
): Promise<Outcome<SubscriptionRow, "conflict" | "unprocessable">> {
  // A canceled subscription is refused first (409, by applyDiscount), then an end that is not in the future (422).
  if (sub.status !== "canceled" && input.discountPercent !== null && input.until != null && input.until <= s.audit.now) {
    return invalid([{ path: "until", message: "must be in the future" }]);
  }
  const redemption: Redemption | null =
    input.discountPercent === null
      ? null
      : { coupon: legacyPercentCoupon(input.discountPercent, s.audit.now, input.coupon?.id, input.coupon?.name), promotionCode: null, insertCoupon: true };
  return applyDiscount(s, sub, redemption, { endsAt: input.until ?? null, reason: input.reason, ...extra });
}
