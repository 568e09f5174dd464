import { describe, expect, it } from "vitest";
import { displayMoney, displayRate, displayUnitPrice } from "../../src/modules/documents/format";
import { readable, tierDetails } from "../../src/modules/documents/model";

describe("document formatting", () => {
  it.each([
    [123456, "USD", "$1,234.56"],
    [-1450, "USD", "−$14.50"],
    [1000, "JPY", "¥1,000"],
    [1234567, "BHD", "BHD 1,234.567"],
    [5, "BHD", "BHD 0.005"],
    [100000000, "EUR", "€1,000,000.00"],
    [0, "KWD", "KWD 0.000"],
  ])("%i minor %s → %s (ISO-4217 decimals, grouped)", (minor, currency, shown) => {
    expect(displayMoney(minor, currency)).toBe(shown);
  });

  it("keeps every decimal of a unit price and groups its whole part", () => {
    expect(displayUnitPrice("0.0005", "USD")).toBe("$0.0005");
    expect(displayUnitPrice("1200.00", "USD")).toBe("$1,200.00");
    expect(displayUnitPrice("1234.567", "BHD")).toBe("BHD 1,234.567");
  });

  it.each([
    ["0.0725", "7.25%"],
    ["0.08875", "8.875%"],
    ["0.1", "10%"],
    ["0.2", "20%"],
    ["0", "0%"],
  ])("rate %s → %s", (rate, shown) => expect(displayRate(rate)).toBe(shown));

  it("explains graduated and volume tiers from the stored computation", () => {
    expect(tierDetails("graduated: 1500 units: 1000 × 0.001 + 500 × 0.0005 + 2 flat", "USD")).toEqual(["Graduated pricing, 1500 units", "Tier 1: 1000 × $0.001", "Tier 2: 500 × $0.0005 + $2 flat"]);
    expect(tierDetails("volume: 120 units at tier 2: 120 × 10", "JPY")).toEqual(["Volume pricing, 120 units at tier 2", "All units: 120 × ¥10"]);
    expect(tierDetails("per_unit: 3 units × 0.5", "USD")).toEqual([]);
  });

  it("prints stored descriptions with dates, leaving the period to the detail line", () => {
    expect(readable("Pro (advance, 2026-11-01 – 2026-12-01)")).toBe("Pro, billed in advance");
    expect(readable("Unused time on Basic after 2024-03-25T00:00:00.000Z")).toBe("Unused time on Basic after 25 Mar 2024");
    expect(readable("api_calls usage (2026-10-01 – 2026-11-01)")).toBe("api_calls usage");
  });
});
