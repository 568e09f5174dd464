// Money: the API gives integer minor units and the currency; the exponent is the currency's (JPY 0, USD 2, BHD 3).
export type Money = { amount?: string; amountMinor: number; currency?: string };

const exponents = new Map<string, number>();
/** ISO 4217 minor-unit exponent, as the browser's Intl data knows it (the API uses the same table). */
export function exponentOf(currency: string): number {
  let e = exponents.get(currency);
  if (e === undefined) {
    try {
      e = new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions().maximumFractionDigits ?? 2;
    } catch {
      e = 2;
    }
    exponents.set(currency, e);
  }
  return e;
}

/** The exact decimal string of `minor` units (no float arithmetic): 1999 USD → "19.99", 5 BHD → "0.005". */
export function decimalOf(minor: number, currency: string): string {
  const e = exponentOf(currency);
  const neg = minor < 0;
  const digits = String(Math.abs(Math.trunc(minor))).padStart(e + 1, "0");
  const s = e === 0 ? digits : `${digits.slice(0, -e)}.${digits.slice(-e)}`;
  return neg ? `-${s}` : s;
}

/** "$1,234.50", "¥1,200", "BHD 1.005": every figure with exactly its currency's decimals. */
export function fmtMoney(minor: number, currency: string): string {
  const e = exponentOf(currency);
  try {
    // Intl formats a decimal string exactly (no rounding through a float).
    return new Intl.NumberFormat(undefined, { style: "currency", currency, minimumFractionDigits: e, maximumFractionDigits: e }).format(decimalOf(minor, currency) as unknown as number);
  } catch {
    return `${decimalOf(minor, currency)} ${currency}`;
  }
}

/** Parses what an operator typed ("12.5") into minor units; null if it has more decimals than the currency allows. */
export function parseMoney(input: string, currency: string): number | null {
  const m = /^\s*(\d+)(?:\.(\d*))?\s*$/.exec(input);
  if (!m) return null;
  const e = exponentOf(currency);
  const frac = m[2] ?? "";
  if (frac.length > e) return null;
  return Number(m[1]) * 10 ** e + Number((frac + "0".repeat(e)).slice(0, e) || "0");
}

export function fmtDate(iso: string | null | undefined): string {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
}
export function fmtDay(iso: string | null | undefined): string {
  return iso ? new Date(iso).toISOString().slice(0, 10) : "—";
}
export function fmtPct(fraction: string | number | null | undefined): string {
  if (fraction === null || fraction === undefined) return "—";
  return `${(Number(fraction) * 100).toFixed(1)} %`;
}
export const fmtNum = (n: number) => new Intl.NumberFormat().format(n);
