import { ONE, parseDecimal, roundDiv } from "./decimal";

/** What a coupon takes off: a percentage of each line, or a fixed amount spread over the invoice's positive lines. */
export type DiscountSpec = { percentOff: string } | { amountOff: number };

/**
 * Discount per line (minor units, same order as `amounts`). A percentage is taken off every line, rounded once
 * per line half away from zero (credits too: a 10 % discount on a −5.00 proration line is −0.50). A fixed amount is
 * capped at the sum of the positive lines and split over them in proportion to their amounts, each share rounded
 * half away from zero, the rounding remainder going to the largest line, so the shares add up to the amount exactly.
 */
export function discountPerLine(amounts: number[], spec: DiscountSpec | null): number[] {
  if (!spec) return amounts.map(() => 0);
  if ("percentOff" in spec) {
    const pct = parseDecimal(spec.percentOff);
    if (!pct.ok) throw new RangeError(`discount ${pct.error}`);
    return amounts.map((a) => Number(roundDiv(BigInt(a) * pct.value, 100n * ONE)));
  }
  const positive = amounts.reduce((s, a) => (a > 0 ? s + a : s), 0);
  const off = Math.min(Math.max(spec.amountOff, 0), positive);
  if (off === 0) return amounts.map(() => 0);
  const shares = amounts.map((a) => (a > 0 ? Number(roundDiv(BigInt(off) * BigInt(a), BigInt(positive))) : 0));
  const largest = amounts.reduce((best, a, i) => (a > amounts[best]! ? i : best), 0);
  shares[largest] = shares[largest]! + (off - shares.reduce((s, x) => s + x, 0));
  return shares;
}

const PERIODS_PER_YEAR = { day: 365, week: 52, month: 12, year: 1 } as const;

/**
 * How many billing periods a coupon covers on a plan billed every `intervalCount` `interval`s: once 1, forever
 * null, repeating `durationInMonths` months counted in billing periods, rounded up, at least one (3 months of a
 * monthly plan: 3 periods; of a yearly plan: 1; of a weekly plan: ceil(3 × 52 / 12) = 13). Periods, not days: a
 * discount ends with the invoice of its last period, wherever the calendar puts it.
 */
export function couponPeriods(
  coupon: { duration: "once" | "repeating" | "forever"; durationInMonths: number | null },
  plan: { interval: keyof typeof PERIODS_PER_YEAR; intervalCount: number },
): number | null {
  if (coupon.duration === "forever") return null;
  if (coupon.duration === "once") return 1;
  const months = coupon.durationInMonths ?? 1;
  const num = months * PERIODS_PER_YEAR[plan.interval];
  const den = 12 * plan.intervalCount;
  return Math.max(1, Math.ceil(num / den));
}
