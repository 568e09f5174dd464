import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Interval } from "../../../src/domain/periods";
import { arpa, churnRate, monthlyAmount, mrrOf, ratio, revenueChurnRate, subscriptionMrr, trailingWindow, trialConversionRate, utcDay, type MrrLine } from "../../../src/domain/revenue";

const intervals: Interval[] = ["day", "week", "month", "year"];
const PER_MONTH: Record<Interval, [bigint, bigint]> = { day: [365n, 12n], week: [52n, 12n], month: [1n, 1n], year: [1n, 12n] };

describe("monthlyAmount", () => {
  const cases: [string, number, Interval, number, number][] = [
    ["yearly 1200.00 → 100.00", 120_000, "year", 1, 10_000],
    ["weekly 10.00 → 43.33", 1_000, "week", 1, 4_333],
    ["daily 10.00 → 304.17 (365/12 days)", 1_000, "day", 1, 30_417],
    ["monthly is unchanged", 2_999, "month", 1, 2_999],
    ["quarterly 30.00 → 10.00", 3_000, "month", 3, 1_000],
    ["quarterly 10.00 → 3.33", 1_000, "month", 3, 333],
    ["quarterly 5.00 → 1.67", 500, "month", 3, 167],
    ["every 2 years 1200.00 → 50.00", 120_000, "year", 2, 5_000],
    ["fortnightly 10.00 → 21.67", 1_000, "week", 2, 2_167],
    ["every 30 days 1.00 → 1.01", 100, "day", 30, 101],
    ["half a minor unit rounds away from zero", 1, "month", 2, 1],
    ["negative half rounds away from zero", -1, "month", 2, -1],
    ["0.5 yen a month rounds up", 6, "year", 1, 1],
    ["1.5 rounds to 2", 18, "year", 1, 2],
    ["0.4167 rounds down", 5, "year", 1, 0],
    ["zero", 0, "week", 1, 0],
    ["bigint input", 120_000, "year", 1, 10_000],
  ];
  it.each(cases)("%s", (_name, amount, interval, count, expected) => {
    expect(monthlyAmount(amount, interval, count)).toBe(expected);
  });

  it("accepts bigint amounts and rejects bad counts and amounts", () => {
    expect(monthlyAmount(120_000n, "year", 1)).toBe(10_000);
    expect(() => monthlyAmount(100, "month", 0)).toThrow(RangeError);
    expect(() => monthlyAmount(100, "month", 1.5)).toThrow(RangeError);
    expect(() => monthlyAmount(0.5, "month", 1)).toThrow(RangeError);
    expect(() => monthlyAmount(100, "fortnight" as Interval, 1)).toThrow(RangeError);
  });

  it("is within half a minor unit of the exact monthly amount", () => {
    fc.assert(
      fc.property(fc.integer({ min: -1e12, max: 1e12 }), fc.constantFrom(...intervals), fc.integer({ min: 1, max: 520 }), (amount, interval, count) => {
        const [num, den] = PER_MONTH[interval];
        const d = den * BigInt(count);
        const diff = BigInt(monthlyAmount(amount, interval, count)) * d - BigInt(amount) * num;
        expect(2n * (diff < 0n ? -diff : diff) <= d).toBe(true);
      }),
    );
  });

  it("depends only on the amount per interval: k× the amount every k intervals is the same", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e9 }), fc.constantFrom(...intervals), fc.integer({ min: 1, max: 52 }), (amount, interval, k) => {
        expect(monthlyAmount(amount * k, interval, k)).toBe(monthlyAmount(amount, interval, 1));
      }),
    );
  });

  it("a yearly amount divisible by 12 is exact", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e12 }), (m) => {
        expect(monthlyAmount(m * 12, "year", 1)).toBe(m);
      }),
    );
  });
});

describe("subscriptionMrr", () => {
  const base = { amountMinor: 1_000, quantity: 1, interval: "month" as Interval, intervalCount: 1, discountPercent: null as string | null };
  const cases: [string, Partial<typeof base>, number][] = [
    ["29.99 × 3 less 10 % → 80.97", { amountMinor: 2_999, quantity: 3, discountPercent: "10" }, 8_097],
    ["weekly 10.00 → 43.33", { interval: "week" }, 4_333],
    ["weekly 10.00 × 3 rounds once: 130.00, not 3 × 43.33", { interval: "week", quantity: 3 }, 13_000],
    ["yearly 1200.00 × 2 less 12.5 % → 175.00", { amountMinor: 120_000, interval: "year", quantity: 2, discountPercent: "12.5" }, 17_500],
    ["100 % off", { discountPercent: "100" }, 0],
    ["0 % off", { discountPercent: "0" }, 1_000],
    ["empty discount is none", { discountPercent: "" }, 1_000],
    ["a third off 10.00 → 6.67", { discountPercent: "33.333333333333" }, 667],
    ["quantity 0", { quantity: 0 }, 0],
  ];
  it.each(cases)("%s", (_name, over, expected) => {
    expect(subscriptionMrr({ ...base, ...over })).toBe(expected);
  });

  it("rejects discounts outside [0, 100] and bad quantities", () => {
    for (const d of ["-1", "100.01", "ten"]) expect(() => subscriptionMrr({ ...base, discountPercent: d })).toThrow(RangeError);
    expect(() => subscriptionMrr({ ...base, quantity: -1 })).toThrow(RangeError);
  });

  it("a discount never raises MRR, and MRR stays within [0, undiscounted]", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 1e9 }),
        fc.integer({ min: 0, max: 1000 }),
        fc.constantFrom(...intervals),
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 0, max: 10_000 }),
        fc.integer({ min: 0, max: 10_000 }),
        (amountMinor, quantity, interval, intervalCount, d1, d2) => {
          const [lo, hi] = d1 <= d2 ? [d1, d2] : [d2, d1];
          const at = (bp: number) => subscriptionMrr({ amountMinor, quantity, interval, intervalCount, discountPercent: (bp / 100).toString() });
          const full = subscriptionMrr({ amountMinor, quantity, interval, intervalCount, discountPercent: null });
          expect(at(hi)).toBeLessThanOrEqual(at(lo));
          expect(at(lo)).toBeLessThanOrEqual(full);
          expect(at(hi)).toBeGreaterThanOrEqual(0);
          expect(full).toBe(monthlyAmount(amountMinor * quantity, interval, intervalCount));
        },
      ),
    );
  });
});

describe("mrrOf", () => {
  const line = (over: Partial<MrrLine>): MrrLine => ({ currency: "USD", planId: "plan_a", amountMinor: 1_000, quantity: 1, interval: "month", intervalCount: 1, discountPercent: null, ...over });

  it("sums per currency and plan, never across currencies, identical subscriptions weighted", () => {
    const out = mrrOf([
      line({ planId: "plan_m", planName: "Monthly", amountMinor: 2_999, quantity: 2, subscriptions: 3 }),
      line({ planId: "plan_y", planName: "Yearly", amountMinor: 120_000, interval: "year" }),
      line({ planId: "plan_y", planName: "Yearly", amountMinor: 120_000, interval: "year", discountPercent: "25" }),
      line({ planId: "plan_w", amountMinor: 1_000, interval: "week" }),
      line({ currency: "EUR", planId: "plan_e", amountMinor: 5_000 }),
      line({ currency: "EUR", planId: "plan_e", amountMinor: 5_000, subscriptions: 0 }),
    ]);
    expect(out).toEqual([
      { currency: "EUR", mrrMinor: 5_000, subscriptions: 1, byPlan: [{ planId: "plan_e", planName: null, subscriptions: 1, mrrMinor: 5_000 }] },
      {
        currency: "USD",
        mrrMinor: 17_994 + 17_500 + 4_333,
        subscriptions: 6,
        byPlan: [
          { planId: "plan_m", planName: "Monthly", subscriptions: 3, mrrMinor: 17_994 },
          { planId: "plan_y", planName: "Yearly", subscriptions: 2, mrrMinor: 17_500 },
          { planId: "plan_w", planName: null, subscriptions: 1, mrrMinor: 4_333 },
        ],
      },
    ]);
    expect(mrrOf([])).toEqual([]);
  });

  it("each currency's total is the sum of its plans and of its subscriptions' MRR", () => {
    const arbLine = fc.record({
      currency: fc.constantFrom("USD", "EUR", "JPY"),
      planId: fc.constantFrom("p1", "p2", "p3"),
      amountMinor: fc.integer({ min: 0, max: 1e7 }),
      quantity: fc.integer({ min: 0, max: 50 }),
      interval: fc.constantFrom(...intervals),
      intervalCount: fc.integer({ min: 1, max: 6 }),
      discountPercent: fc.option(fc.integer({ min: 0, max: 100 }).map(String), { nil: null }),
      subscriptions: fc.integer({ min: 0, max: 20 }),
    });
    fc.assert(
      fc.property(fc.array(arbLine, { maxLength: 30 }), (lines) => {
        for (const c of mrrOf(lines)) {
          const mine = lines.filter((l) => l.currency === c.currency);
          expect(c.mrrMinor).toBe(c.byPlan.reduce((s, p) => s + p.mrrMinor, 0));
          expect(c.mrrMinor).toBe(mine.reduce((s, l) => s + subscriptionMrr(l) * l.subscriptions, 0));
          expect(c.subscriptions).toBe(mine.reduce((s, l) => s + l.subscriptions, 0));
        }
      }),
    );
  });
});

describe("ratios", () => {
  const cases: [number, number, number, string | null][] = [
    [1, 3, 4, "0.3333"],
    [2, 3, 4, "0.6667"],
    [1, 8, 4, "0.1250"],
    [1, 20_000, 4, "0.0001"],
    [0, 5, 4, "0.0000"],
    [5, 0, 4, null],
    [-1, 3, 4, "-0.3333"],
    [3, 2, 4, "1.5000"],
    [1, 2, 0, "1"],
    [10, 4, 2, "2.50"],
  ];
  it.each(cases)("%i ÷ %i to %i places = %s", (n, d, places, expected) => {
    expect(ratio(n, d, places)).toBe(expected);
  });

  it("churn helpers are 4-decimal ratios", () => {
    expect(churnRate(1, 4)).toBe("0.2500");
    expect(churnRate(0, 0)).toBeNull();
    expect(revenueChurnRate(4_333, 32_327)).toBe("0.1340");
    expect(trialConversionRate(3, 4)).toBe("0.4286");
    expect(trialConversionRate(0, 0)).toBeNull();
  });

  it("is within half a unit in the last place", () => {
    fc.assert(
      fc.property(fc.integer({ min: -1e9, max: 1e9 }), fc.integer({ min: 1, max: 1e9 }), (n, d) => {
        const [whole, frac = ""] = ratio(n, d)!.replace("-", "").split(".");
        const negative = ratio(n, d)!.startsWith("-");
        const q = BigInt(whole! + frac.padEnd(4, "0")) * (negative ? -1n : 1n);
        const diff = q * BigInt(d) - BigInt(n) * 10_000n;
        expect(2n * (diff < 0n ? -diff : diff) <= BigInt(d)).toBe(true);
      }),
    );
  });

  it("arpa rounds half away from zero and is 0 without accounts", () => {
    expect(arpa(10_001, 2)).toBe(5_001);
    expect(arpa(10_000, 3)).toBe(3_333);
    expect(arpa(10_000, 0)).toBe(0);
  });
});

describe("windows", () => {
  const t = (s: string) => Date.parse(s);
  const now = t("2024-03-31T12:00:00Z");
  it.each([
    ["day", "2024-03-30T12:00:00.000Z"],
    ["week", "2024-03-24T12:00:00.000Z"],
    ["month", "2024-02-29T12:00:00.000Z"],
    ["quarter", "2023-12-31T12:00:00.000Z"],
    ["year", "2023-03-31T12:00:00.000Z"],
  ] as const)("the %s ending now starts at %s (month end clamped)", (period, from) => {
    expect(trailingWindow(now, period)).toEqual({ from: t(from), to: now });
  });

  it("utcDay is the UTC day containing the instant", () => {
    expect(utcDay(t("2024-02-29T23:59:59.999Z"))).toEqual({ date: "2024-02-29", from: t("2024-02-29T00:00:00Z"), to: t("2024-03-01T00:00:00Z") });
    expect(utcDay(t("2024-03-01T00:00:00Z")).date).toBe("2024-03-01");
  });
});

describe("subscriptionMrr with an amount-off discount", () => {
  it("takes the amount off each billing period's charge (after any percent off), normalized to a month, never below 0", () => {
    // 3 seats × 50.00 a month, 10.00 off per invoice: 140.00.
    expect(subscriptionMrr({ amountMinor: 5000, quantity: 3, interval: "month", intervalCount: 1, discountPercent: null, amountOffMinor: 1000 })).toBe(14000);
    // A yearly 1,200.00 with 120.00 off per (yearly) invoice: 90.00 a month.
    expect(subscriptionMrr({ amountMinor: 120000, quantity: 1, interval: "year", intervalCount: 1, discountPercent: null, amountOffMinor: 12000 })).toBe(9000);
    // 20 % off then 5.00 off a 30.00 quarter (3 months): (24.00 − 5.00) ÷ 3 = 6.33.
    expect(subscriptionMrr({ amountMinor: 3000, quantity: 1, interval: "month", intervalCount: 3, discountPercent: "20", amountOffMinor: 500 })).toBe(633);
    // More off than the charge: nothing, not a negative MRR.
    expect(subscriptionMrr({ amountMinor: 500, quantity: 1, interval: "month", intervalCount: 1, discountPercent: null, amountOffMinor: 1000 })).toBe(0);
  });
});
