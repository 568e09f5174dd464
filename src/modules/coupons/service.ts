import { and, eq, gt, isNull, sql } from "drizzle-orm";
import type { Services } from "../../platform/services";
import type { BatchItem } from "drizzle-orm/batch";
import type { z } from "@hono/zod-openapi";
import type { Db } from "../../db/client";
import { change, commit } from "../../platform/change-set";
import type { EventDraft } from "../../platform/events";
import { newestFirstPage } from "../../platform/pagination";
import { assertChanged, isUniqueViolation } from "../../db/assert";
import { coupons, invoices, promotionCodes } from "../../db/schema";
import { formatDecimal, ONE, parseDecimal } from "../../domain/decimal";
import { money, toMinor } from "../../domain/money";
import { asField, conflict, fail, invalid, notFound, ok, type Outcome } from "../../platform/failure";
import { newId } from "../../lib/ids";
import { iso } from "../../lib/time";
import type { CreateCoupon, CreatePromotionCode, Coupon, PromotionCode } from "./schemas";

export type CouponRow = typeof coupons.$inferSelect;
export type PromotionCodeRow = typeof promotionCodes.$inferSelect;

/** A percentage: 0-100 with at most 4 decimals, in canonical form ("25", "12.5"). */
export function percentOf(raw: string | number, path = "percentOff"): Outcome<string, "unprocessable"> {
  const pct = parseDecimal(raw, 4);
  if (!pct.ok || pct.value < 0n || pct.value > 100n * ONE) return invalid([{ path, message: "must be a percentage between 0 and 100 with at most 4 decimals" }]);
  return ok(formatDecimal(pct.value));
}

/** Why a coupon cannot be redeemed at `now`, or null. */
export function couponUnavailable(c: CouponRow, now: number): string | null {
  if (c.deletedAt !== null) return `coupon ${c.id} was deleted`;
  if (c.redeemBy !== null && c.redeemBy <= now) return `coupon ${c.id} could be redeemed until ${iso(c.redeemBy)}`;
  if (c.maxRedemptions !== null && c.timesRedeemed >= c.maxRedemptions) return `coupon ${c.id} reached its maxRedemptions (${c.maxRedemptions})`;
  return null;
}

export function toCoupon(r: CouponRow, now: number): z.infer<typeof Coupon> {
  return {
    id: r.id,
    object: "coupon",
    name: r.name,
    percentOff: r.percentOff,
    amountOff: r.amountOff !== null && r.currency ? money(r.amountOff, r.currency) : null,
    duration: r.duration,
    durationInMonths: r.durationInMonths,
    maxRedemptions: r.maxRedemptions,
    timesRedeemed: r.timesRedeemed,
    redeemBy: iso(r.redeemBy),
    appliesTo: r.appliesToPlanIds ? { planIds: r.appliesToPlanIds } : null,
    valid: couponUnavailable(r, now) === null,
    metadata: r.metadata,
    deletedAt: iso(r.deletedAt),
    createdAt: iso(r.createdAt),
  };
}

export function toPromotionCode(r: PromotionCodeRow): z.infer<typeof PromotionCode> {
  return {
    id: r.id,
    object: "promotion_code",
    code: r.code,
    couponId: r.couponId,
    customerId: r.customerId,
    expiresAt: iso(r.expiresAt),
    maxRedemptions: r.maxRedemptions,
    timesRedeemed: r.timesRedeemed,
    firstTimeTransaction: r.firstTimeTransaction,
    active: r.active,
    createdAt: iso(r.createdAt),
  };
}

const couponEvent = (type: "coupon.created" | "coupon.deleted", r: CouponRow, now: number): EventDraft => ({ type, objectType: "coupon", objectId: r.id, object: toCoupon(r, now) });
const codeEvent = (type: "promotion_code.created" | "promotion_code.updated", r: PromotionCodeRow, prev: Record<string, unknown> | null = null): EventDraft => ({
  type,
  objectType: "promotion_code",
  objectId: r.id,
  customerId: r.customerId,
  object: toPromotionCode(r),
  previousAttributes: prev,
});

/** A coupon row from the API's input: exactly one of percentOff and amountOff (+ currency), durationInMonths only for repeating. */
export function couponFromInput(input: z.infer<typeof CreateCoupon>, now: number): Outcome<CouponRow, "unprocessable"> {
  const errors: { path: string; message: string }[] = [];
  if ((input.percentOff === undefined) === (input.amountOff === undefined)) errors.push({ path: "percentOff", message: "give exactly one of percentOff and amountOff" });
  let amountOff: number | null = null;
  if (input.amountOff !== undefined) {
    if (!input.currency) errors.push({ path: "currency", message: "is required with amountOff" });
    else {
      const m = toMinor(input.amountOff, input.currency);
      if (!m.ok) errors.push({ path: "amountOff", message: m.error });
      else if (m.value <= 0) errors.push({ path: "amountOff", message: "must be greater than 0" });
      else amountOff = m.value;
    }
  }
  if (input.duration === "repeating" && input.durationInMonths === undefined) errors.push({ path: "durationInMonths", message: "is required when duration is repeating" });
  if (input.duration !== "repeating" && input.durationInMonths !== undefined) errors.push({ path: "durationInMonths", message: "only applies to duration repeating" });
  const redeemBy = input.redeemBy ? Date.parse(input.redeemBy) : null;
  if (redeemBy !== null && redeemBy <= now) errors.push({ path: "redeemBy", message: "must be in the future" });
  // A malformed percentage is answered alone, before the other errors.
  const pct = input.percentOff !== undefined ? percentOf(input.percentOff) : ok(null);
  if (!pct.ok) return pct;
  const percentOff = pct.value;
  if (errors.length) return invalid(errors);
  return ok({
    id: input.id ?? newId("cpn"),
    name: input.name ?? null,
    percentOff,
    amountOff,
    currency: amountOff !== null ? input.currency! : null,
    duration: input.duration,
    durationInMonths: input.durationInMonths ?? null,
    maxRedemptions: input.maxRedemptions ?? null,
    timesRedeemed: 0,
    redeemBy,
    appliesToPlanIds: input.appliesTo?.planIds ?? null,
    metadata: input.metadata ?? {},
    deletedAt: null,
    createdAt: now,
  });
}

export async function createCoupon(s: Services, input: z.infer<typeof CreateCoupon>): Promise<Outcome<z.infer<typeof Coupon>, "conflict" | "unprocessable">> {
  const { db, audit: ctx } = s;
  const built = couponFromInput(input, ctx.now);
  if (!built.ok) return built;
  const row = built.value;
  try {
    await commit(db, change({ statements: [db.insert(coupons).values(row)], audit: [{ action: "coupon.created", targetType: "coupon", targetId: row.id, after: toCoupon(row, ctx.now) }], events: [couponEvent("coupon.created", row, ctx.now)] }), ctx);
  } catch (e) {
    if (isUniqueViolation(e, "coupons.id")) return conflict(`coupon ${row.id} already exists`, [{ path: "id", message: "already exists" }]);
    throw e;
  }
  return ok(toCoupon(row, ctx.now));
}

export async function getCouponRow(db: Db, id: string): Promise<Outcome<CouponRow, "not_found">> {
  const row = await db.select().from(coupons).where(eq(coupons.id, id)).get();
  return row ? ok(row) : notFound("coupon", id);
}

export const listCoupons = (db: Db, q: { limit: number; startingAfter?: string | undefined }, now: number) =>
  newestFirstPage(db, { table: coupons, id: coupons.id, createdAt: coupons.createdAt }, q, [], (r) => toCoupon(r, now));

/** Deleting stops new redemptions; subscriptions that have the coupon keep their discount (Stripe's rule). */
export async function deleteCoupon(s: Services, id: string): Promise<Outcome<z.infer<typeof Coupon>, "not_found">> {
  const { db, audit: ctx } = s;
  const found = await getCouponRow(db, id);
  if (!found.ok) return found;
  const row = found.value;
  if (row.deletedAt !== null) return ok(toCoupon(row, ctx.now));
  const after = { ...row, deletedAt: ctx.now };
  await commit(
    db,
    change({
      statements: [db.update(coupons).set({ deletedAt: ctx.now }).where(and(eq(coupons.id, id), isNull(coupons.deletedAt))), assertChanged(db)],
      audit: [{ action: "coupon.deleted", targetType: "coupon", targetId: id, before: { deletedAt: null }, after: { deletedAt: iso(ctx.now) } }],
      events: [couponEvent("coupon.deleted", after, ctx.now)],
    }),
    ctx,
  );
  return ok(toCoupon(after, ctx.now));
}

export async function createPromotionCode(s: Services, input: z.infer<typeof CreatePromotionCode>): Promise<Outcome<z.infer<typeof PromotionCode>, "conflict" | "unprocessable">> {
  const { db, audit: ctx } = s;
  // The coupon is a field of the request: an unknown one is a 422 on couponId, not a 404.
  const found = asField(await getCouponRow(db, input.couponId), "couponId");
  if (!found.ok) return found;
  const coupon = found.value;
  if (coupon.deletedAt !== null) return invalid([{ path: "couponId", message: `coupon ${coupon.id} was deleted` }]);
  const expiresAt = input.expiresAt ? Date.parse(input.expiresAt) : null;
  if (expiresAt !== null && expiresAt <= ctx.now) return invalid([{ path: "expiresAt", message: "must be in the future" }]);
  const row: PromotionCodeRow = {
    id: newId("promo"),
    couponId: coupon.id,
    code: input.code.toUpperCase(),
    customerId: input.customerId ?? null,
    expiresAt,
    maxRedemptions: input.maxRedemptions ?? null,
    timesRedeemed: 0,
    firstTimeTransaction: input.firstTimeTransaction ?? false,
    active: true,
    createdAt: ctx.now,
    updatedAt: ctx.now,
  };
  try {
    await commit(db, change({ statements: [db.insert(promotionCodes).values(row)], audit: [{ action: "promotion_code.created", targetType: "promotion_code", targetId: row.id, after: toPromotionCode(row) }], events: [codeEvent("promotion_code.created", row)] }), ctx);
  } catch (e) {
    if (isUniqueViolation(e, "promotion_codes.code")) return conflict(`promotion code ${row.code} already exists`, [{ path: "code", message: "already exists" }]);
    throw e;
  }
  return ok(toPromotionCode(row));
}

export async function getPromotionCodeRow(db: Db, id: string): Promise<Outcome<PromotionCodeRow, "not_found">> {
  const row = await db.select().from(promotionCodes).where(eq(promotionCodes.id, id)).get();
  return row ? ok(row) : notFound("promotion code", id);
}

export const listPromotionCodes = (db: Db, q: { limit: number; startingAfter?: string | undefined; couponId?: string | undefined; code?: string | undefined }) =>
  newestFirstPage(
    db,
    { table: promotionCodes, id: promotionCodes.id, createdAt: promotionCodes.createdAt },
    q,
    [q.couponId ? eq(promotionCodes.couponId, q.couponId) : undefined, q.code ? eq(promotionCodes.code, q.code.toUpperCase()) : undefined],
    toPromotionCode,
  );

export async function deactivatePromotionCode(s: Services, id: string): Promise<Outcome<z.infer<typeof PromotionCode>, "not_found">> {
  const { db, audit: ctx } = s;
  const found = await getPromotionCodeRow(db, id);
  if (!found.ok) return found;
  const row = found.value;
  if (!row.active) return ok(toPromotionCode(row));
  const after = { ...row, active: false, updatedAt: ctx.now };
  await commit(
    db,
    change({
      statements: [db.update(promotionCodes).set({ active: false, updatedAt: ctx.now }).where(and(eq(promotionCodes.id, id), eq(promotionCodes.active, true))), assertChanged(db)],
      audit: [{ action: "promotion_code.deactivated", targetType: "promotion_code", targetId: id, before: { active: true }, after: { active: false } }],
      events: [codeEvent("promotion_code.updated", after, { active: true })],
    }),
    ctx,
  );
  return ok(toPromotionCode(after));
}

/** A redemption about to be made: the coupon, and the promotion code it came through (if any). */
export type Redemption = { coupon: CouponRow; promotionCode: PromotionCodeRow | null; insertCoupon?: boolean };

const unprocessable = (path: string, message: string) => fail("unprocessable", message, [{ path, message }]);

/**
 * The coupon a request names (a coupon id or a promotion code), checked for this customer, plan and currency at
 * `now`: 404 when unknown, 422 when it cannot be used here, 409 when a limit is reached. The limits are checked
 * again by the redeeming batch itself (redemptionStatements), which is what makes them race-safe.
 */
export async function resolveRedemption(
  db: Db,
  input: { coupon?: string | undefined; promotionCode?: string | undefined },
  target: { customerId: string; planId: string; currency: string; now: number },
): Promise<Outcome<Redemption | null, "unprocessable" | "conflict">> {
  if (input.coupon !== undefined && input.promotionCode !== undefined) return invalid([{ path: "coupon", message: "give either coupon or promotionCode, not both" }]);
  let promo: PromotionCodeRow | null = null;
  let couponId = input.coupon;
  if (input.promotionCode !== undefined) {
    promo = (await db.select().from(promotionCodes).where(eq(promotionCodes.code, input.promotionCode.toUpperCase())).get()) ?? null;
    if (!promo) return unprocessable("promotionCode", `no promotion code ${input.promotionCode}`);
    if (!promo.active) return unprocessable("promotionCode", `promotion code ${promo.code} is inactive`);
    if (promo.expiresAt !== null && promo.expiresAt <= target.now) return unprocessable("promotionCode", `promotion code ${promo.code} expired at ${iso(promo.expiresAt)}`);
    if (promo.customerId !== null && promo.customerId !== target.customerId) return unprocessable("promotionCode", `promotion code ${promo.code} belongs to another customer`);
    if (promo.maxRedemptions !== null && promo.timesRedeemed >= promo.maxRedemptions) {
      return conflict(`promotion code ${promo.code} reached its maxRedemptions (${promo.maxRedemptions})`, [{ path: "promotionCode", message: "fully redeemed" }]);
    }
    if (promo.firstTimeTransaction) {
      const paid = await db.select({ id: invoices.id }).from(invoices).where(and(eq(invoices.customerId, target.customerId), eq(invoices.status, "paid"), gt(invoices.amountPaid, 0))).limit(1).get();
      if (paid) return unprocessable("promotionCode", `promotion code ${promo.code} is for first-time customers only; ${target.customerId} already paid an invoice`);
    }
    couponId = promo.couponId;
  }
  if (couponId === undefined) return ok(null);
  const coupon = await db.select().from(coupons).where(eq(coupons.id, couponId)).get();
  if (!coupon) return unprocessable(promo ? "promotionCode" : "coupon", `coupon ${couponId} does not exist`);
  const why = couponUnavailable(coupon, target.now);
  if (why) return fail(why.includes("maxRedemptions") ? "conflict" : "unprocessable", why, [{ path: promo ? "promotionCode" : "coupon", message: why }]);
  if (coupon.currency !== null && coupon.currency !== target.currency) return unprocessable("coupon", `coupon ${coupon.id} is in ${coupon.currency}, the subscription in ${target.currency}`);
  if (coupon.appliesToPlanIds && !coupon.appliesToPlanIds.includes(target.planId)) return unprocessable("coupon", `coupon ${coupon.id} applies to plans ${coupon.appliesToPlanIds.join(", ")} only`);
  return ok({ coupon, promotionCode: promo });
}

/**
 * The guarded counter moves of a redemption, for the redeeming batch: each UPDATE only applies while the limit
 * is not reached (and the coupon not deleted, the code still active), and the assertion after it aborts the whole
 * batch otherwise, so N concurrent redemptions of a code with room for k succeed exactly k times.
 */
export function redemptionStatements(db: Db, r: Redemption, now: number): BatchItem<"sqlite">[] {
  const out: BatchItem<"sqlite">[] = [];
  if (r.insertCoupon) out.push(db.insert(coupons).values(r.coupon).onConflictDoNothing());
  out.push(
    db
      .update(coupons)
      .set({ timesRedeemed: sql`${coupons.timesRedeemed} + 1` })
      .where(and(eq(coupons.id, r.coupon.id), isNull(coupons.deletedAt), sql`(${coupons.maxRedemptions} IS NULL OR ${coupons.timesRedeemed} < ${coupons.maxRedemptions})`, sql`(${coupons.redeemBy} IS NULL OR ${coupons.redeemBy} > ${now})`)),
    assertChanged(db),
  );
  if (r.promotionCode) {
    out.push(
      db
        .update(promotionCodes)
        .set({ timesRedeemed: sql`${promotionCodes.timesRedeemed} + 1`, updatedAt: now })
        .where(and(eq(promotionCodes.id, r.promotionCode.id), eq(promotionCodes.active, true), sql`(${promotionCodes.maxRedemptions} IS NULL OR ${promotionCodes.timesRedeemed} < ${promotionCodes.maxRedemptions})`)),
      assertChanged(db),
    );
  }
  return out;
}

/** After a redeeming batch failed its assertion: the 409 naming the limit that was reached, when one was. */
export async function redemptionConflict(db: Db, r: Redemption, now: number): Promise<Outcome<never, "conflict"> | null> {
  if (r.promotionCode) {
    const p = await db.select().from(promotionCodes).where(eq(promotionCodes.id, r.promotionCode.id)).get();
    if (p && p.maxRedemptions !== null && p.timesRedeemed >= p.maxRedemptions) return conflict(`promotion code ${p.code} reached its maxRedemptions (${p.maxRedemptions})`, [{ path: "promotionCode", message: "fully redeemed" }]);
    if (p && !p.active) return conflict(`promotion code ${p.code} was deactivated`, [{ path: "promotionCode", message: "inactive" }]);
  }
  const c = await db.select().from(coupons).where(eq(coupons.id, r.coupon.id)).get();
  const why = c ? couponUnavailable(c, now) : null;
  return why ? conflict(why, [{ path: r.promotionCode ? "promotionCode" : "coupon", message: why }]) : null;
}

/** The coupon today's `discountPercent` maps onto: one forever coupon per percentage (as the migration made them). */
export function legacyPercentCoupon(percent: string, now: number, id = `legacy_pct_${percent.replace(".", "_")}`, name = `${percent}% off`): CouponRow {
  return { id, name, percentOff: percent, amountOff: null, currency: null, duration: "forever", durationInMonths: null, maxRedemptions: null, timesRedeemed: 0, redeemBy: null, appliesToPlanIds: null, metadata: {}, deletedAt: null, createdAt: now };
}
