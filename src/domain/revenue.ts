import { ONE, parseDecimal, roundDiv } from "./decimal";
import { addIntervals, type Interval } from "./periods";

// Revenue maths: recurring amounts normalized to a month, MRR per currency, churn ratios. Pure: no I/O, no clock.

/** Intervals per month as exact fractions num/den: 365/12 days, 52/12 weeks, 1 month, 1/12 year. */
const MONTHLY_FACTOR: Readonly<Record<Interval, { num: bigint; den: bigint }>> = {
  day: { num: 365n, den: 12n },
  week: { num: 52n, den: 12n },
  month: { num: 1n, den: 1n },
  year: { num: 1n, den: 12n },
};

const HUNDRED = 100n * ONE;

function checkCount(intervalCount: number): bigint {
  if (!Number.isSafeInteger(intervalCount) || intervalCount <= 0) throw new RangeError(`interval count must be a positive integer, got ${intervalCount}`);
  return BigInt(intervalCount);
}

function checkMinor(v: number | bigint, what: string): bigint {
  if (typeof v === "number" && !Number.isSafeInteger(v)) throw new RangeError(`${what} must be a safe integer, got ${v}`);
  return BigInt(v);
}

function toSafeNumber(v: bigint): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) throw new RangeError(`amount ${v} is too large`);
  return Number(v);
}

/** Percentage off as a SCALE-12 value in [0, 100]; null or "" means none. Throws on anything else (validated on input). */
function discountScaled(discountPercent: string | null | undefined): bigint {
  if (discountPercent === null || discountPercent === undefined || discountPercent === "") return 0n;
  const pct = parseDecimal(discountPercent);
  if (!pct.ok || pct.value < 0n || pct.value > HUNDRED) throw new RangeError(`discount percent must be a decimal in [0, 100], got ${discountPercent}`);
  return pct.value;
}

/**
 * A recurring amount charged every `intervalCount` `interval`s, as a monthly amount in minor units:
 * day ×365/12, week ×52/12, month ÷1, year ÷12, all ÷ intervalCount; rounded once, half away from zero.
 */
export function monthlyAmount(amountMinor: number | bigint, interval: Interval, intervalCount: number): number {
  const f = MONTHLY_FACTOR[interval];
  if (!f) throw new RangeError(`unknown interval ${String(interval)}`);
  return toSafeNumber(roundDiv(checkMinor(amountMinor, "amount") * f.num, f.den * checkCount(intervalCount)));
}

/** What one subscription pays per period: the sum of its plan's flat prices per unit, times its quantity, less its discount. */
export type RecurringCharge = {
  /** Flat prices of one unit per billing period, in minor units (metered prices are not recurring revenue). */
  amountMinor: number;
  quantity: number;
  interval: Interval;
  intervalCount: number;
  /** Percentage off, as a decimal string ("10" = 10 %), or null. */
  discountPercent: string | null;
  /** Amount off each billing period's charge (an amount-off coupon in the charge's currency), minor units; 0 or absent: none. */
  amountOffMinor?: number;
};

/**
 * Monthly recurring revenue of one subscription in minor units: per billing period amount × quantity × (1 − percent
 * off) − amount off (never below 0), normalized to a month, rounded once, half away from zero.
 */
export function subscriptionMrr(s: RecurringCharge): number {
  const f = MONTHLY_FACTOR[s.interval];
  if (!f) throw new RangeError(`unknown interval ${String(s.interval)}`);
  if (!Number.isSafeInteger(s.quantity) || s.quantity < 0) throw new RangeError(`quantity must be a non-negative integer, got ${s.quantity}`);
  const kept = HUNDRED - discountScaled(s.discountPercent);
  const perPeriod = checkMinor(s.amountMinor, "amount") * BigInt(s.quantity) * kept - checkMinor(s.amountOffMinor ?? 0, "amount off") * HUNDRED;
  if (perPeriod <= 0n) return 0;
  return toSafeNumber(roundDiv(perPeriod * f.num, f.den * checkCount(s.intervalCount) * HUNDRED));
}

/** `subscriptions` identical subscriptions (same currency, plan version, quantity and discount). */
export type MrrLine = RecurringCharge & { currency: string; planId: string; planName?: string | null; subscriptions?: number };

export type PlanMrr = { planId: string; planName: string | null; subscriptions: number; mrrMinor: number };
export type CurrencyMrr = { currency: string; mrrMinor: number; subscriptions: number; byPlan: PlanMrr[] };

/**
 * MRR per currency (never summed across currencies) and per plan: each subscription rounded once to minor
 * units, totals are sums of those. Sorted by currency; plans by MRR descending, then id.
 */
export function mrrOf(lines: readonly MrrLine[]): CurrencyMrr[] {
  const byCurrency = new Map<string, { mrrMinor: number; subscriptions: number; plans: Map<string, PlanMrr> }>();
  for (const line of lines) {
    const n = line.subscriptions ?? 1;
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`subscriptions must be a non-negative integer, got ${n}`);
    const mrr = subscriptionMrr(line) * n;
    let c = byCurrency.get(line.currency);
    if (!c) byCurrency.set(line.currency, (c = { mrrMinor: 0, subscriptions: 0, plans: new Map() }));
    c.mrrMinor += mrr;
    c.subscriptions += n;
    let p = c.plans.get(line.planId);
    if (!p) c.plans.set(line.planId, (p = { planId: line.planId, planName: line.planName ?? null, subscriptions: 0, mrrMinor: 0 }));
    p.mrrMinor += mrr;
    p.subscriptions += n;
    if (line.planName != null) p.planName = line.planName;
  }
  return [...byCurrency.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([currency, c]) => ({
      currency,
      mrrMinor: c.mrrMinor,
      subscriptions: c.subscriptions,
      byPlan: [...c.plans.values()].sort((a, b) => b.mrrMinor - a.mrrMinor || (a.planId < b.planId ? -1 : a.planId > b.planId ? 1 : 0)),
    }));
}

/** Average revenue per account in minor units: mrr ÷ accounts, half away from zero; 0 without accounts. */
export function arpa(mrrMinor: number, accounts: number): number {
  if (accounts <= 0) return 0;
  return toSafeNumber(roundDiv(checkMinor(mrrMinor, "mrr"), BigInt(accounts)));
}

/** n ÷ d as a decimal string with `places` decimals ("0.0500"), half away from zero; null when d is 0. */
export function ratio(n: number | bigint, d: number | bigint, places = 4): string | null {
  const num = checkMinor(n, "numerator");
  const den = checkMinor(d, "denominator");
  if (den === 0n) return null;
  if (!Number.isInteger(places) || places < 0 || places > 12) throw new RangeError(`places must be 0-12, got ${places}`);
  const scale = 10n ** BigInt(places);
  const q = roundDiv(num * scale, den);
  const negative = q < 0n;
  const abs = negative ? -q : q;
  const frac = places > 0 ? `.${(abs % scale).toString().padStart(places, "0")}` : "";
  return `${negative ? "-" : ""}${abs / scale}${frac}`;
}

/** Subscription (or customer) churn rate: lost ÷ active at the start of the period, 4 decimals; null when nothing was active. */
export function churnRate(lost: number, activeAtStart: number): string | null {
  return ratio(lost, activeAtStart);
}

/** Revenue churn rate: MRR lost ÷ MRR at the start of the period (same currency), 4 decimals; null when there was none. */
export function revenueChurnRate(lostMrrMinor: number, startMrrMinor: number): string | null {
  return ratio(lostMrrMinor, startMrrMinor);
}

/** Trial conversion: converted ÷ (converted + canceled during the trial), 4 decimals; null before any trial ended. */
export function trialConversionRate(converted: number, canceledDuringTrial: number): string | null {
  return ratio(converted, converted + canceledDuringTrial);
}

export const reportPeriods = ["day", "week", "month", "quarter", "year"] as const;
export type ReportPeriod = (typeof reportPeriods)[number];

/** The period of the given length ending at `now`, half-open [from, now): months and years are calendar steps back (day clamped to month end). */
export function trailingWindow(now: number, period: ReportPeriod): { from: number; to: number } {
  const from = period === "quarter" ? addIntervals(now, "month", 3, -1) : addIntervals(now, period, 1, -1);
  return { from, to: now };
}

const DAY_MS = 86_400_000;

/** The UTC day containing `now` as [start, start + 1 day) and its date `YYYY-MM-DD`. */
export function utcDay(now: number): { date: string; from: number; to: number } {
  const from = Math.floor(now / DAY_MS) * DAY_MS;
  return { date: new Date(from).toISOString().slice(0, 10), from, to: from + DAY_MS };
}
