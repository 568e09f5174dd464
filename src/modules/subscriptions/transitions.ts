import { and, eq } from "drizzle-orm";
import type { Db } from "../../db/client";
import { subscriptions, type SubscriptionStatus } from "../../db/schema";
import type { AuditContext } from "../../db/audit";
import { defineLifecycle } from "../../domain/lifecycle";
import { change, type ChangeSet } from "../../platform/change-set";

/** The subscription lifecycle (owner: this module). */
export const subscriptionLifecycle = defineLifecycle<SubscriptionStatus>("subscription", {
  trialing: ["active", "past_due", "paused", "canceled"],
  active: ["past_due", "paused", "canceled"],
  past_due: ["active", "paused", "canceled"],
  paused: ["active", "trialing", "canceled"],
  canceled: [],
});

/**
 * A payment's effect on its subscription, for the payment owner's change set: a final failure moves an active
 * subscription to past_due; a success moves a past_due one back to active. Guarded by the state it leaves, so it is
 * a no-op when the subscription is elsewhere.
 * TODO(issue 10, subscription owner): emit customer.subscription.updated with the REST object when it applies.
 */
export function subscriptionAfterPayment(db: Db, subscriptionId: string, outcome: "succeeded" | "failed_final", ctx: AuditContext): ChangeSet {
  const [from, to]: [SubscriptionStatus, SubscriptionStatus] = outcome === "succeeded" ? ["past_due", "active"] : ["active", "past_due"];
  return change({
    statements: [db.update(subscriptions).set({ status: to, updatedAt: ctx.now }).where(and(eq(subscriptions.id, subscriptionId), eq(subscriptions.status, from)))],
  });
}
