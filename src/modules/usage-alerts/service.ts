import { and, asc, count, eq } from "drizzle-orm";
import type { Services } from "../../platform/services";
import type { Db } from "../../db/client";
import { plans, subscriptions, usageAlerts, type StoredMeteredPrice } from "../../db/schema";
import { formatDecimal, parseDecimal } from "../../domain/decimal";
import { conflict, fail, ok, valueOrThrow, type Outcome } from "../../platform/failure";
import { newId } from "../../lib/ids";
import { iso } from "../../lib/time";
import { commitSubscriptionChange } from "../subscriptions/commit";
import { getSubscriptionRow } from "../subscriptions/service";
import { pushMeterConfig } from "../usage/meter-config";

type AlertRow = typeof usageAlerts.$inferSelect;
type SubscriptionRow = typeof subscriptions.$inferSelect;

/** Alerts a subscription may hold: each one is checked on every ingest of its meter. */
export const MAX_ALERTS_PER_SUBSCRIPTION = 20;

/** The REST object (also the core of `usage.threshold_crossed`'s data.object). */
export function toUsageAlert(row: AlertRow) {
  return {
    id: row.id,
    object: "usage_alert" as const,
    subscriptionId: row.subscriptionId,
    customerId: row.customerId,
    meterId: row.meterId,
    threshold: row.threshold,
    createdAt: iso(row.createdAt),
  };
}

async function planOf(db: Db, sub: SubscriptionRow) {
  const plan = await db.select().from(plans).where(and(eq(plans.id, sub.planId), eq(plans.version, sub.planVersion))).get();
  // A subscription always has its plan version (plans are versioned, never deleted): a bug, not a failure to return.
  if (!plan) throw new Error(`plan ${sub.planId} v${sub.planVersion} of subscription ${sub.id} is missing`);
  return plan;
}

export async function listUsageAlerts(db: Db, subscriptionId: string): Promise<Outcome<ReturnType<typeof toUsageAlert>[], "not_found">> {
  const found = await getSubscriptionRow(db, subscriptionId);
  if (!found.ok) return found;
  const rows = await db.select().from(usageAlerts).where(eq(usageAlerts.subscriptionId, subscriptionId)).orderBy(asc(usageAlerts.createdAt), asc(usageAlerts.id)).all();
  return ok(rows.map(toUsageAlert));
}

const changedConcurrently = (sub: SubscriptionRow) => conflict(`subscription ${sub.id} changed concurrently; retry`);

/**
 * Adds an alert: its row and the subscription's configVersion bump (through the subscription owner's change, so the
 * meter is told) in one batch, then pushes the new configuration to the meter. A missed push is re-sent by the
 * hourly meter resync, like every other subscription change.
 */
export async function createUsageAlert(
  s: Services,
  subscriptionId: string,
  input: { meterId: string; threshold: string | number },
): Promise<Outcome<ReturnType<typeof toUsageAlert>, "validation_failed" | "not_found" | "unprocessable" | "conflict">> {
  const { env, db, audit: ctx } = s;
  const parsed = parseDecimal(input.threshold);
  if (!parsed.ok || parsed.value <= 0n) {
    return fail("validation_failed", "threshold must be a positive decimal (up to 12 decimals)", [{ path: "threshold", message: parsed.ok ? "must be greater than 0" : parsed.error }]);
  }
  const found = await getSubscriptionRow(db, subscriptionId);
  if (!found.ok) return found;
  const sub = found.value;
  const plan = await planOf(db, sub);
  const meters = plan.prices.filter((p): p is StoredMeteredPrice => p.type === "metered");
  if (!meters.some((m) => m.meterId === input.meterId)) {
    const known = meters.map((m) => m.meterId).join(", ") || "none";
    return fail("unprocessable", `the subscription's plan has no meter ${input.meterId} (its meters: ${known})`, [{ path: "meterId", message: "unknown meter for this subscription's plan" }]);
  }
  const held = await db.select({ n: count() }).from(usageAlerts).where(eq(usageAlerts.subscriptionId, sub.id)).get();
  if ((held?.n ?? 0) >= MAX_ALERTS_PER_SUBSCRIPTION) {
    return fail("unprocessable", `a subscription holds at most ${MAX_ALERTS_PER_SUBSCRIPTION} usage alerts`, [{ path: "threshold", message: "too many alerts" }]);
  }
  const row: AlertRow = { id: newId("ua"), subscriptionId: sub.id, customerId: sub.customerId, meterId: input.meterId, threshold: formatDecimal(parsed.value), createdAt: ctx.now };
  const audit = [{ action: "usage_alert.created", targetType: "subscription", targetId: sub.id, after: toUsageAlert(row) }];
  if (!(await commitSubscriptionChange(db, sub, {}, [db.insert(usageAlerts).values(row)], audit, ctx))) return changedConcurrently(sub);
  // Just committed: the row is there (a subscription is never deleted).
  await pushMeterConfig(s, valueOrThrow(await getSubscriptionRow(db, sub.id)), plan);
  return ok(toUsageAlert(row));
}

export async function deleteUsageAlert(
  s: Services,
  subscriptionId: string,
  alertId: string,
): Promise<Outcome<ReturnType<typeof toUsageAlert> & { deleted: true }, "not_found" | "conflict">> {
  const { env, db, audit: ctx } = s;
  const found = await getSubscriptionRow(db, subscriptionId);
  if (!found.ok) return found;
  const sub = found.value;
  const row = await db.select().from(usageAlerts).where(and(eq(usageAlerts.id, alertId), eq(usageAlerts.subscriptionId, sub.id))).get();
  if (!row) return fail("not_found", `subscription ${sub.id} has no usage alert ${alertId}`);
  const audit = [{ action: "usage_alert.deleted", targetType: "subscription", targetId: sub.id, before: toUsageAlert(row) }];
  if (!(await commitSubscriptionChange(db, sub, {}, [db.delete(usageAlerts).where(eq(usageAlerts.id, row.id))], audit, ctx))) return changedConcurrently(sub);
  // Just committed: the row is there (a subscription is never deleted).
  await pushMeterConfig(s, valueOrThrow(await getSubscriptionRow(db, sub.id)), await planOf(db, sub));
  return ok({ ...toUsageAlert(row), deleted: true as const });
}
