import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { planChangeProration, prorate } from "../../../src/domain/proration";

const t = (iso: string): number => Date.parse(iso);
const march = { start: t("2024-03-01T00:00:00Z"), end: t("2024-04-01T00:00:00Z") };

describe("prorate", () => {
  const cases: [string, number, number, number, number, number][] = [
    ["at the start: everything", 1000, march.start, march.end, march.start, 1000],
    ["at the end: nothing", 1000, march.start, march.end, march.end, 0],
    ["before the period: clamped to everything", 1000, march.start, march.end, march.start - 86_400_000, 1000],
    ["after the period: clamped to nothing", 1000, march.start, march.end, march.end + 1, 0],
    ["17 of 31 days", 1000, march.start, march.end, t("2024-03-15T00:00:00Z"), 548],
    ["17 of 31 days, new price", 2000, march.start, march.end, t("2024-03-15T00:00:00Z"), 1097],
    ["half of 1 rounds away from zero", 1, 0, 10_000, 5_000, 1],
    ["half of -1 rounds away from zero", -1, 0, 10_000, 5_000, -1],
    ["0.7 of 100 by whole seconds", 100, 0, 10_000, 2_500, 70], // floor(7500 ms) = 7 s
    ["partial seconds at the end", 100, 0, 10_999, 0, 100],
    ["zero-length period", 1000, 5_000, 5_000, 5_000, 0],
    ["February in a leap year, 1 day left", 2900, t("2024-02-01T00:00:00Z"), t("2024-03-01T00:00:00Z"), t("2024-02-29T00:00:00Z"), 100],
  ];
  it.each(cases)("%s", (_name, amount, start, end, at, expected) => {
    expect(prorate(amount, start, end, at)).toBe(expected);
  });

  it("stays within [0, amount]", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 10_000_000_000 }),
        fc.integer({ min: 0, max: 4_000_000_000_000 }),
        fc.integer({ min: 1, max: 400 * 86_400_000 }),
        fc.integer({ min: -86_400_000, max: 401 * 86_400_000 }),
        (amount, start, length, offset) => {
          const value = prorate(amount, start, start + length, start + offset);
          expect(value).toBeGreaterThanOrEqual(0);
          expect(value).toBeLessThanOrEqual(amount);
        },
      ),
    );
  });
});

describe("planChangeProration", () => {
  const base = { periodStart: march.start, periodEnd: march.end, at: t("2024-03-15T00:00:00Z") };
  const cases: [string, Parameters<typeof planChangeProration>[0], { credit: number; charge: number; net: number }][] = [
    ["$10 → $20 mid-March", { ...base, oldAmountMinor: 1000, newAmountMinor: 2000, oldQuantity: 1, newQuantity: 1 }, { credit: -548, charge: 1097, net: 549 }],
    ["$20 → $10 downgrade", { ...base, oldAmountMinor: 2000, newAmountMinor: 1000, oldQuantity: 1, newQuantity: 1 }, { credit: -1097, charge: 548, net: -549 }],
    ["3 → 5 seats at $10", { ...base, oldAmountMinor: 1000, newAmountMinor: 1000, oldQuantity: 3, newQuantity: 5 }, { credit: -1645, charge: 2742, net: 1097 }],
    ["at the period start", { ...base, at: march.start, oldAmountMinor: 1000, newAmountMinor: 2000, oldQuantity: 1, newQuantity: 2 }, { credit: -1000, charge: 4000, net: 3000 }],
    ["at the period end", { ...base, at: march.end, oldAmountMinor: 1000, newAmountMinor: 2000, oldQuantity: 1, newQuantity: 1 }, { credit: 0, charge: 0, net: 0 }],
    ["fractional quantity", { ...base, oldAmountMinor: 1000, newAmountMinor: 1000, oldQuantity: 0, newQuantity: 1.5 }, { credit: 0, charge: 823, net: 823 }],
  ];
  it.each(cases)("%s", (_name, change, expected) => {
    const result = planChangeProration(change);
    expect(result).toEqual(expected);
    expect(Object.is(result.credit, -0)).toBe(false);
  });

  it("rounds each side before netting", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 1_000_000 }),
        fc.integer({ min: 0, max: 1_000_000 }),
        fc.integer({ min: 0, max: 100 }),
        fc.integer({ min: 0, max: 100 }),
        fc.integer({ min: march.start, max: march.end }),
        (oldAmountMinor, newAmountMinor, oldQuantity, newQuantity, at) => {
          const r = planChangeProration({ oldAmountMinor, newAmountMinor, oldQuantity, newQuantity, periodStart: march.start, periodEnd: march.end, at });
          expect(r.credit).toBe(-prorate(oldAmountMinor * oldQuantity, march.start, march.end, at) || 0);
          expect(r.charge).toBe(prorate(newAmountMinor * newQuantity, march.start, march.end, at));
          expect(r.net).toBe(r.credit + r.charge);
        },
      ),
    );
  });
});
