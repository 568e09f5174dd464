import { and, eq } from "drizzle-orm";
import type { z } from "@hono/zod-openapi";
import type { Db } from "../../db/client";
import { commitWithAudit, type AuditContext } from "../../db/audit";
import { afterCursor, newestFirst, resolveCursor, toPage } from "../../db/pagination";
import { subscriptions, type SubscriptionStatus } from "../../db/schema";
import { periodAt } from "../../domain/periods";
import { invalid, notFound } from "../../http/problem";
import { newId } from "../../lib/ids";
import { iso } from "../../lib/time";
import { getCustomerRow } from "../customers/service";
import { getPlanRow } from "../plans/service";
import { pushMeterConfig } from "../usage/meter-config";
import type { CreateSubscription, Subscription } from "./schemas";

type Row = typeof subscriptions.$inferSelect;
const DAY_MS = 86_400_000;

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
    metadata: r.metadata,
    createdAt: iso(r.createdAt),
  };
}

/**
 * Starts a subscription on the plan's latest version. With a trial, the first period is the trial itself
 * and the billing anchor defaults to its end; otherwise periods follow the anchor (default: now).
 */
export async function createSubscription(env: Env, db: Db, input: z.infer<typeof CreateSubscription>, ctx: AuditContext) {
  const customer = await getCustomerRow(db, input.customerId).catch(() => {
    throw invalid([{ path: "customerId", message: `customer ${input.customerId} does not exist` }]);
  });
  const plan = await getPlanRow(db, input.planId).catch(() => {
    throw invalid([{ path: "planId", message: `plan ${input.planId} does not exist` }]);
  });
  if (plan.currency !== customer.currency) {
    throw invalid([{ path: "planId", message: `plan is billed in ${plan.currency} but the customer pays in ${customer.currency}` }]);
  }
  const now = ctx.now;
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
    start = p.start;
    end = p.end;
  }
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
    discountPercent: null,
    configVersion: 1,
    meterSyncedVersion: 0,
    createdAt: now,
    updatedAt: now,
  };
  await commitWithAudit(
    db,
    [db.insert(subscriptions).values(row)],
    [{ action: "subscription.created", targetType: "subscription", targetId: row.id, after: toSubscription(row) }],
    ctx,
  );
  await pushMeterConfig(env, db, row, plan);
  return toSubscription(row);
}

export async function getSubscriptionRow(db: Db, id: string): Promise<Row> {
  const row = await db.select().from(subscriptions).where(eq(subscriptions.id, id)).get();
  if (!row) throw notFound("subscription", id);
  return row;
}

export async function listSubscriptions(
  db: Db,
  q: { limit: number; startingAfter?: string | undefined; customerId?: string | undefined; status?: SubscriptionStatus | undefined },
) {
  const cursor = await resolveCursor(q.startingAfter, async (id) =>
    db.select({ id: subscriptions.id, createdAt: subscriptions.createdAt }).from(subscriptions).where(eq(subscriptions.id, id)).get(),
  );
  const rows = await db
    .select()
    .from(subscriptions)
    .where(
      and(
        afterCursor(subscriptions.createdAt, subscriptions.id, cursor),
        q.customerId ? eq(subscriptions.customerId, q.customerId) : undefined,
        q.status ? eq(subscriptions.status, q.status) : undefined,
      ),
    )
    .orderBy(...newestFirst(subscriptions.createdAt, subscriptions.id))
    .limit(q.limit + 1)
    .all();
  return toPage(rows, q.limit, toSubscription);
}

