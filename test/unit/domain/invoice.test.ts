import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { arrearsShareLines, billingLines, priceLines, prorationLines, type DraftLine, type Price } from "../../../src/domain/invoice";
import { roundDiv } from "../../../src/domain/decimal";

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

describe("arrearsShareLines", () => {
  const march = { start: D("2024-03-01T00:00:00Z"), end: D("2024-04-01T00:00:00Z") };
  const arrears = (id: string, amountMinor: number): Price => ({ id, type: "flat", amountMinor, billing: "arrears" });
  const plan = (prices: Price[], quantity = 1) => ({ prices, quantity, name: "P" });

  it("bills a plan's arrears fee for its own part of the period, by the second", () => {
    // $100 in arrears, 1–15 March: 14 of 31 days. 10000 − 10000 × 17/31 (5483.87 → 5484) = 4516.
    const lines = arrearsShareLines({ currency: "USD", period: march, from: march.start, to: D("2024-03-15T00:00:00Z"), plan: plan([arrears("a", 10000)]) });
    expect(lines.map((l) => [l.kind, l.amount, l.periodStart, l.periodEnd])).toEqual([["flat", 4516, march.start, D("2024-03-15T00:00:00Z")]]);
    expect(lines[0]!.computation).toBe("100.00 × 2678400/2678400 s remaining at the start of this part, less 100.00 × 1468800/2678400 s remaining at its end, each rounded half away from zero");
  });

  it("as billingLines' `from`: the period-end line covers only the time since a change", () => {
    const lines = billingLines({ currency: "USD", quantity: 1, planName: "Ten", advance: null, arrears: { prices: [arrears("b", 1000)], period: march, usage: new Map(), from: D("2024-03-15T00:00:00Z") }, pending: [] });
    expect(lines.map((l) => l.amount)).toEqual([548]); // 1000 × 17/31 = 548.39
  });

  it("scales by quantity, leaves advance fees alone, and adds nothing for an empty part", () => {
    const period = { start: 0, end: 100_000 };
    const p = plan([arrears("a", 999), { id: "adv", type: "flat", amountMinor: 5000, billing: "advance" }], 3);
    expect(arrearsShareLines({ currency: "USD", period, from: 0, to: 50_000, plan: p }).map((l) => l.amount)).toEqual([1498]); // 2997 − 1499
    expect(arrearsShareLines({ currency: "USD", period, from: 50_000, to: 50_000, plan: p })).toEqual([]);
    // A reversed part (fees that start at the period end, cut short by a change before it) is nothing, not a credit.
    expect(arrearsShareLines({ currency: "USD", period, from: 100_000, to: 40_000, plan: p })).toEqual([]);
  });

  it("the parts of a period split at any points add up to the whole fee", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10_000_000 }), fc.integer({ min: 1, max: 400 * 86_400 }), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 4 }), (amount, seconds, cuts) => {
        const period = { start: 0, end: seconds * 1000 };
        const points = [0, ...cuts.map((f) => Math.floor(f * seconds) * 1000).sort((a, b) => a - b), period.end];
        let sum = 0;
        for (let i = 0; i + 1 < points.length; i++) {
          for (const l of arrearsShareLines({ currency: "USD", period, from: points[i]!, to: points[i + 1]!, plan: plan([arrears("a", amount)]) })) sum += l.amount;
        }
        expect(sum).toBe(amount);
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
