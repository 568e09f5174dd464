import { parseDecimal } from "./decimal";
import { discountPerLine, type DiscountSpec } from "./discounts";
import { formatMinor } from "./money";
import { priceQuantity, type PricingSpec } from "./pricing";
import { prorate } from "./proration";
import { taxOnLine } from "./tax";

export type Span = { start: number; end: number };

export type FlatPrice = { id: string; type: "flat"; amountMinor: number; billing: "advance" | "arrears" };
export type MeteredPrice = PricingSpec & { id: string; type: "metered"; meterId: string };
export type Price = FlatPrice | MeteredPrice;

export type LineKind = "flat" | "usage" | "proration" | "discount";

/** One invoice line before discount and tax: amount in minor units, rounded once, half away from zero. */
export type DraftLine = {
  kind: LineKind;
  description: string;
  priceId: string | null;
  meterId: string | null;
  quantity: string;
  unitAmount: string | null;
  amount: number;
  periodStart: number;
  periodEnd: number;
  computation: string;
};

export type PricedLine = DraftLine & { discountAmount: number; taxAmount: number };

export type InvoiceTotals = { subtotal: number; discount: number; tax: number; total: number; amountDue: number };

const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);

/**
 * The lines of one billing run, as a pure function of its inputs: advance flat fees for `advance` (the period
 * starting), arrears flat fees and usage for `arrears` (the period ending), then pending items as given.
 */
export function billingLines(input: {
  currency: string;
  quantity: number;
  planName: string;
  advance: { prices: Price[]; period: Span } | null;
  /** `from`: the plan's fees run from there (a change mid-period), not from the period start. */
  arrears: { prices: Price[]; period: Span; usage: ReadonlyMap<string, string>; from?: number | null } | null;
  pending: DraftLine[];
}): DraftLine[] {
  const { currency, quantity } = input;
  const lines: DraftLine[] = [];
  const flatLine = (p: FlatPrice, period: Span, when: string): DraftLine => ({
    kind: "flat",
    description: `${input.planName} (${when}, ${day(period.start)} – ${day(period.end)})`,
    priceId: p.id,
    meterId: null,
    quantity: String(quantity),
    unitAmount: formatMinor(p.amountMinor, currency),
    amount: p.amountMinor * quantity,
    periodStart: period.start,
    periodEnd: period.end,
    computation: `${quantity} × ${formatMinor(p.amountMinor, currency)} ${currency}, billed in ${when}`,
  });
  if (input.arrears) {
    const { period, prices, usage, from } = input.arrears;
    if (from != null && from > period.start) {
      lines.push(...arrearsShareLines({ currency, period, from, to: period.end, plan: { prices, quantity, name: input.planName } }));
    } else {
      for (const p of prices) if (p.type === "flat" && p.billing === "arrears") lines.push(flatLine(p, period, "arrears"));
    }
    for (const p of prices) {
      if (p.type !== "metered") continue;
      const value = usage.get(p.meterId) ?? "0";
      const q = parseDecimal(value);
      const priced = priceQuantity(p, q.ok ? q.value : 0n, currency);
      lines.push({
        kind: "usage",
        description: `${p.meterId} usage (${day(period.start)} – ${day(period.end)})`,
        priceId: p.id,
        meterId: p.meterId,
        quantity: value,
        unitAmount: p.pricingModel === "per_unit" ? (p.unitAmount ?? null) : null,
        amount: priced.amountMinor,
        periodStart: period.start,
        periodEnd: period.end,
        computation: `${p.pricingModel}: ${priced.explanation}`,
      });
    }
  }
  if (input.advance) {
    for (const p of input.advance.prices) if (p.type === "flat" && p.billing === "advance") lines.push(flatLine(p, input.advance.period, "advance"));
  }
  return [...lines, ...input.pending];
}

/**
 * Prorated lines for changing advance-billed flat fees at `at` inside `period`: a credit for the unused time of
 * each old fee and a charge for the remaining time of each new one, by the second, each rounded before netting.
 */
export function prorationLines(input: {
  currency: string;
  period: Span;
  at: number;
  old: { prices: Price[]; quantity: number; name: string };
  next: { prices: Price[]; quantity: number; name: string } | null;
}): DraftLine[] {
  const { currency, period, at } = input;
  const total = Math.floor((period.end - period.start) / 1000);
  const remaining = Math.floor((period.end - Math.min(Math.max(at, period.start), period.end)) / 1000);
  const share = `${remaining}/${total} s remaining`;
  const lines: DraftLine[] = [];
  const advance = (prices: Price[]) => prices.filter((p): p is FlatPrice => p.type === "flat" && p.billing === "advance");
  for (const p of advance(input.old.prices)) {
    const full = p.amountMinor * input.old.quantity;
    lines.push({
      kind: "proration",
      description: `Unused time on ${input.old.name} after ${new Date(at).toISOString()}`,
      priceId: p.id,
      meterId: null,
      quantity: String(input.old.quantity),
      unitAmount: formatMinor(p.amountMinor, currency),
      amount: -prorate(full, period.start, period.end, at),
      periodStart: at,
      periodEnd: period.end,
      computation: `−${formatMinor(full, currency)} × ${share}, rounded half away from zero`,
    });
  }
  if (input.next) {
    for (const p of advance(input.next.prices)) {
      const full = p.amountMinor * input.next.quantity;
      lines.push({
        kind: "proration",
        description: `Remaining time on ${input.next.name} from ${new Date(at).toISOString()}`,
        priceId: p.id,
        meterId: null,
        quantity: String(input.next.quantity),
        unitAmount: formatMinor(p.amountMinor, currency),
        amount: prorate(full, period.start, period.end, at),
        periodStart: at,
        periodEnd: period.end,
        computation: `${formatMinor(full, currency)} × ${share}, rounded half away from zero`,
      });
    }
  }
  return lines;
}

/**
 * Arrears-billed flat fees for the part [from, to) of `period`, by the second: each fee's remaining share at `from`
 * less its remaining share at `to` (each rounded half away from zero, so consecutive parts add up to the fee).
 * Used when a plan change, cancellation or interval change splits a period between plans.
 */
export function arrearsShareLines(input: { currency: string; period: Span; from: number; to: number; plan: { prices: Price[]; quantity: number; name: string } }): DraftLine[] {
  const { currency, period, plan } = input;
  const clamp = (t: number) => Math.min(Math.max(t, period.start), period.end);
  const from = clamp(input.from);
  const to = clamp(input.to);
  // Nothing runs before its start (a partial first period billed with prorationBehavior none starts its fees at the
  // period end): an empty or reversed span is no share, never a credit.
  if (to <= from) return [];
  const remaining = (full: number, at: number) => (at <= period.start ? full : prorate(full, period.start, period.end, at));
  const total = Math.floor((period.end - period.start) / 1000);
  const lines: DraftLine[] = [];
  for (const p of plan.prices) {
    if (p.type !== "flat" || p.billing !== "arrears") continue;
    const full = p.amountMinor * plan.quantity;
    const amount = remaining(full, from) - remaining(full, to);
    if (amount === 0) continue;
    lines.push({
      kind: "flat",
      description: `${plan.name} (arrears, ${new Date(from).toISOString()} – ${new Date(to).toISOString()})`,
      priceId: p.id,
      meterId: null,
      quantity: String(plan.quantity),
      unitAmount: formatMinor(p.amountMinor, currency),
      amount,
      periodStart: from,
      periodEnd: to,
      computation: `${formatMinor(full, currency)} × ${Math.floor((period.end - from) / 1000)}/${total} s remaining at the start of this part, less ${formatMinor(full, currency)} × ${Math.floor((period.end - to) / 1000)}/${total} s remaining at its end, each rounded half away from zero`,
    });
  }
  return lines;
}

/**
 * Discount (a percentage of each line, or a fixed amount spread over the positive lines: see discountPerLine) and
 * exclusive tax (a fraction, per line on the discounted amount), each rounded per line half away from zero; totals
 * are sums of the rounded lines. Nothing is due on a negative total.
 */
export function priceLines(lines: DraftLine[], opts: { discountPercent?: string | null; discount?: DiscountSpec | null; taxRate: string | null }): { lines: PricedLine[]; totals: InvoiceTotals } {
  const spec: DiscountSpec | null = opts.discount ?? (opts.discountPercent ? { percentOff: opts.discountPercent } : null);
  const off = discountPerLine(lines.map((l) => l.amount), spec);
  const priced = lines.map((l, i) => {
    const discountAmount = off[i]!;
    const taxAmount = opts.taxRate ? taxOnLine(l.amount - discountAmount, opts.taxRate) : 0;
    return { ...l, discountAmount, taxAmount };
  });
  const subtotal = priced.reduce((s, l) => s + l.amount, 0);
  const discount = priced.reduce((s, l) => s + l.discountAmount, 0);
  const tax = priced.reduce((s, l) => s + l.taxAmount, 0);
  const total = subtotal - discount + tax;
  return { lines: priced, totals: { subtotal, discount, tax, total, amountDue: Math.max(0, total) } };
}

/**
 * The advance fees of a first period that starts inside a full period of the anchor's grid (a billing anchor off
 * today's grid): each fee × the remaining seconds of the full period at `from`, rounded half away from zero.
 */
export function partialPeriodLines(input: { currency: string; full: Span; from: number; plan: { prices: Price[]; quantity: number; name: string } }): DraftLine[] {
  const { currency, full, from, plan } = input;
  const total = Math.floor((full.end - full.start) / 1000);
  const remaining = Math.floor((full.end - Math.min(Math.max(from, full.start), full.end)) / 1000);
  const lines: DraftLine[] = [];
  for (const p of plan.prices) {
    if (p.type !== "flat" || p.billing !== "advance") continue;
    const amount = p.amountMinor * plan.quantity;
    lines.push({
      kind: "proration",
      description: `${plan.name} (partial first period, ${day(from)} – ${day(full.end)})`,
      priceId: p.id,
      meterId: null,
      quantity: String(plan.quantity),
      unitAmount: formatMinor(p.amountMinor, currency),
      amount: prorate(amount, full.start, full.end, from),
      periodStart: from,
      periodEnd: full.end,
      computation: `${formatMinor(amount, currency)} × ${remaining}/${total} s of the period ${day(full.start)} – ${day(full.end)} remaining, rounded half away from zero`,
    });
  }
  return lines;
}
