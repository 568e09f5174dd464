import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ONE, parseDecimal } from "../../../src/domain/decimal";
import { MAX_METERED_AMOUNT_MINOR, maxPriceableQuantity, priceQuantity, validatePricing, type PricingSpec, type Tier } from "../../../src/domain/pricing";

const q = (s: string | number): bigint => {
  const parsed = parseDecimal(s);
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.value;
};

// Stripe's tiered pricing example.
const stripeTiers: Tier[] = [
  { upTo: 5, unitAmount: "7" },
  { upTo: 10, unitAmount: "6.50" },
  { upTo: null, unitAmount: "6" },
];
// Lago's graduated example (with flat fees); its last tier as published ends at 20.
const lagoTiers: Tier[] = [
  { upTo: 10, unitAmount: "10", flatAmount: "2" },
  { upTo: 20, unitAmount: "5", flatAmount: "3" },
];
const lagoOpenTiers: Tier[] = [lagoTiers[0]!, { ...lagoTiers[1]!, upTo: null }];

const graduated = (tiers: Tier[]): PricingSpec => ({ pricingModel: "graduated", tiers });
const volume = (tiers: Tier[]): PricingSpec => ({ pricingModel: "volume", tiers });

describe("priceQuantity: graduated", () => {
  const cases: [string, Tier[], number, number][] = [
    ["stripe", stripeTiers, 0, 0],
    ["stripe", stripeTiers, 1, 700],
    ["stripe", stripeTiers, 5, 3500],
    ["stripe", stripeTiers, 6, 4150],
    ["stripe", stripeTiers, 10, 6750],
    ["stripe", stripeTiers, 11, 7350],
    ["stripe", stripeTiers, 20, 12750],
    ["lago", lagoTiers, 0, 200],
    ["lago", lagoTiers, 1, 1200],
    ["lago", lagoTiers, 10, 10200],
    ["lago", lagoTiers, 11, 11000],
    ["lago", lagoTiers, 12, 11500],
    ["lago", lagoTiers, 20, 15500],
    ["lago", lagoTiers, 21, 16000], // the last tier is treated as open-ended
    ["lago open", lagoOpenTiers, 0, 200],
    ["lago open", lagoOpenTiers, 1, 1200],
    ["lago open", lagoOpenTiers, 10, 10200],
    ["lago open", lagoOpenTiers, 11, 11000],
    ["lago open", lagoOpenTiers, 12, 11500],
  ];
  it.each(cases)("%s tiers, quantity %i → %i", (_name, tiers, quantity, minor) => {
    expect(priceQuantity(graduated(tiers), q(quantity), "USD").amountMinor).toBe(minor);
  });

  it("explains and breaks down the tiers", () => {
    expect(priceQuantity(graduated(stripeTiers), q(20), "USD")).toEqual({
      amountMinor: 12750,
      explanation: "20 units: 5 × 7 + 5 × 6.50 + 10 × 6",
      tiers: [
        { tier: 1, units: "5", unitAmount: "7", flatAmount: "0", amount: "35" },
        { tier: 2, units: "5", unitAmount: "6.50", flatAmount: "0", amount: "32.5" },
        { tier: 3, units: "10", unitAmount: "6", flatAmount: "0", amount: "60" },
      ],
    });
    expect(priceQuantity(graduated(lagoTiers), q(12), "USD").explanation).toBe("12 units: 10 × 10 + 2 flat + 2 × 5 + 3 flat");
    expect(priceQuantity(graduated(lagoTiers), q(0), "USD").explanation).toBe("0 units: 0 × 10 + 2 flat");
    expect(priceQuantity(graduated(stripeTiers), q(1), "USD").explanation).toBe("1 unit: 1 × 7");
  });

  it("rounds once per line, not per tier", () => {
    const tiers: Tier[] = [{ upTo: 1, unitAmount: "0.004" }, { upTo: null, unitAmount: "0.004" }];
    // Per-tier rounding would give 0 + 0; the exact total 0.008 rounds to 1 cent.
    expect(priceQuantity(graduated(tiers), q(2), "USD").amountMinor).toBe(1);
  });

  it("handles fractional quantities and tier bounds", () => {
    const tiers: Tier[] = [{ upTo: 1.5, unitAmount: "2" }, { upTo: null, unitAmount: "1" }];
    expect(priceQuantity(graduated(tiers), q("2.25"), "USD").amountMinor).toBe(375);
  });

  it("treats a negative quantity as zero", () => {
    expect(priceQuantity(graduated(lagoTiers), -5n * ONE, "USD").amountMinor).toBe(200);
  });
});

describe("priceQuantity: volume", () => {
  const cases: [string, Tier[], number, number][] = [
    ["stripe", stripeTiers, 0, 0],
    ["stripe", stripeTiers, 5, 3500],
    ["stripe", stripeTiers, 6, 3900],
    ["stripe", stripeTiers, 10, 6500],
    ["stripe", stripeTiers, 11, 6600],
    ["stripe", stripeTiers, 20, 12000],
    ["lago", lagoOpenTiers, 0, 200], // quantity 0 falls in the first tier, flat fee included
    ["lago", lagoOpenTiers, 10, 10200],
    ["lago", lagoOpenTiers, 11, 5800],
  ];
  it.each(cases)("%s tiers, quantity %i → %i", (_name, tiers, quantity, minor) => {
    expect(priceQuantity(volume(tiers), q(quantity), "USD").amountMinor).toBe(minor);
  });
  it("explains the tier used", () => {
    expect(priceQuantity(volume(stripeTiers), q(6), "USD")).toEqual({
      amountMinor: 3900,
      explanation: "6 units at tier 2: 6 × 6.50",
      tiers: [{ tier: 2, units: "6", unitAmount: "6.50", flatAmount: "0", amount: "39" }],
    });
    expect(priceQuantity(volume(lagoOpenTiers), q(11), "USD").explanation).toBe("11 units at tier 2: 11 × 5 + 3 flat");
  });
});

describe("priceQuantity: per_unit", () => {
  const cases: [string, string | number, string, number][] = [
    ["0.0006", 1_000_000, "USD", 60_000],
    ["0.0006", 1234, "USD", 74], // 0.7404
    ["0.0006", 12_345, "USD", 741], // 7.407
    ["0.0002", 25, "USD", 1], // exactly 0.005 → half away from zero
    ["0.0002", 24, "USD", 0], // 0.0048
    ["0.10", "1.5", "USD", 15],
    ["0.5", 3, "JPY", 2],
    ["0.0005", 1, "BHD", 1],
    ["0.000000000001", 1, "USD", 0],
    ["7", 0, "USD", 0],
  ];
  it.each(cases)("%s × %s %s → %i", (unitAmount, quantity, currency, minor) => {
    const spec: PricingSpec = { pricingModel: "per_unit", unitAmount };
    expect(priceQuantity(spec, q(quantity), currency).amountMinor).toBe(minor);
  });
  it("explains, with free units", () => {
    expect(priceQuantity({ pricingModel: "per_unit", unitAmount: "0.0006" }, q(20), "USD").explanation).toBe("20 units × 0.0006");
    const free: PricingSpec = { pricingModel: "per_unit", unitAmount: "2", freeUnits: 5 };
    expect(priceQuantity(free, q(20), "USD")).toEqual({ amountMinor: 3000, explanation: "15 units × 2 (20 units, 5 free)" });
    expect(priceQuantity(free, q(3), "USD").amountMinor).toBe(0);
  });
  it("matches a reference computation", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 10n ** 6n * ONE }), fc.bigInt({ min: 0n, max: 10n ** 10n }), (quantity, unit) => {
        const unitAmount = `${unit / 10n ** 6n}.${(unit % 10n ** 6n).toString().padStart(6, "0")}`;
        const exact = quantity * unit; // scale 18
        const expected = (exact + 5n * 10n ** 15n) / 10n ** 16n;
        expect(priceQuantity({ pricingModel: "per_unit", unitAmount }, quantity, "USD").amountMinor).toBe(Number(expected));
      }),
    );
  });
});

describe("priceQuantity: package", () => {
  const spec: PricingSpec = { pricingModel: "package", packageSize: 10, packageAmount: "100" };
  const cases: [number | undefined, string | number, number][] = [
    [undefined, 121, 130_000],
    [10, 121, 120_000],
    [undefined, 0, 0],
    [undefined, 1, 10_000],
    [undefined, 10, 10_000],
    [undefined, 11, 20_000],
    [undefined, "10.5", 20_000],
    [10, 5, 0],
    [10, 10, 0],
    [10, 11, 10_000],
  ];
  it.each(cases)("free %s, quantity %s → %i", (freeUnits, quantity, minor) => {
    const withFree: PricingSpec = freeUnits === undefined ? spec : { ...spec, freeUnits };
    expect(priceQuantity(withFree, q(quantity), "USD").amountMinor).toBe(minor);
  });
  it("explains", () => {
    expect(priceQuantity(spec, q(121), "USD").explanation).toBe("13 packages of 10 × 100 (121 units, 0 free)");
    expect(priceQuantity({ ...spec, freeUnits: 10 }, q(121), "USD").explanation).toBe(
      "12 packages of 10 × 100 (121 units, 10 free)",
    );
    expect(priceQuantity(spec, q(1), "USD").explanation).toBe("1 package of 10 × 100 (1 unit, 0 free)");
  });
});

describe("priceQuantity: misuse throws", () => {
  it.each<[PricingSpec, string]>([
    [{ pricingModel: "per_unit", unitAmount: "7" }, "XYZ"],
    [{ pricingModel: "per_unit" }, "USD"],
    [{ pricingModel: "per_unit", unitAmount: "abc" }, "USD"],
    [{ pricingModel: "graduated", tiers: [] }, "USD"],
    [{ pricingModel: "package", packageAmount: "1" }, "USD"],
  ])("%j in %s", (spec, currency) => {
    expect(() => priceQuantity(spec, ONE, currency)).toThrow(RangeError);
  });
});

describe("validatePricing", () => {
  const valid: PricingSpec[] = [
    { pricingModel: "per_unit", unitAmount: "0.0006" },
    { pricingModel: "per_unit", unitAmount: "0", freeUnits: 0 },
    { pricingModel: "per_unit", unitAmount: "0.000000000001", freeUnits: 1000 },
    graduated(stripeTiers),
    volume(stripeTiers),
    graduated(lagoOpenTiers),
    graduated([{ upTo: null, unitAmount: "1" }]),
    graduated([{ upTo: 0.5, unitAmount: "1" }, { upTo: null, unitAmount: "0.5" }]),
    { pricingModel: "package", packageSize: 10, packageAmount: "100", freeUnits: 10 },
  ];
  it.each(valid)("accepts %j", (spec) => {
    expect(validatePricing(spec, "USD")).toEqual([]);
  });

  const invalid: [string, PricingSpec, string, { path: string; message: string }[]][] = [
    ["missing unitAmount", { pricingModel: "per_unit" }, "USD", [{ path: "unitAmount", message: "is required" }]],
    ["negative unitAmount", { pricingModel: "per_unit", unitAmount: "-1" }, "USD", [{ path: "unitAmount", message: "must not be negative" }]],
    ["garbage unitAmount", { pricingModel: "per_unit", unitAmount: "1,5" }, "USD", [{ path: "unitAmount", message: "must be a decimal number" }]],
    [
      "13 decimals",
      { pricingModel: "per_unit", unitAmount: "0.0000000000001" },
      "USD",
      [{ path: "unitAmount", message: "has more than 12 decimal places" }],
    ],
    ["unknown currency", { pricingModel: "per_unit", unitAmount: "1" }, "XYZ", [{ path: "currency", message: "unknown currency XYZ" }]],
    [
      "unknown model",
      { pricingModel: "stairstep" as PricingSpec["pricingModel"] },
      "USD",
      [{ path: "pricingModel", message: "must be one of per_unit, graduated, volume, package" }],
    ],
    ["no tiers", { pricingModel: "graduated" }, "USD", [{ path: "tiers", message: "must have at least one tier" }]],
    ["empty tiers", volume([]), "USD", [{ path: "tiers", message: "must have at least one tier" }]],
    [
      "open tier in the middle",
      graduated([{ upTo: null, unitAmount: "1" }, { upTo: null, unitAmount: "1" }]),
      "USD",
      [{ path: "tiers.0.upTo", message: "only the last tier may be open-ended (upTo null)" }],
    ],
    [
      "closed last tier",
      graduated(lagoTiers),
      "USD",
      [{ path: "tiers.1.upTo", message: "the last tier must be open-ended (upTo null): quantities past the last bound need a price, and a bounded last tier (Kill Bill style, pricing them at its rate) is not supported" }],
    ],
    [
      "zero upTo",
      graduated([{ upTo: 0, unitAmount: "1" }, { upTo: null, unitAmount: "1" }]),
      "USD",
      [{ path: "tiers.0.upTo", message: "must be greater than 0" }],
    ],
    [
      "negative tier amounts",
      volume([{ upTo: 5, unitAmount: "-1" }, { upTo: null, unitAmount: "1", flatAmount: "-2" }]),
      "USD",
      [
        { path: "tiers.0.unitAmount", message: "must not be negative" },
        { path: "tiers.1.flatAmount", message: "must not be negative" },
      ],
    ],
    [
      "missing tier unitAmount",
      graduated([{ upTo: null } as Tier]),
      "USD",
      [{ path: "tiers.0.unitAmount", message: "is required" }],
    ],
    [
      "package without size or amount",
      { pricingModel: "package" },
      "USD",
      [
        { path: "packageSize", message: "is required" },
        { path: "packageAmount", message: "is required" },
      ],
    ],
    ["package size 0", { pricingModel: "package", packageSize: 0, packageAmount: "1" }, "USD", [{ path: "packageSize", message: "must be a positive integer" }]],
    ["package size 1.5", { pricingModel: "package", packageSize: 1.5, packageAmount: "1" }, "USD", [{ path: "packageSize", message: "must be a positive integer" }]],
    ["negative freeUnits", { pricingModel: "per_unit", unitAmount: "1", freeUnits: -1 }, "USD", [{ path: "freeUnits", message: "must not be negative" }]],
    [
      "freeUnits on tiers",
      { ...graduated(stripeTiers), freeUnits: 3 },
      "USD",
      [{ path: "freeUnits", message: "only applies to per_unit and package pricing; use a free first tier instead" }],
    ],
  ];
  it.each(invalid)("rejects %s", (_name, spec, currency, issues) => {
    expect(validatePricing(spec, currency)).toEqual(issues);
  });

  it.each<[string, Tier[], string]>([
    ["unsorted", [{ upTo: 10, unitAmount: "1" }, { upTo: 5, unitAmount: "1" }, { upTo: null, unitAmount: "1" }], "tiers.1.upTo"],
    ["equal bounds", [{ upTo: 5, unitAmount: "1" }, { upTo: 5, unitAmount: "1" }, { upTo: null, unitAmount: "1" }], "tiers.1.upTo"],
    [
      "later overlap",
      [{ upTo: 5, unitAmount: "1" }, { upTo: 50, unitAmount: "1" }, { upTo: 20, unitAmount: "1" }, { upTo: null, unitAmount: "1" }],
      "tiers.2.upTo",
    ],
  ])("reports %s tiers as overlapping", (_name, tiers, path) => {
    const issues = validatePricing(graduated(tiers), "USD");
    expect(issues).toHaveLength(1);
    expect(issues[0]?.path).toBe(path);
    expect(issues[0]?.message).toContain("overlap");
  });
});

describe("properties of tiered prices", () => {
  const tiersArb = fc
    .array(
      fc.record({
        width: fc.integer({ min: 1, max: 100 }),
        unit: fc.integer({ min: 0, max: 1_000_000 }),
        flat: fc.integer({ min: 0, max: 10_000 }),
      }),
      { minLength: 1, maxLength: 5 },
    )
    .map((raw) => {
      let upTo = 0;
      return raw.map((t, i): Tier => {
        upTo += t.width;
        return { upTo: i === raw.length - 1 ? null : upTo, unitAmount: (t.unit / 10_000).toString(), flatAmount: (t.flat / 100).toString() };
      });
    });
  const quantityArb = fc.bigInt({ min: 0n, max: 1000n * ONE });

  it("generated specs are valid", () => {
    fc.assert(
      fc.property(tiersArb, (tiers) => {
        expect(validatePricing(graduated(tiers), "USD")).toEqual([]);
      }),
    );
  });

  it("graduated is non-negative and monotone in quantity", () => {
    fc.assert(
      fc.property(tiersArb, quantityArb, quantityArb, (tiers, a, b) => {
        const [low, high] = a <= b ? [a, b] : [b, a];
        const priceLow = priceQuantity(graduated(tiers), low, "USD").amountMinor;
        const priceHigh = priceQuantity(graduated(tiers), high, "USD").amountMinor;
        expect(priceLow).toBeGreaterThanOrEqual(0);
        expect(priceHigh).toBeGreaterThanOrEqual(priceLow);
      }),
    );
  });

  it("graduated breakdown units add up to the quantity", () => {
    fc.assert(
      fc.property(tiersArb, quantityArb, (tiers, quantity) => {
        const result = priceQuantity(graduated(tiers), quantity, "USD");
        const units = (result.tiers ?? []).reduce((sum, t) => sum + q(t.units), 0n);
        expect(units).toBe(quantity);
      }),
    );
  });

  it("volume is non-negative and equals graduated inside the first tier", () => {
    fc.assert(
      fc.property(tiersArb, quantityArb, (tiers, quantity) => {
        const price = priceQuantity(volume(tiers), quantity, "USD").amountMinor;
        expect(price).toBeGreaterThanOrEqual(0);
        const firstUpTo = tiers[0]?.upTo;
        if (firstUpTo === null || firstUpTo === undefined || quantity <= BigInt(firstUpTo) * ONE) {
          expect(price).toBe(priceQuantity(graduated(tiers), quantity, "USD").amountMinor);
        }
      }),
    );
  });
});

describe("maxPriceableQuantity: the most usage a metered price can charge for", () => {
  const unitArb = fc.integer({ min: 0, max: 10_000_000 }).map((n) => (n / 10_000).toString()); // 0 to 1,000, 4 decimals
  const specArb: fc.Arbitrary<PricingSpec> = fc.oneof(
    unitArb.map((unitAmount): PricingSpec => ({ pricingModel: "per_unit", unitAmount })),
    fc.record({ size: fc.integer({ min: 1, max: 1000 }), amount: unitArb }).map(({ size, amount }): PricingSpec => ({ pricingModel: "package", packageSize: size, packageAmount: amount })),
    fc
      .tuple(fc.constantFrom("graduated" as const, "volume" as const), fc.array(fc.record({ width: fc.integer({ min: 1, max: 10 ** 9 }), unit: unitArb, flat: unitArb }), { minLength: 1, maxLength: 4 }))
      .map(([pricingModel, raw]): PricingSpec => {
        let upTo = 0;
        return { pricingModel, tiers: raw.map((t, i) => ({ upTo: i === raw.length - 1 ? null : (upTo += t.width), unitAmount: t.unit, flatAmount: t.flat })) };
      }),
  );
  const limitArb = fc.constantFrom(10 ** 13, 10 ** 9, 1234);

  it("is never exceeded by any quantity up to the bound", () => {
    fc.assert(
      fc.property(specArb, fc.constantFrom("USD", "JPY", "KWD"), limitArb, fc.double({ min: 0, max: 1, noNaN: true }), (spec, currency, limit, f) => {
        const bound = maxPriceableQuantity(spec, currency, limit);
        if (bound === null) return; // nothing charged per unit
        if (bound === 0n && priceQuantity(spec, 0n, currency).amountMinor > limit) return; // the flat amounts alone are over
        // Any quantity up to the bound prices within the limit.
        const at = (bound * BigInt(Math.floor(f * 1_000_000))) / 1_000_000n;
        expect(priceQuantity(spec, bound, currency).amountMinor).toBeLessThanOrEqual(limit);
        expect(priceQuantity(spec, at, currency).amountMinor).toBeLessThanOrEqual(limit);
      }),
      { numRuns: 300 },
    );
  });

  it("is exact for a per-unit price, null when nothing is charged per unit, 0 when the flat amounts alone are over", () => {
    // 0.001 USD a unit and 10^13 cents: 10^14 units.
    expect(maxPriceableQuantity({ pricingModel: "per_unit", unitAmount: "0.001" }, "USD")).toBe(10n ** 14n * ONE);
    expect(priceQuantity({ pricingModel: "per_unit", unitAmount: "0.001" }, 10n ** 14n * ONE, "USD").amountMinor).toBe(MAX_METERED_AMOUNT_MINOR);
    expect(priceQuantity({ pricingModel: "per_unit", unitAmount: "0.001" }, (10n ** 14n + 10n) * ONE, "USD").amountMinor).toBeGreaterThan(MAX_METERED_AMOUNT_MINOR);
    expect(maxPriceableQuantity({ pricingModel: "per_unit", unitAmount: "0" }, "USD")).toBeNull();
    // A dear first tier does not hold back the cheap ones after it: 1 unit at 50 USD, then 0.0001 USD a unit.
    const dearFirst = graduated([{ upTo: 1, unitAmount: "50" }, { upTo: null, unitAmount: "0.0001" }]);
    const bound = maxPriceableQuantity(dearFirst, "USD")!;
    expect(bound).toBe(ONE + ((10n ** 13n - 5000n) * 10n ** 22n) / (10n ** 8n));
    expect(priceQuantity(dearFirst, bound, "USD").amountMinor).toBe(MAX_METERED_AMOUNT_MINOR);
    expect(maxPriceableQuantity(volume([{ upTo: 10, unitAmount: "0.5" }, { upTo: null, unitAmount: "0.0001", flatAmount: "1" }]), "USD")).toBe(((10n ** 13n - 100n) * 10n ** 22n) / (10n ** 8n));
    // Packages: whole packages within the limit.
    expect(maxPriceableQuantity({ pricingModel: "package", packageSize: 1000, packageAmount: "2" }, "USD", 1000)).toBe(5000n * ONE);
    expect(maxPriceableQuantity(graduated([{ upTo: null, unitAmount: "0", flatAmount: "5" }]), "USD", 100)).toBe(0n);
    // The default leaves room for hundreds of such lines on one invoice, exactly.
    expect(MAX_METERED_AMOUNT_MINOR * 900).toBeLessThan(Number.MAX_SAFE_INTEGER);
  });
});
