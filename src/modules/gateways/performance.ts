import { and, asc, count, eq, gte, isNotNull, lt, sql, sum } from "drizzle-orm";
import type { Services } from "../../platform/services";
import type { Db } from "../../db/client";
import { payments } from "../../db/schema";
import { currencyExponent, formatMinor } from "../../domain/money";
import { configuredGateways } from "../../gateways";
import { iso } from "../../lib/time";

export const WINDOWS = { "1h": 3_600_000, "24h": 86_400_000, "7d": 604_800_000 } as const;
export type Window = keyof typeof WINDOWS;

const PERCENTILES = [
  ["p50", 0.5],
  ["p95", 0.95],
  ["p99", 0.99],
] as const;

/** `num / den` as a decimal string with 4 places, rounded half up, in integer arithmetic; null when den is 0. */
export function ratio(num: number, den: number): string | null {
  if (den === 0) return null;
  const scaled = Math.floor((num * 20_000) / den + 1) >> 1;
  return `${Math.floor(scaled / 10_000)}.${String(scaled % 10_000).padStart(4, "0")}`;
}

/** Nearest-rank percentile of the attempts' latencies: the smallest value with at least p of the samples at or below it. */
async function latency(db: Db, gateway: string, from: number, to: number) {
  const where = and(eq(payments.gateway, gateway), gte(payments.createdAt, from), lt(payments.createdAt, to), isNotNull(payments.latencyMs));
  const n = (await db.select({ n: count() }).from(payments).where(where).get())?.n ?? 0;
  const out: Record<string, number | null> = { samples: n };
  for (const [name, p] of PERCENTILES) {
    if (n === 0) {
      out[name] = null;
      continue;
    }
    const row = await db.select({ ms: payments.latencyMs }).from(payments).where(where).orderBy(asc(payments.latencyMs)).limit(1).offset(Math.ceil(p * n) - 1).get();
    out[name] = row?.ms ?? null;
  }
  return out as { samples: number; p50: number | null; p95: number | null; p99: number | null };
}

/**
 * Per gateway over the window, from the payments table: attempts, outcomes, success rate (succeeded over decided
 * attempts, so charges still in flight do not count as failures), latency percentiles, and succeeded volume per
 * currency (amounts are never added across currencies).
 */
export async function gatewayPerformance(s: Services, window: Window) {
  const { env, db } = s;
  const now = s.clock.wall;
  const from = now - WINDOWS[window];
  const inWindow = and(gte(payments.createdAt, from), lt(payments.createdAt, now), isNotNull(payments.gateway));
  const [outcomes, volume] = await Promise.all([
    db
      .select({
        gateway: payments.gateway,
        attempts: count(),
        succeeded: sql<number>`sum(case when ${payments.status} = 'succeeded' then 1 else 0 end)`,
        failed: sql<number>`sum(case when ${payments.status} = 'failed' then 1 else 0 end)`,
      })
      .from(payments)
      .where(inWindow)
      .groupBy(payments.gateway)
      .all(),
    db
      .select({ gateway: payments.gateway, currency: payments.currency, amountMinor: sum(payments.amount).mapWith(Number), payments: count() })
      .from(payments)
      .where(and(inWindow, eq(payments.status, "succeeded")))
      .groupBy(payments.gateway, payments.currency)
      .orderBy(payments.gateway, payments.currency)
      .all(),
  ]);
  const names = [...new Set<string>([...configuredGateways(env), ...outcomes.map((o) => o.gateway!)])].sort();
  const gateways = await Promise.all(
    names.map(async (gateway) => {
      const o = outcomes.find((x) => x.gateway === gateway);
      const attempts = o?.attempts ?? 0;
      const succeeded = Number(o?.succeeded ?? 0);
      const failed = Number(o?.failed ?? 0);
      return {
        gateway,
        attempts,
        succeeded,
        failed,
        inFlight: attempts - succeeded - failed,
        successRate: ratio(succeeded, succeeded + failed),
        latencyMs: await latency(db, gateway, from, now),
        volume: volume
          .filter((v) => v.gateway === gateway)
          .map((v) => ({
            currency: v.currency,
            amount: currencyExponent(v.currency) === undefined ? String(v.amountMinor) : formatMinor(v.amountMinor, v.currency),
            amountMinor: v.amountMinor,
            payments: v.payments,
          })),
      };
    }),
  );
  return { window, from: iso(from), to: iso(now), gateways };
}
