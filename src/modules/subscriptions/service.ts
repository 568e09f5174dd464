import { and, eq } from "drizzle-orm";
import type { Services } from "../../platform/services";
import type { z } from "@hono/zod-openapi";
import type { Db } from "../../db/client";
import type { BatchItem } from "drizzle-orm/batch";
import type { AuditEntry } from "../../platform/audit";
import { commit } from "../../platform/change-set";
import { subscriptionCreated } from "./transitions";
import { billingLines, partialPeriodLines } from "../../domain/invoice";
import { isAssertionFailure } from "../../db/assert";
import { eventInsert, eventRow } from "../../platform/events";
import { legacyPercentCoupon, percentOf, redemptionConflict, redemptionStatements, resolveRedemption, type Redemption } from "../coupons/service";
import { mirrorOf, newDiscount, replaceDiscountStatements, toDiscount, type DiscountRow } from "../coupons/discounts";
import { asPrices, buildDraftInvoice } from "../invoices/invoice-builder";
import { finalizeInvoice } from "../invoices/finalize";
import { newestFirstPage } from "../../platform/pagination";
import { subscriptions, type SubscriptionStatus } from "../../db/schema";
import { periodAt } from "../../domain/periods";
import { newId } from "../../lib/ids";
import { DAY_MS } from "../../lib/time";
import { getCustomerRow, notDeleted } from "../customers/service";
import { asField, conflict, invalid, notFound, ok, type Outcome } from "../../platform/failure";
import { getPlanRow } from "../plans/service";
import { pushMeterConfig } from "../usage/meter-config";
import type { CreateSubscription } from "./schemas";

type Row = typeof subscriptions.$inferSelect;

import { toSubscription } from "./serialize";
import { eventsCommitted } from "../../platform/events";

export { toSubscription };

/**
 * Starts a subscription on the plan's latest version. With a trial, the first period is the trial itself
 * and the billing anchor defaults to its end; otherwise periods follow the anchor (default: now).
 */
export async function createSubscription(s: Services, input: z.infer<typeof CreateSubscription>): Promise<Outcome<ReturnType<typeof toSubscription>, "conflict" | "unprocessable">> {
  const { env, db, audit: ctx } = s;
  // Only "does not exist" is the client's fault; any other failure (D1 down) stays a 5xx.
  const found = asField(await getCustomerRow(db, input.customerId), "customerId");
  if (!found.ok) return found;
  const live = notDeleted(found.value);
  if (!live.ok) return live;
  const customer = live.value;
  const foundPlan = asField(await getPlanRow(db, input.planId), "planId");
  if (!foundPlan.ok) return foundPlan;
  const plan = foundPlan.value;
  if (plan.currency !== customer.currency) {
    return invalid([{ path: "planId", message: `plan is billed in ${plan.currency} but the customer pays in ${customer.currency}` }]);
  }
  if (input.testClockId !== undefined && input.testClockId !== customer.testClockId) {
    return invalid([{ path: "testClockId", message: "must be the customer's test clock (subscriptions live on their customer's clock)" }]);
  }
  // On a test clock, "now" is the clock's frozen time.
  const now = (await s.clock.frozen(customer.testClockId)) ?? ctx.now;
  const trialDays = input.trialDays ?? plan.trialDays;
  const trialEnd = trialDays > 0 ? now + trialDays * DAY_MS : null;
  const anchor = input.billingAnchor ? Date.parse(input.billingAnchor) : (trialEnd ?? now);
  let start: number;
  let end: number;
  if (trialEnd !== null) {
    start = now;
    end = trialEnd;
  } else {
    const p = periodAt(anchor, plan.interval, plan.intervalCount, now);
    // An anchor off today's grid makes the first period a partial one: it never starts before the subscription.
    start = Math.max(p.start, now);
    end = p.end;
  }
  // A coupon, a promotion code, or (kept for compatibility) a bare percentage mapped onto its legacy coupon.
  if (input.discountPercent !== undefined && (input.coupon !== undefined || input.promotionCode !== undefined)) {
    return invalid([{ path: "discountPercent", message: "give either discountPercent or a coupon / promotionCode" }]);
  }
  let redemption: Redemption | null;
  if (input.discountPercent !== undefined) {
    const percent = percentOf(input.discountPercent, "discountPercent");
    if (!percent.ok) return percent;
    redemption = { coupon: legacyPercentCoupon(percent.value, now), promotionCode: null, insertCoupon: true };
  } else {
    const resolved = await resolveRedemption(db, { coupon: input.coupon, promotionCode: input.promotionCode }, { customerId: customer.id, planId: plan.id, currency: plan.currency, now });
    if (!resolved.ok) return resolved;
    redemption = resolved.value;
  }
  const { discountPercent } = mirrorOf(redemption ? { coupon: redemption.coupon, discount: { endsAt: null } as DiscountRow } : null);
  const status: SubscriptionStatus = trialEnd !== null ? "trialing" : "active";
  const row: Row = {
    id: newId("sub"),
    customerId: customer.id,
    planId: plan.id,
    planVersion: plan.version,
    status,
    quantity: input.quantity,
    paymentMethod: input.paymentMethod ?? null,
    currency: plan.currency,
    billingAnchor: anchor,
    currentPeriodStart: start,
    currentPeriodEnd: end,
    trialEnd,
    cancelAtPeriodEnd: false,
    canceledAt: null,
    pausedUntil: null,
    testClockId: customer.testClockId,
    metadata: input.metadata ?? {},
    pauseReason: null,
    cancelReason: null,
    cancelFeedback: null,
    endedAt: null,
    trialConvertedAt: null,
    pendingPlanId: null,
    pendingPlanVersion: null,
    pendingQuantity: null,
    pendingChangeAt: null,
    pendingProrate: null,
    pendingInvoiceNow: null,
    discountPercent,
    discountUntil: null,
    // prorationBehavior none on a partial first period: its arrears fees run from its end, i.e. nothing is billed.
    arrearsFrom: trialEnd === null && input.prorationBehavior === "none" && start > periodAt(anchor, plan.interval, plan.intervalCount, now).start ? end : null,
    configVersion: 1,
    meterSyncedVersion: 0,
    createdAt: now,
    updatedAt: now,
    discount: null,
  };
  // An active subscription is invoiced at once for its first period's advance fees, in the same batch. A first
  // period shorter than the grid's (an anchor off today's grid) is prorated unless prorationBehavior is none.
  const full = trialEnd === null ? periodAt(anchor, plan.interval, plan.intervalCount, now) : null;
  const partial = full !== null && start > full.start;
  const firstLines =
    status !== "active"
      ? []
      : partial
        ? input.prorationBehavior === "none"
          ? []
          : partialPeriodLines({ currency: row.currency, full: full!, from: start, plan: { prices: asPrices(plan.prices), quantity: row.quantity, name: plan.name } })
        : billingLines({ currency: row.currency, quantity: row.quantity, planName: plan.name, advance: { prices: asPrices(plan.prices), period: { start, end } }, arrears: null, pending: [] });
  const discount = redemption ? newDiscount(redemption, row, plan, now) : null;
  row.discount = discount ? toDiscount(discount) : null;
  const audit: AuditEntry[] = [{ action: "subscription.created", targetType: "subscription", targetId: row.id, after: toSubscription(row) }];
  const discountEvents = discount ? [eventRow({ type: "customer.discount.created", objectType: "discount", objectId: discount.id, customerId: row.customerId, object: toDiscount(discount), ...(row.testClockId ? { livemode: false } : {}) }, { now, requestId: ctx.requestId })] : [];
  let statements: BatchItem<"sqlite">[] = redemption && discount ? [...redemptionStatements(db, redemption, now), ...replaceDiscountStatements(db, row.id, discount, now), ...discountEvents.map((e) => eventInsert(db, e))] : [];
  if (redemption) audit.push({ action: "subscription.discount_changed", targetType: "subscription", targetId: row.id, after: { couponId: redemption.coupon.id, promotionCodeId: redemption.promotionCode?.id ?? null, periods: discount?.periods ?? null } });
  let invoiceId: string | null = null;
  let createdEvents: string[] = discountEvents.map((e) => e.id);
  if (firstLines.length) {
    const built = await buildDraftInvoice(db, {
      sub: row,
      customer,
      lines: firstLines,
      pending: [],
      period: { start, end },
      billingReason: "subscription_create",
      generationKey: `${row.id}:create`,
      now,
      discount: discount && redemption ? { discount, coupon: redemption.coupon } : null,
    });
    statements = [...statements, ...built.statements];
    createdEvents = [...createdEvents, ...built.eventIds];
    audit.push(...built.audit);
    invoiceId = built.invoice.id;
    audit.push({ action: "invoice.created", targetType: "invoice", targetId: invoiceId, after: { subscriptionId: row.id, total: built.invoice.total, currency: row.currency } });
  }
  const auditCtx = { ...ctx, now };
  try {
    await commit(db, subscriptionCreated(db, row, { statements, audit }), auditCtx);
  } catch (e) {
    // A redemption limit reached by a concurrent request (or credit spent meanwhile) aborts the batch.
    if (!isAssertionFailure(e)) throw e;
    return (redemption ? await redemptionConflict(db, redemption, now) : null) ?? conflict("the customer's credit or the coupon changed concurrently; retry");
  }
  eventsCommitted(createdEvents);
  await pushMeterConfig(s, row, plan);
  if (invoiceId) await finalizeInvoice(s.withAudit(auditCtx), invoiceId);
  return ok(toSubscription(row));
}

export async function getSubscriptionRow(db: Db, id: string): Promise<Outcome<Row, "not_found">> {
  const row = await db.select().from(subscriptions).where(eq(subscriptions.id, id)).get();
  return row ? ok(row) : notFound("subscription", id);
}

export async function listSubscriptions(
  db: Db,
  q: { limit: number; startingAfter?: string | undefined; customerId?: string | undefined; status?: SubscriptionStatus | undefined },
) {
  return newestFirstPage(
    db,
    { table: subscriptions, id: subscriptions.id, createdAt: subscriptions.createdAt },
    q,
    [q.customerId ? eq(subscriptions.customerId, q.customerId) : undefined, q.status ? eq(subscriptions.status, q.status) : undefined],
    toSubscription,
  );
}

