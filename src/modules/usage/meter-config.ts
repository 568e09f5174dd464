import { and, eq, lt, sql, type Placeholder } from "drizzle-orm";
import { usageMeterOf } from "../../platform/meters";
import type { Services } from "../../platform/services";
import type { Db } from "../../db/client";
import { builtOnce } from "../../db/prepared";
import { plans, subscriptions, usageAlerts, type StoredMeteredPrice, type SubscriptionStatus } from "../../db/schema";
import type { Interval } from "../../domain/periods";
import { pushRouting } from "./routing";
import type { ClosedRollup } from "./rollups";

/** What a UsageMeter needs to decide alone (no D1 on the ingestion path); pushed on every subscription change. */
export type MeterConfig = {
  subscriptionId: string;
  customerId: string;
  status: SubscriptionStatus;
  currency: string;
  interval: Interval;
  intervalCount: number;
  billingAnchor: number;
  currentPeriodStart: number;
  currentPeriodEnd: number;
  testClockId: string | null;
  /**
   * The test clock's frozen time when this configuration was built (null off a clock). A meter on a clock lives in
   * the clock's time from its first configuration on, not only once the clock has been advanced.
   */
  clockTime?: number | null;
  meters: StoredMeteredPrice[];
  /**
   * Usage alerts (`usage_alerts`): the meter emits `usage.threshold_crossed` once per (alert, period) when the
   * meter's aggregate reaches the threshold (a decimal string). Absent in configurations built before alerts existed.
   */
  alerts?: MeterAlert[];
  /** The subscription's configVersion: older pushes never overwrite newer ones. */
  version: number;
};

export type MeterAlert = { id: string; meterId: string; threshold: string };

type SubscriptionRow = typeof subscriptions.$inferSelect;
type PlanRow = typeof plans.$inferSelect;

/**
 * The plan's alert thresholds as meter alerts. Their id names the meter and threshold, not the plan: after a plan
 * change to a plan with the same threshold, an alert that already fired this period does not fire again.
 */
export function planAlertsOf(plan: Pick<PlanRow, "prices">): MeterAlert[] {
  return plan.prices.flatMap((p) => (p.type === "metered" ? (p.alertThresholds ?? []).map((threshold) => ({ id: `plan_alert:${p.meterId}:${threshold}`, meterId: p.meterId, threshold })) : []));
}

export function meterConfigOf(sub: SubscriptionRow, plan: PlanRow, clockTime: number | null = null, alerts: MeterAlert[] = []): MeterConfig {
  const planAlerts = planAlertsOf(plan);
  return {
    subscriptionId: sub.id,
    customerId: sub.customerId,
    status: sub.status,
    currency: sub.currency,
    interval: plan.interval,
    intervalCount: plan.intervalCount,
    billingAnchor: sub.billingAnchor,
    currentPeriodStart: sub.currentPeriodStart,
    currentPeriodEnd: sub.currentPeriodEnd,
    testClockId: sub.testClockId,
    clockTime: sub.testClockId ? clockTime : null,
    meters: plan.prices.filter((p): p is StoredMeteredPrice => p.type === "metered"),
    alerts: planAlerts.length ? [...alerts, ...planAlerts] : alerts,
    version: sub.configVersion,
  };
}

/** The subscription's usage alerts as its meter needs them (a query, for the caller's batched read or `.all()`). */
export const meterAlertsOf = (db: Db, subscriptionId: string | Placeholder) =>
  db.select({ id: usageAlerts.id, meterId: usageAlerts.meterId, threshold: usageAlerts.threshold }).from(usageAlerts).where(eq(usageAlerts.subscriptionId, subscriptionId));
export type MeterAlertRow = { id: string; meterId: string; threshold: string };

/** A subscription's meter where no Services is at hand (the ingestion path); elsewhere `s.meters.of`. */
export const meterStub = usageMeterOf;

/** The version the meter acknowledged, recorded only forward: built by drizzle once per isolate (every renewal). */
const syncedVersionUpdate = builtOnce((db: Db) => [
  db
    .update(subscriptions)
    .set({ meterSyncedVersion: sql`${sql.placeholder("synced")}` })
    .where(and(eq(subscriptions.id, sql.placeholder("id")), lt(subscriptions.meterSyncedVersion, sql.placeholder("synced")))),
] as const);

/**
 * Pushes the subscription's state to its meter and records the acknowledged version. A failure is not fatal
 * to the caller's already-committed change: the hourly cron re-pushes every subscription still behind.
 */
export async function pushMeterConfig(
  s: Services,
  sub: SubscriptionRow,
  plan: PlanRow,
  knownAlerts?: MeterAlertRow[],
  knownCustomer?: { metadata: Record<string, string> },
  options: { routing: boolean; written?: ClosedRollup[] } = { routing: true },
): Promise<boolean> {
  const { db } = s;
  try {
    const alerts = knownAlerts ?? (await meterAlertsOf(db, sub.id).all());
    const written = (options.written ?? []).map((r) => ({ meterId: r.values.meterId, periodStart: r.values.periodStart, rev: r.rev }));
    const held = await s.meters.of(sub.id).configure(meterConfigOf(sub, plan, await s.clock.frozen(sub.testClockId), alerts), written);
    // Before the version is recorded: a failed directory push is retried by the cron resync like a failed meter push.
    if (options.routing) await pushRouting(s, sub, plan, knownCustomer);
    // The version both the meter and the directory hold: the meter may answer a newer one than this push carried
    // (a concurrent change configured it, and that change's directory push may have failed), and the directory was
    // told only this push's version, so the resync must still see the subscription as behind.
    const synced = Math.min(held, sub.configVersion);
    // In a queue batch (a renewal) the acknowledgement trails: written with the batch's others in one round trip. A
    // lost one only makes the hourly resync push this meter again (a no-op for it).
    const [ack] = syncedVersionUpdate(db, { id: sub.id, synced });
    if (s.trailing) s.trailing.add(`meter-ack:${sub.id}`, ack);
    else await db.batch([ack]);
    return true;
  } catch (e) {
    s.log.error("meter config push failed", { subscriptionId: sub.id, error: String(e) });
    return false;
  }
}

/**
 * Closes a period on the subscription's meter for invoicing, first making sure the meter holds the current
 * configuration (a missed push would otherwise leave a meter out of the invoice). Empty when nothing was metered.
 */
export async function closeMeterPeriod(s: Services, sub: SubscriptionRow, plan: PlanRow, periodStart: number, now: number, alerts?: MeterAlertRow[]): Promise<Map<string, string>> {
  return (await closeOnMeter(s, sub, plan, periodStart, now, alerts, "write")).usage;
}

/**
 * As `closeMeterPeriod`, for a caller that writes the closed period's rollups in its own D1 batch (`rollupUpsert`)
 * and then hands them back to the meter with its configuration push (`pushMeterConfig`'s `written`): a renewal, so
 * the meter's own D1 write (a round trip) is not needed.
 */
export async function closeMeterPeriodForBatch(s: Services, sub: SubscriptionRow, plan: PlanRow, periodStart: number, now: number, alerts?: MeterAlertRow[]): Promise<{ usage: Map<string, string>; rollups: ClosedRollup[] }> {
  return closeOnMeter(s, sub, plan, periodStart, now, alerts, "return");
}

async function closeOnMeter(s: Services, sub: SubscriptionRow, plan: PlanRow, periodStart: number, now: number, alerts: MeterAlertRow[] | undefined, rollups: "write" | "return") {
  if (sub.meterSyncedVersion < sub.configVersion && !(await pushMeterConfig(s, sub, plan, alerts))) {
    throw new Error(`usage meter of ${sub.id} does not hold the current configuration; not invoicing until it does`);
  }
  const closed = await s.meters.of(sub.id).closePeriod(periodStart, now, { rollups });
  return closed.ok ? { usage: new Map(closed.meters.map((m) => [m.meterId, m.value])), rollups: closed.rollups ?? [] } : { usage: new Map<string, string>(), rollups: [] };
}

/** Cron: re-push subscriptions whose meter holds an older configuration. */
export async function resyncMeters(s: Services, limit = 200): Promise<{ pushed: number; failed: number }> {
  const { env, db } = s;
  const rows = await db
    .select()
    .from(subscriptions)
    .innerJoin(plans, and(eq(plans.id, subscriptions.planId), eq(plans.version, subscriptions.planVersion)))
    .where(lt(subscriptions.meterSyncedVersion, subscriptions.configVersion))
    .orderBy(sql`${subscriptions.updatedAt}`)
    .limit(limit)
    .all();
  let pushed = 0;
  let failed = 0;
  for (const r of rows) (await pushMeterConfig(s, r.subscriptions, r.plans)) ? pushed++ : failed++;
  return { pushed, failed };
}
