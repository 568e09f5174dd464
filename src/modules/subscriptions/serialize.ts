import type { z } from "@hono/zod-openapi";
import type { subscriptions } from "../../db/schema";
import { iso } from "../../lib/time";
import type { Subscription } from "./schemas";

type Row = typeof subscriptions.$inferSelect;

/** The subscription as the REST API returns it (and as events carry it in `data.object`). */
export function toSubscription(r: Row): z.infer<typeof Subscription> {
  return {
    id: r.id,
    customerId: r.customerId,
    planId: r.planId,
    planVersion: r.planVersion,
    status: r.status,
    quantity: r.quantity,
    currency: r.currency,
    paymentMethod: r.paymentMethod,
    billingAnchor: iso(r.billingAnchor),
    currentPeriodStart: iso(r.currentPeriodStart),
    currentPeriodEnd: iso(r.currentPeriodEnd),
    trialEnd: iso(r.trialEnd),
    cancelAtPeriodEnd: r.cancelAtPeriodEnd,
    canceledAt: iso(r.canceledAt),
    pausedUntil: iso(r.pausedUntil),
    pauseReason: r.pauseReason,
    cancelReason: r.cancelReason,
    cancelFeedback: r.cancelFeedback,
    endedAt: iso(r.endedAt),
    discountPercent: r.discountPercent,
    discountUntil: iso(r.discountUntil),
    discount: r.discount ?? null,
    pendingChange:
      r.pendingPlanId && r.pendingChangeAt !== null
        ? {
            planId: r.pendingPlanId,
            planVersion: r.pendingPlanVersion ?? 1,
            quantity: r.pendingQuantity ?? r.quantity,
            effectiveAt: iso(r.pendingChangeAt),
            prorationBehavior: r.pendingInvoiceNow ? "always_invoice" : r.pendingProrate === false ? "none" : "create_prorations",
          }
        : null,
    testClockId: r.testClockId,
    metadata: r.metadata,
    createdAt: iso(r.createdAt),
  };
}
