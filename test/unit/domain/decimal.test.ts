import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { formatDecimal, formatScaled, ONE, parseDecimal, roundDiv, SCALE } from "../../../src/domain/decimal";

describe("constants", () => {
  it("SCALE and ONE agree", () => {
    expect(SCALE).toBe(12);
    expect(ONE).toBe(10n ** 12n);
  });
});

describe("parseDecimal accepts", () => {
  const cases: [string | number, bigint][] = [
    ["0.0006", 600_000_000n],
    ["-3", -3n * ONE],
    ["10.50", 10_500_000_000_000n],
    [".5", ONE / 2n],
    ["-.5", -ONE / 2n],
    ["0", 0n],
    ["-0", 0n],
    ["000.100", ONE / 10n],
    ["0.000000000001", 1n],
    ["-0.000000000001", -1n],
    ["0.1000000000000", ONE / 10n], // 13 written decimals, but only one is significant
    ["123456789012345678901234567890", 123456789012345678901234567890n * ONE],
    [0, 0n],
    [-0, 0n],
    [0.1, ONE / 10n],
    [99.99, 99_990_000_000_000n],
    [-1.5, -1_500_000_000_000n],
    [1e-7, 100_000n],
    [1e-12, 1n],
    [-2.5e-7, -250_000n],
    [1.5e-10, 150n],
    [1e21, 10n ** 33n],
    [1.25e22, 125n * 10n ** 32n],
    [Number.MAX_SAFE_INTEGER, BigInt(Number.MAX_SAFE_INTEGER) * ONE],
  ];
  it.each(cases)("%s", (input, expected) => {
    expect(parseDecimal(input)).toEqual({ ok: true, value: expected });
  });
});

describe("parseDecimal rejects", () => {
  const garbage: (string | number)[] = [
    "", " 1", "1 ", "1.", ".", "-", "+1", "--1", "1.2.3", "abc", "1e5", "1E5", "0x10", "1,5", "1_000", "−1", "Infinity", "NaN",
  ];
  it.each(garbage)("%j as not a number", (input) => {
    expect(parseDecimal(input)).toEqual({ ok: false, error: "must be a decimal number" });
  });
  it.each([NaN, Infinity, -Infinity])("%s as not finite", (input) => {
    expect(parseDecimal(input)).toEqual({ ok: false, error: "must be a finite number" });
  });
  const tooPrecise: [string | number, number, string][] = [
    ["0.0000000000001", 12, "has more than 12 decimal places"],
    [1e-13, 12, "has more than 12 decimal places"],
    [0.30000000000000004, 12, "has more than 12 decimal places"],
    ["1.234", 2, "has more than 2 decimal places"],
    ["1.5", 0, "has more than 0 decimal places"],
    ["0.0000000000001", 20, "has more than 12 decimal places"], // capped at SCALE
  ];
  it.each(tooPrecise)("%s with max %i decimals", (input, max, error) => {
    expect(parseDecimal(input, max)).toEqual({ ok: false, error });
  });
  it("counts only significant decimals against the limit", () => {
    expect(parseDecimal("1.230", 2)).toEqual({ ok: true, value: 1_230_000_000_000n });
    expect(parseDecimal("7.000", 0)).toEqual({ ok: true, value: 7n * ONE });
  });
});

describe("formatDecimal", () => {
  const cases: [bigint, string][] = [
    [600_000_000n, "0.0006"],
    [30n * ONE, "30"],
    [-1_500_000_000_000n, "-1.5"],
    [0n, "0"],
    [1n, "0.000000000001"],
    [-1n, "-0.000000000001"],
    [10_500_000_000_000n, "10.5"],
    [10n ** 33n, "1000000000000000000000"],
  ];
  it.each(cases)("%s → %s", (v, s) => {
    expect(formatDecimal(v)).toBe(s);
  });
  it("formatScaled handles other scales", () => {
    expect(formatScaled(41_500n, 3)).toBe("41.5");
    expect(formatScaled(-5n, 24)).toBe("-0.000000000000000000000005");
    expect(formatScaled(123n, 0)).toBe("123");
  });
  it("round-trips through parseDecimal", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }), (v) => {
        expect(parseDecimal(formatDecimal(v))).toEqual({ ok: true, value: v });
      }),
    );
  });
  it("parses whole numbers (its fast path) exactly as the same value written with decimals", () => {
    fc.assert(
      fc.property(fc.oneof(fc.integer(), fc.maxSafeInteger(), fc.constantFrom(Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 999_999_999_999_999)), (n) => {
        const viaFraction = parseDecimal(`${n}.0`);
        expect(parseDecimal(n)).toEqual(viaFraction);
        expect(parseDecimal(String(n))).toEqual(viaFraction);
        expect(formatDecimal(BigInt(n) * ONE)).toBe(String(n));
      }),
    );
    expect(parseDecimal("0007")).toEqual({ ok: true, value: 7n * ONE });
    expect(parseDecimal("1234567890123456")).toEqual({ ok: true, value: 1234567890123456n * ONE }); // 16 digits: general path
  });
  it("parses every JS number it accepts exactly like its decimal string", () => {
    fc.assert(
      fc.property(fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e25, max: 1e25 }), (n) => {
        const parsed = parseDecimal(n);
        if (parsed.ok) expect(Number(formatDecimal(parsed.value))).toBe(n === 0 ? 0 : n);
        else expect(parsed.error).toBe("has more than 12 decimal places");
      }),
    );
  });
});

describe("roundDiv", () => {
  const cases: [bigint, bigint, bigint][] = [
    [5n, 2n, 3n],
    [-5n, 2n, -3n],
    [5n, -2n, -3n],
    [-5n, -2n, 3n],
    [7n, 3n, 2n],
    [-7n, 3n, -2n],
    [1n, 3n, 0n],
    [2n, 3n, 1n],
    [-2n, 3n, -1n],
    [0n, 5n, 0n],
    [15n, 10n, 2n],
    [-15n, 10n, -2n],
    [14n, 10n, 1n],
    [-14n, 10n, -1n],
    [25n, 10n, 3n],
    [-25n, -10n, 3n],
    [6n, 3n, 2n],
  ];
  it.each(cases)("%s / %s → %s", (n, d, q) => {
    expect(roundDiv(n, d)).toBe(q);
  });
  it("throws on division by zero (a bug, not an expected failure)", () => {
    expect(() => roundDiv(1n, 0n)).toThrow(RangeError);
  });
  it("matches a reference: sign × floor((2|n| + |d|) / 2|d|)", () => {
    const nonZero = fc.bigInt({ min: -(10n ** 20n), max: 10n ** 20n }).filter((d) => d !== 0n);
    fc.assert(
      fc.property(fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }), nonZero, (n, d) => {
        const abs = (x: bigint): bigint => (x < 0n ? -x : x);
        const magnitude = (2n * abs(n) + abs(d)) / (2n * abs(d));
        const expected = (n < 0n) !== (d < 0n) ? -magnitude : magnitude;
        expect(roundDiv(n, d)).toBe(expected);
      }),
    );
  });
});
