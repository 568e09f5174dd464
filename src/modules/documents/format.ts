import { formatMinor } from "../../domain/money";

// Symbols only where they are unambiguous on an invoice; every other currency shows its ISO code ("BHD 1.234").
const SYMBOLS: Readonly<Record<string, string>> = { USD: "$", EUR: "€", GBP: "£", JPY: "¥" };

/**
 * Minor units as a document shows them: the currency's ISO-4217 decimals (JPY none, BHD three), thousands grouped
 * with commas, a symbol or the code, and a real minus sign ("−$1,234.50", "¥1,000", "BHD 12.345").
 */
export function displayMoney(minor: number, currency: string): string {
  const plain = formatMinor(minor, currency);
  const negative = plain.startsWith("-");
  const [whole, frac] = (negative ? plain.slice(1) : plain).split(".");
  const grouped = whole!.replace(/\B(?=(\d{3})+(?!\d))/g, ",") + (frac !== undefined ? `.${frac}` : "");
  const symbol = SYMBOLS[currency];
  return (negative ? "−" : "") + (symbol ? `${symbol}${grouped}` : `${currency} ${grouped}`);
}

/** A decimal string unit price ("0.001", "29.99") shown with the currency, keeping every significant decimal. */
export function displayUnitPrice(unit: string, currency: string): string {
  const symbol = SYMBOLS[currency];
  const [whole, frac] = unit.split(".");
  const grouped = whole!.replace(/\B(?=(\d{3})+(?!\d))/g, ",") + (frac !== undefined ? `.${frac}` : "");
  return symbol ? `${symbol}${grouped}` : `${currency} ${grouped}`;
}

/** A tax rate fraction ("0.08875") as a percentage ("8.875%"), exactly (decimal shift, no float maths). */
export function displayRate(rate: string): string {
  const [w, f = ""] = rate.split(".");
  const intPart = (w === "0" ? "" : w!) + f.slice(0, 2).padEnd(2, "0");
  const fracPart = f.slice(2).replace(/0+$/, "");
  return `${String(Number(intPart))}${fracPart ? `.${fracPart}` : ""}%`;
}

/** A UTC date as documents print it: "30 Nov 2026". */
export function displayDate(ms: number): string {
  const d = new Date(ms);
  const month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][d.getUTCMonth()];
  return `${d.getUTCDate()} ${month} ${d.getUTCFullYear()}`;
}
