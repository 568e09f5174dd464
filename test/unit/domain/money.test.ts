import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseDecimal } from "../../../src/domain/decimal";
import { CURRENCIES, currencyExponent, decimalToMinor, formatMinor, isCurrency, money, toMinor } from "../../../src/domain/money";

describe("currencyExponent", () => {
  const cases: [string, number][] = [
    ["USD", 2], ["EUR", 2], ["GBP", 2], ["JPY", 0], ["KRW", 0], ["CHF", 2], ["CAD", 2], ["AUD", 2], ["NZD", 2],
    ["SEK", 2], ["NOK", 2], ["DKK", 2], ["PLN", 2], ["CZK", 2], ["HUF", 2], ["INR", 2], ["BRL", 2], ["MXN", 2],
    ["CNY", 2], ["HKD", 2], ["SGD", 2], ["ZAR", 2], ["AED", 2], ["SAR", 2], ["BHD", 3], ["KWD", 3], ["OMR", 3],
    ["JOD", 3], ["TND", 3], ["IQD", 3], ["LYD", 3], ["CLP", 0], ["ISK", 0], ["VND", 0], ["UGX", 0], ["XOF", 0],
    ["XAF", 0], ["XPF", 0], ["PYG", 0], ["RWF", 0], ["BIF", 0], ["DJF", 0], ["GNF", 0], ["KMF", 0], ["VUV", 0],
    ["UYI", 0], ["IDR", 2], ["TRY", 2], ["ILS", 2], ["THB", 2], ["MYR", 2], ["PHP", 2], ["TWD", 2], ["COP", 2],
    ["ARS", 2], ["PEN", 2], ["NGN", 2], ["EGP", 2], ["KES", 2], ["UAH", 2], ["RON", 2], ["BGN", 2], ["CLF", 4],
    ["UYW", 4], ["XCG", 2], ["ZWG", 2], ["SLE", 2], ["VES", 2], ["MRU", 2], ["STN", 2],
  ];
  it.each(cases)("%s has exponent %i", (code, exponent) => {
    expect(currencyExponent(code)).toBe(exponent);
    expect(isCurrency(code)).toBe(true);
  });
  it("knows every active code with a minor unit", () => {
    expect(CURRENCIES.length).toBeGreaterThanOrEqual(150);
    for (const code of CURRENCIES) expect(code).toMatch(/^[A-Z]{3}$/);
  });
  it.each(["usd", "Usd", "US", "USDX", "", "XXX", "XAU", "XTS", "HRK", "ABC", "toString", "constructor", "__proto__"])(
    "rejects %j",
    (code) => {
      expect(isCurrency(code)).toBe(false);
      expect(currencyExponent(code)).toBeUndefined();
    },
  );
});

describe("toMinor", () => {
  const accepted: [string | number, string, number][] = [
    ["99.99", "USD", 9999],
    [99.99, "USD", 9999],
    ["10.50", "USD", 1050],
    ["10.500", "USD", 1050],
    ["-0.05", "USD", -5],
    [-0.05, "USD", -5],
    ["0", "USD", 0],
    [0.1, "EUR", 10],
    ["1000", "JPY", 1000],
    [1000, "JPY", 1000],
    ["1000.0", "JPY", 1000],
    ["1.234", "BHD", 1234],
    ["0.001", "KWD", 1],
    ["1.2345", "CLF", 12345],
    ["90071992547409.91", "USD", Number.MAX_SAFE_INTEGER],
    ["-90071992547409.91", "USD", -Number.MAX_SAFE_INTEGER],
    [1e3, "USD", 100000],
  ];
  it.each(accepted)("%j %s → %i", (amount, currency, minor) => {
    expect(toMinor(amount, currency)).toEqual({ ok: true, value: minor });
  });
  const rejected: [string | number, string, string][] = [
    ["0.001", "USD", "has more decimal places than USD allows (2)"],
    ["1000.5", "JPY", "has more decimal places than JPY allows (0)"],
    ["1.2345", "BHD", "has more decimal places than BHD allows (3)"],
    [0.1 + 0.2, "USD", "has more decimal places than USD allows (2)"],
    ["0.0000000000000001", "USD", "has more decimal places than USD allows (2)"],
    ["90071992547409.92", "USD", "is too large"],
    [1e21, "USD", "is too large"],
    ["abc", "USD", "must be a decimal number"],
    ["", "USD", "must be a decimal number"],
    [NaN, "USD", "must be a finite number"],
    ["1", "XYZ", "unknown currency XYZ"],
    ["1", "usd", "unknown currency usd"],
  ];
  it.each(rejected)("%j %s → %s", (amount, currency, error) => {
    expect(toMinor(amount, currency)).toEqual({ ok: false, error });
  });
});

describe("formatMinor and money", () => {
  const cases: [number | bigint, string, string][] = [
    [9999, "USD", "99.99"],
    [-5, "USD", "-0.05"],
    [0, "USD", "0.00"],
    [100, "USD", "1.00"],
    [1000, "JPY", "1000"],
    [-1000, "JPY", "-1000"],
    [1234, "BHD", "1.234"],
    [5, "BHD", "0.005"],
    [-12345, "CLF", "-1.2345"],
    [100n, "USD", "1.00"],
    [10n ** 30n, "USD", "10000000000000000000000000000.00"],
  ];
  it.each(cases)("%s %s → %s", (minor, currency, text) => {
    expect(formatMinor(minor, currency)).toBe(text);
  });
  it("throws for bugs: unknown currency or fractional minor units", () => {
    expect(() => formatMinor(1, "XYZ")).toThrow(RangeError);
    expect(() => formatMinor(1.5, "USD")).toThrow(RangeError);
  });
  it("money builds the API shape", () => {
    expect(money(9999, "USD")).toEqual({ amount: "99.99", amountMinor: 9999, currency: "USD" });
    expect(money(500, "JPY")).toEqual({ amount: "500", amountMinor: 500, currency: "JPY" });
  });
  it("toMinor ∘ formatMinor is the identity for every currency", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...CURRENCIES),
        fc.integer({ min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }),
        (currency, minor) => {
          expect(toMinor(formatMinor(minor, currency), currency)).toEqual({ ok: true, value: minor });
        },
      ),
    );
  });
});

describe("decimalToMinor", () => {
  const cases: [string, string, bigint][] = [
    ["0.005", "USD", 1n],
    ["-0.005", "USD", -1n],
    ["0.004999999999", "USD", 0n],
    ["-0.004999999999", "USD", 0n],
    ["12.345", "USD", 1235n],
    ["1.5", "JPY", 2n],
    ["2.5", "JPY", 3n], // half away from zero, not to even
    ["-2.5", "JPY", -3n],
    ["0.0005", "BHD", 1n],
    ["0.00005", "CLF", 1n],
    ["7", "USD", 700n],
  ];
  it.each(cases)("%s %s → %s", (value, currency, minor) => {
    const parsed = parseDecimal(value);
    if (!parsed.ok) throw new Error(parsed.error);
    expect(decimalToMinor(parsed.value, currency)).toBe(minor);
  });
  it("throws on an unknown currency", () => {
    expect(() => decimalToMinor(1n, "XYZ")).toThrow(RangeError);
  });
});
