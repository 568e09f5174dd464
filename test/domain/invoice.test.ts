import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { arrearsProrationLines, billingLines, priceLines, prorationLines, type DraftLine, type Price } from "../../src/domain/invoice";
import { roundDiv } from "../../src/domain/decimal";

const D = (s: string) => Date.parse(s);
const line = (amount: number): DraftLine => ({ kind: "flat", description: "x", priceId: null, meterId: null, quantity: "1", unitAmount: null, amount, periodStart: 0, periodEnd: 1, computation: "" });

const prices: Price[] = [
  { id: "p_adv", type: "flat", amountMinor: 1000, billing: "advance" },
  { id: "p_arr", type: "flat", amountMinor: 250, billing: "arrears" },
  { id: "p_use", type: "metered", meterId: "api_calls", pricingModel: "per_unit", unitAmount: "0.0006" },
  { id: "p_seat", type: "metered", meterId: "seats", pricingModel: "volume", tiers: [{ upTo: 5, unitAmount: "7" }, { upTo: 10, unitAmount: "6.50" }, { upTo: null, unitAmount: "6" }] },
];

describe("billingLines", () => {
  const march = { start: D("2024-03-01"), end: D("2024-04-01") };
  const april = { start: D("2024-04-01"), end: D("2024-05-01") };

  it("bills arrears fees and usage for the period ended, advance fees for the next, then pending items", () => {
    const lines = billingLines({
      currency: "USD",
      quantity: 2,
      planName: "Pro",
      advance: { prices, period: april },
      arrears: { prices, period: march, usage: new Map([["api_calls", "12345"], ["seats", "6"]]) },
      pending: [line(-300)],
    });
    expect(lines.map((l) => [l.kind, l.priceId, l.amount, l.periodStart])).toEqual([
      ["flat", "p_arr", 500, march.start],
      ["usage", "p_use", 741, march.start], // 12345 × 0.0006 = 7.407 → 7.41
      ["usage", "p_seat", 3900, march.start],
      ["flat", "p_adv", 2000, april.start],
      ["flat", null, -300, 0],
    ]);
    expect(lines[1]!.computation).toContain("per_unit");
  });

  it("bills no usage and no arrears when there is no arrears period (first invoice)", () => {
    const lines = billingLines({ currency: "USD", quantity: 1, planName: "Pro", advance: { prices, period: april }, arrears: null, pending: [] });
    expect(lines.map((l) => l.priceId)).toEqual(["p_adv"]);
  });

  it("bills a meter with no usage at zero (volume tiers: first tier)", () => {
    const lines = billingLines({ currency: "USD", quantity: 1, planName: "Pro", advance: null, arrears: { prices, period: march, usage: new Map() }, pending: [] });
    expect(lines.filter((l) => l.kind === "usage").map((l) => [l.quantity, l.amount])).toEqual([["0", 0], ["0", 0]]);
  });
});

describe("prorationLines", () => {
  it("credits unused old time and charges remaining new time, each rounded before netting", () => {
    const lines = prorationLines({
      currency: "USD",
      period: { start: D("2024-03-01T00:00:00Z"), end: D("2024-04-01T00:00:00Z") },
      at: D("2024-03-15T00:00:00Z"),
      old: { prices: [{ id: "a", type: "flat", amountMinor: 1000, billing: "advance" }], quantity: 1, name: "Ten" },
      next: { prices: [{ id: "b", type: "flat", amountMinor: 2000, billing: "advance" }], quantity: 1, name: "Twenty" },
    });
    expect(lines.map((l) => l.amount)).toEqual([-548, 1097]);
    expect(lines.reduce((s, l) => s + l.amount, 0)).toBe(549);
  });

  it("ignores arrears fees and scales by quantity", () => {
    const lines = prorationLines({
      currency: "USD",
      period: { start: 0, end: 100_000 },
      at: 50_000,
      old: { prices: [{ id: "a", type: "flat", amountMinor: 999, billing: "advance" }, { id: "r", type: "flat", amountMinor: 5000, billing: "arrears" }], quantity: 3, name: "Old" },
      next: null,
    });
    expect(lines.map((l) => l.amount)).toEqual([-1499]); // 2997 × 50/100 = 1498.5 → 1499
  });
});

describe("arrearsProrationLines", () => {
  const march = { start: D("2024-03-01T00:00:00Z"), end: D("2024-04-01T00:00:00Z") };
  const arrears = (id: string, amountMinor: number): Price => ({ id, type: "flat", amountMinor, billing: "arrears" });

  it("bills the old fee for the time used and credits the new fee for the time before the change", () => {
    // $100 → $10 in arrears on 15 March: 14 of 31 days used. Old: 10000 × 14/31 = 4516.13 → 4516; new: −1000 × 14/31 = −451.6 → −452.
    const lines = arrearsProrationLines({ currency: "USD", period: march, at: D("2024-03-15T00:00:00Z"), old: { prices: [arrears("a", 10000)], quantity: 1, name: "Hundred" }, next: { prices: [arrears("b", 1000)], quantity: 1, name: "Ten" } });
    expect(lines.map((l) => l.amount)).toEqual([4516, -452]);
    // With the period-end line for the new fee (1000), the period costs 4516 + 548: each plan for its own days.
    expect(lines[0]).toMatchObject({ kind: "proration", periodStart: march.start, periodEnd: D("2024-03-15T00:00:00Z"), computation: "100.00 × 1209600/2678400 s used, rounded half away from zero" });
  });

  it("scales by quantity, leaves advance fees to prorationLines, and adds nothing at the period's start", () => {
    const period = { start: 0, end: 100_000 };
    const old = { prices: [arrears("a", 999), { id: "adv", type: "flat", amountMinor: 5000, billing: "advance" } as Price], quantity: 3, name: "Old" };
    const next = { prices: [arrears("b", 999)], quantity: 1, name: "New" };
    // used share of 2997 at 50/100: 2997 − 1499 (remaining, rounded) = 1498; new: −(999 − 500) = −499
    expect(arrearsProrationLines({ currency: "USD", period, at: 50_000, old, next }).map((l) => l.amount)).toEqual([1498, -499]);
    expect(arrearsProrationLines({ currency: "USD", period, at: 0, old, next })).toEqual([]);
  });

  it("used and remaining shares of a fee always add up to the fee", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10_000_000 }), fc.integer({ min: 1, max: 400 * 86_400 }), fc.double({ min: 0, max: 1, noNaN: true }), (amount, seconds, f) => {
        const period = { start: 0, end: seconds * 1000 };
        const at = Math.floor(f * seconds) * 1000;
        const [line] = arrearsProrationLines({ currency: "USD", period, at, old: { prices: [arrears("a", amount)], quantity: 1, name: "A" }, next: { prices: [], quantity: 1, name: "B" } });
        const remaining = prorationLines({ currency: "USD", period, at, old: { prices: [{ id: "a", type: "flat", amountMinor: amount, billing: "advance" }], quantity: 1, name: "A" }, next: null })[0];
        expect((line?.amount ?? 0) - (remaining?.amount ?? 0)).toBe(amount);
      }),
    );
  });
});

describe("priceLines", () => {
  it("discounts then taxes each line, rounding per line half away from zero", () => {
    const { lines, totals } = priceLines([line(1000), line(-677), line(1355)], { discountPercent: "10", taxRate: "0.0725" });
    expect(lines.map((l) => [l.discountAmount, l.taxAmount])).toEqual([
      [100, 65], // 900 × 0.0725 = 65.25
      [-68, -44], // −67.7 → −68; −609 × 0.0725 = −44.15
      [136, 88], // 135.5 → 136; 1219 × 0.0725 = 88.38
    ]);
    expect(totals).toEqual({ subtotal: 1678, discount: 168, tax: 109, total: 1619, amountDue: 1619 });
  });

  it("owes nothing on a negative total", () => {
    expect(priceLines([line(-500)], { discountPercent: null, taxRate: null }).totals).toMatchObject({ total: -500, amountDue: 0 });
  });

  it("totals are always the sums of the rounded lines", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: -1_000_000, max: 1_000_000 }), { maxLength: 30 }),
        fc.option(fc.integer({ min: 0, max: 100 })),
        fc.option(fc.integer({ min: 0, max: 300_000 })),
        (amounts, pct, rateMillionths) => {
          const taxRate = rateMillionths === null ? null : (rateMillionths / 1_000_000).toFixed(6);
          const { lines, totals } = priceLines(amounts.map(line), { discountPercent: pct === null ? null : String(pct), taxRate });
          expect(totals.subtotal).toBe(lines.reduce((s, l) => s + l.amount, 0));
          expect(totals.discount).toBe(lines.reduce((s, l) => s + l.discountAmount, 0));
          expect(totals.tax).toBe(lines.reduce((s, l) => s + l.taxAmount, 0));
          expect(totals.total).toBe(totals.subtotal - totals.discount + totals.tax);
          for (const l of lines) {
            if (pct !== null) expect(l.discountAmount).toBe(Number(roundDiv(BigInt(l.amount) * BigInt(pct), 100n)));
            if (rateMillionths !== null) expect(l.taxAmount).toBe(Number(roundDiv(BigInt(l.amount - l.discountAmount) * BigInt(rateMillionths), 1_000_000n)));
          }
        },
      ),
    );
  });
});
