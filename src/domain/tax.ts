import { parseDecimal, roundDiv, ONE } from "./decimal";

/** A tax rate for a jurisdiction ("US-CA", "DE"); rate is a decimal fraction ("0.08875"). */
export type TaxRate = { jurisdiction: string; rate: string; effectiveFrom: number };

/** The rate for the jurisdiction with the latest effectiveFrom ≤ at (epoch ms); on a tie the later entry wins. */
export function rateInForce(rates: readonly TaxRate[], jurisdiction: string, at: number): TaxRate | undefined {
  let best: TaxRate | undefined;
  for (const rate of rates) {
    if (rate.jurisdiction !== jurisdiction || rate.effectiveFrom > at) continue;
    if (!best || rate.effectiveFrom >= best.effectiveFrom) best = rate;
  }
  return best;
}

/** Exclusive tax on one line: amountMinor × rate, rounded half away from zero to the minor unit; throws on a malformed rate. */
export function taxOnLine(amountMinor: number, rate: string): number {
  const parsed = parseDecimal(rate);
  if (!parsed.ok) throw new RangeError(`tax rate ${parsed.error}`);
  const tax = Number(roundDiv(BigInt(amountMinor) * parsed.value, ONE));
  if (!Number.isSafeInteger(tax)) throw new RangeError("tax exceeds the safe integer range");
  return tax;
}

/** Jurisdiction key from ISO country and region: ("US", "CA") → "US-CA", ("DE", null) → "DE", no country → null. */
export function jurisdictionOf(country: string | null, region: string | null): string | null {
  const c = country?.trim().toUpperCase() ?? "";
  if (c === "") return null;
  let r = region?.trim().toUpperCase() ?? "";
  // Accept ISO 3166-2 regions that already carry the country prefix ("US-CA").
  if (r.startsWith(`${c}-`)) r = r.slice(c.length + 1);
  return r === "" ? c : `${c}-${r}`;
}
