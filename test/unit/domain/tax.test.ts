import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { jurisdictionOf, rateInForce, taxOnLine, type TaxRate } from "../../../src/domain/tax";

const t = (iso: string): number => Date.parse(iso);

// Out of order on purpose; Germany's 2020 VAT cut is a real mid-year change.
const rates: TaxRate[] = [
  { jurisdiction: "US-CA", rate: "0.0775", effectiveFrom: t("2024-07-01T00:00:00Z") },
  { jurisdiction: "DE", rate: "0.19", effectiveFrom: t("2007-01-01T00:00:00Z") },
  { jurisdiction: "US-CA", rate: "0.0725", effectiveFrom: t("2020-01-01T00:00:00Z") },
  { jurisdiction: "DE", rate: "0.16", effectiveFrom: t("2020-07-01T00:00:00Z") },
  { jurisdiction: "DE", rate: "0.19", effectiveFrom: t("2021-01-01T00:00:00Z") },
  { jurisdiction: "US-NY", rate: "0.08875", effectiveFrom: t("2020-01-01T00:00:00Z") },
];

describe("rateInForce", () => {
  const cases: [string, string, string | undefined][] = [
    ["US-CA", "2024-03-01T00:00:00Z", "0.0725"],
    ["US-CA", "2024-06-30T23:59:59.999Z", "0.0725"],
    ["US-CA", "2024-07-01T00:00:00Z", "0.0775"], // exactly at effectiveFrom
    ["US-CA", "2030-01-01T00:00:00Z", "0.0775"],
    ["US-CA", "2019-12-31T23:59:59.999Z", undefined],
    ["DE", "2020-06-30T12:00:00Z", "0.19"],
    ["DE", "2020-10-01T00:00:00Z", "0.16"],
    ["DE", "2021-02-01T00:00:00Z", "0.19"],
    ["US-NY", "2024-01-01T00:00:00Z", "0.08875"],
    ["FR", "2024-01-01T00:00:00Z", undefined],
    ["US", "2024-01-01T00:00:00Z", undefined],
  ];
  it.each(cases)("%s at %s → %s", (jurisdiction, at, rate) => {
    expect(rateInForce(rates, jurisdiction, t(at))?.rate).toBe(rate);
  });
  it("on equal effectiveFrom the later entry wins", () => {
    const tie: TaxRate[] = [
      { jurisdiction: "GB", rate: "0.175", effectiveFrom: 0 },
      { jurisdiction: "GB", rate: "0.2", effectiveFrom: 0 },
    ];
    expect(rateInForce(tie, "GB", 1)?.rate).toBe("0.2");
  });
  it("returns undefined for no rates", () => {
    expect(rateInForce([], "DE", 0)).toBeUndefined();
  });
});

describe("taxOnLine", () => {
  const cases: [number, string, number][] = [
    [10_000, "0.08875", 888], // 887.5 → away from zero
    [-10_000, "0.08875", -888],
    [12_345, "0.19", 2346], // 2345.55
    [-12_345, "0.19", -2346],
    [100, "0.0725", 7], // 7.25
    [1, "0.5", 1],
    [-1, "0.5", -1],
    [1, "0.49", 0],
    [0, "0.2", 0],
    [100, "0", 0],
    [9_007_199_254_740, "1", 9_007_199_254_740],
  ];
  it.each(cases)("%i at %s → %i", (amount, rate, tax) => {
    expect(taxOnLine(amount, rate)).toBe(tax);
  });
  it("throws on a malformed rate (rates are validated on input)", () => {
    expect(() => taxOnLine(100, "abc")).toThrow(RangeError);
  });
  it("is symmetric for credits", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1_000_000_000 }), fc.integer({ min: 0, max: 1_000_000 }), (amount, bp) => {
        const rate = (bp / 1_000_000).toFixed(6);
        expect(taxOnLine(-amount, rate)).toBe(-taxOnLine(amount, rate) || 0);
        expect(Math.abs(taxOnLine(amount, rate) - (amount * bp) / 1_000_000)).toBeLessThanOrEqual(0.5);
      }),
    );
  });
});

describe("jurisdictionOf", () => {
  const cases: [string | null, string | null, string | null][] = [
    ["US", "CA", "US-CA"],
    ["DE", null, "DE"],
    ["DE", "", "DE"],
    ["us", "ny", "US-NY"],
    [" GB ", " ", "GB"],
    ["US", "US-CA", "US-CA"],
    [null, "CA", null],
    ["", null, null],
    [null, null, null],
  ];
  it.each(cases)("%j + %j → %j", (country, region, expected) => {
    expect(jurisdictionOf(country, region)).toBe(expected);
  });
});
