import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { couponPeriods, discountPerLine } from "../../src/domain/discounts";
import { allocateCredits, type GrantBalance } from "../../src/domain/credits";

const grant = (id: string, remaining: number, extra: Partial<GrantBalance> = {}): GrantBalance => ({ id, remaining, priority: 50, expiresAt: null, createdAt: 0, appliesToMeterIds: null, ...extra });

describe("discountPerLine", () => {
  it("takes a percentage off each line, rounded once per line half away from zero (credit lines too)", () => {
    expect(discountPerLine([5, 1000, -1000, 3], { percentOff: "12.5" })).toEqual([1, 125, -125, 0]);
  });

  it("spreads a fixed amount over the positive lines in proportion, adding up exactly, capped at their sum", () => {
    expect(discountPerLine([100, 200, -50], { amountOff: 100 })).toEqual([33, 67, 0]);
    expect(discountPerLine([300, 300], { amountOff: 1000 })).toEqual([300, 300]);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -10_000, max: 10_000 }), { minLength: 1, maxLength: 8 }), fc.integer({ min: 1, max: 50_000 }), (amounts, off) => {
        const shares = discountPerLine(amounts, { amountOff: off });
        const positive = amounts.reduce((s, a) => (a > 0 ? s + a : s), 0);
        expect(shares.reduce((s, x) => s + x, 0)).toBe(Math.min(off, positive));
        shares.forEach((x, i) => expect(x === 0 || amounts[i]! > 0).toBe(true));
      }),
    );
  });
});

describe("couponPeriods", () => {
  it.each([
    [{ duration: "once", durationInMonths: null }, "month", 1, 1],
    [{ duration: "forever", durationInMonths: null }, "month", 1, null],
    [{ duration: "repeating", durationInMonths: 3 }, "month", 1, 3],
    [{ duration: "repeating", durationInMonths: 3 }, "month", 3, 1],
    [{ duration: "repeating", durationInMonths: 3 }, "year", 1, 1],
    [{ duration: "repeating", durationInMonths: 3 }, "week", 1, 13],
    [{ duration: "repeating", durationInMonths: 1 }, "day", 1, 31],
  ] as const)("%o on every %s × %i → %s periods", (coupon, interval, intervalCount, periods) => {
    expect(couponPeriods(coupon, { interval, intervalCount })).toBe(periods);
  });
});

describe("allocateCredits", () => {
  it("uses grants by priority, then earliest expiry, within their meter scope, never past the total", () => {
    const lines = [
      { meterId: null, amount: 1000 },
      { meterId: "api_calls", amount: 500 },
    ];
    const grants = [grant("late", 10_000, { expiresAt: 2000 }), grant("soon", 300, { expiresAt: 1000 }), grant("scoped", 10_000, { priority: 0, appliesToMeterIds: ["api_calls"] })];
    expect(allocateCredits(lines, 1500, grants)).toEqual([
      { grantId: "scoped", amount: 500 },
      { grantId: "soon", amount: 300 },
      { grantId: "late", amount: 700 },
    ]);
    // A credit line lowers what can be paid.
    expect(allocateCredits([...lines, { meterId: null, amount: -600 }], 900, [grant("a", 10_000)])).toEqual([{ grantId: "a", amount: 900 }]);
    expect(allocateCredits(lines, -1, [grant("a", 10_000)])).toEqual([]);
  });
});
