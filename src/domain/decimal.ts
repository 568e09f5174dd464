import { err, ok, type Result } from "./result";

/** Number of decimal places carried by every fixed-point value in the domain. */
export const SCALE = 12;
/** 1 at SCALE (10^12). */
export const ONE = 10n ** 12n;

/** An exact decimal as coefficient × 10^-decimals, trailing zeros removed (decimals may be negative for 1e21). */
export type DecimalParts = { coefficient: bigint; decimals: number };

const PLAIN = /^(-?)(\d*)(?:\.(\d+))?$/;
const WHOLE = /^-?\d{1,15}$/;
// Only the shapes String(number) produces, e.g. "1e-7", "-1.5e+21".
const EXPONENT = /^(-?)(\d+)(?:\.(\d+))?e([+-]\d+)$/;

/** Splits a decimal string or number into an exact coefficient and decimal count; no rounding ever happens. */
export function parseDecimalParts(input: string | number): Result<DecimalParts> {
  let text: string;
  let allowExponent = false;
  if (typeof input === "number") {
    if (!Number.isFinite(input)) return err("must be a finite number");
    text = String(input);
    allowExponent = true;
  } else if (typeof input === "string") {
    text = input;
  } else {
    return err("must be a decimal number");
  }
  let sign: string;
  let intPart: string;
  let fracPart: string;
  let exponent = 0;
  const plain = PLAIN.exec(text);
  const exp = plain ? null : allowExponent ? EXPONENT.exec(text) : null;
  if (plain) {
    sign = plain[1] ?? "";
    intPart = plain[2] ?? "";
    fracPart = plain[3] ?? "";
    if (intPart === "" && fracPart === "") return err("must be a decimal number");
  } else if (exp) {
    sign = exp[1] ?? "";
    intPart = exp[2] ?? "";
    fracPart = exp[3] ?? "";
    exponent = Number(exp[4]);
  } else {
    return err("must be a decimal number");
  }
  let digits = (intPart + fracPart).replace(/^0+/, "");
  let decimals = fracPart.length - exponent;
  if (digits === "") return ok({ coefficient: 0n, decimals: 0 });
  const trimmed = digits.replace(/0+$/, "");
  decimals -= digits.length - trimmed.length;
  digits = trimmed;
  const magnitude = BigInt(digits);
  return ok({ coefficient: sign === "-" ? -magnitude : magnitude, decimals });
}

/** Parses a decimal string or number into a SCALE-12 bigint exactly; rejects more than maxDecimals significant decimals. */
export function parseDecimal(input: string | number, maxDecimals: number = SCALE): Result<bigint> {
  // Whole quantities are most usage events: no regex, no string surgery (same value as the general path).
  if (typeof input === "number" ? Number.isSafeInteger(input) : typeof input === "string" && WHOLE.test(input)) return ok(BigInt(input) * ONE);
  const parts = parseDecimalParts(input);
  if (!parts.ok) return parts;
  const limit = Math.min(maxDecimals, SCALE);
  const { coefficient, decimals } = parts.value;
  if (decimals > limit) return err(`has more than ${limit} decimal places`);
  return ok(coefficient * 10n ** BigInt(SCALE - decimals));
}

/** Formats a fixed-point value with the given scale as the shortest exact decimal string (no exponent, no trailing zeros). */
export function formatScaled(v: bigint, scale: number): string {
  const negative = v < 0n;
  const abs = negative ? -v : v;
  const unit = 10n ** BigInt(scale);
  const whole = (abs / unit).toString();
  const frac = scale > 0 ? (abs % unit).toString().padStart(scale, "0").replace(/0+$/, "") : "";
  return (negative ? "-" : "") + whole + (frac === "" ? "" : `.${frac}`);
}

/** Formats a SCALE-12 value as the shortest exact decimal string ("0.0006", "30", "-1.5"). */
export function formatDecimal(v: bigint): string {
  return v % ONE === 0n ? (v / ONE).toString() : formatScaled(v, SCALE);
}

/** n / d rounded half away from zero; d must not be zero (a bug, so it throws). */
export function roundDiv(n: bigint, d: bigint): bigint {
  if (d === 0n) throw new RangeError("roundDiv: division by zero");
  const q = n / d;
  const r = n % d;
  const absR = r < 0n ? -r : r;
  const absD = d < 0n ? -d : d;
  if (2n * absR < absD) return q;
  return (n < 0n) === (d < 0n) ? q + 1n : q - 1n;
}
