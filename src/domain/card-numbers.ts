/**
 * Card-number detection for request data (PCI DSS: the engine must never receive or store a PAN).
 *
 * What counts as a card number: 13–19 digits that pass the Luhn check and begin like a card network's PAN, that is
 * with 3, 4, 5 or 6 (Amex, Diners, JCB, Visa, Mastercard, Maestro, Discover, UnionPay, RuPay), or with 2 when 16
 * digits long (Mastercard 2-series, Mir). Leaving out the other first digits is deliberate: epoch milliseconds are
 * 13 digits starting with 1 (until 2033) or 2 (until 2065), one in ten of them passes Luhn, and they legitimately
 * appear in metadata, as do snowflake-style ids starting with 1. `npm run security:pci-scan` uses the same idea
 * (a table of brand prefixes) after the fact.
 *
 * How a number may be written: one run of 13–19 digits not touching other digits (a longer run is an id), or groups
 * of digits joined by single spaces or dashes as people write cards (4242 4242 4242 4242, 3782-822463-10005), where
 * every inner group has 3–6 digits, so dates (2024-06-24 2024-06-25) do not join into a number; groups glued to a
 * letter belong to an identifier (a UUID can read …b1234-5678-9012-3456-…) and count only as whole runs; the
 * decimals of a number (0.4242424242424242) are never a card number.
 */

/** Luhn (mod 10) over a string of ASCII digits. */
export function luhnValid(digits: string): boolean {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

/** True when `digits` (ASCII digits only) is a card number by the rule above. */
export function isCardNumber(digits: string): boolean {
  const n = digits.length;
  if (n < 13 || n > 19) return false;
  const first = digits.charCodeAt(0) - 48;
  if (!((first >= 3 && first <= 6) || (first === 2 && n === 16))) return false;
  return luhnValid(digits);
}

/** A card number among the groups of one sequence: a group of 13–19 digits, or a window of consecutive groups. */
function groupsHoldCardNumber(groups: string[], glued: boolean): boolean {
  for (let i = 0; i < groups.length; i++) {
    const g = groups[i]!;
    if (g.length >= 13 && g.length <= 19 && isCardNumber(g)) return true;
    // Digits joined to letters belong to an identifier (a UUID's "…b1234-5678-9012-3456-…"): only whole runs count there.
    if (glued) continue;
    let acc = "";
    for (let j = i; j < groups.length; j++) {
      const h = groups[j]!;
      if (h.length > 6) break;
      acc += h;
      if (acc.length > 19) break;
      if (j > i && acc.length >= 13 && isCardNumber(acc)) return true;
      if (j > i && h.length < 3) break; // it would become an inner group
    }
  }
  return false;
}

const isDigit = (c: number) => c >= 48 && c <= 57;
const isLetter = (c: number) => (c >= 65 && c <= 90) || (c >= 97 && c <= 122);

/** A stretch of digits with single spaces or dashes between them, from `start` to `end` (exclusive, both digits). */
function sequenceHoldsCardNumber(text: string, start: number, end: number): boolean {
  // The decimals of a number (a ratio such as 0.41666666666666674 in metadata) are not a card number.
  if (text.charCodeAt(start - 1) === 46 && isDigit(text.charCodeAt(start - 2))) return false;
  const glued = isLetter(text.charCodeAt(start - 1)) || isLetter(text.charCodeAt(end));
  return groupsHoldCardNumber(text.slice(start, end).split(/[ -]/), glued);
}

// A maximal sequence of digits joined by single spaces or dashes, holding at least 13 digits. Found by the regular
// expression engine (native code): about three times faster than a character loop over ordinary JSON, and quicker
// than JSON.parse of the same text.
const SEQUENCE = /\d(?:[ -]?\d){12,}/g;

// Whether there is any such sequence at all: a plain test allocates nothing, where matchAll builds an iterator and a
// copy of the expression. Most texts (ids, names, small numbers) have none.
const ANY_SEQUENCE = /\d(?:[ -]?\d){12}/;

/** True when `text` holds a card number anywhere, written in one run or in groups (see above). */
export function containsCardNumber(text: string): boolean {
  if (text.length < 13 || !ANY_SEQUENCE.test(text)) return false;
  for (const m of text.matchAll(SEQUENCE)) {
    if (sequenceHoldsCardNumber(text, m.index, m.index + m[0].length)) return true;
  }
  return false;
}

export type CardFinding = { path: string; in: "value" | "key" };

/**
 * Fields that count units (usage quantities, tier bounds): a 13+ digit number there is a quantity such as bytes
 * (a 4 TiB storage gauge is 13 digits), never card data. Only a plain number or decimal in them is let through.
 */
const UNIT_FIELDS = new Set(["quantity", "upTo", "freeUnits", "packageSize"]);
const PLAIN_DECIMAL = /^\d+(\.\d+)?$/;
const MAX_FINDINGS = 20;

/** A JSON number as written in the request: a 19-digit number is not exact as a double. */
class NumberSource {
  constructor(readonly source: string) {}
}

type Reviver = (this: unknown, key: string, value: unknown, context?: { source?: string }) => unknown;
// Only numbers long enough to matter are wrapped; `context.source` is the number's text in the request.
const keepNumberSource: Reviver = (_key, value, context) =>
  typeof value === "number" && (context?.source ?? "").length >= 13 ? new NumberSource(context!.source!) : value;

const pathOf = (segments: readonly string[]) => (segments.length ? segments.join(".") : "(body)");

function walk(value: unknown, segments: string[], key: string | undefined, out: CardFinding[]): void {
  if (out.length >= MAX_FINDINGS) return;
  if (typeof value === "string" || value instanceof NumberSource) {
    const text = typeof value === "string" ? value : value.source;
    if (key !== undefined && UNIT_FIELDS.has(key) && PLAIN_DECIMAL.test(text)) return;
    if (containsCardNumber(text)) out.push({ path: pathOf(segments), in: "value" });
    return;
  }
  if (typeof value !== "object" || value === null) return;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      segments.push(String(i));
      walk(value[i], segments, undefined, out);
      segments.pop();
    }
    return;
  }
  let keyReported = false;
  for (const k in value) {
    // A key that is a card number is reported on its object, and not followed (the path would show it).
    if (containsCardNumber(k)) {
      if (!keyReported) out.push({ path: pathOf(segments), in: "key" });
      keyReported = true;
      continue;
    }
    segments.push(k);
    walk((value as Record<string, unknown>)[k], segments, k, out);
    segments.pop();
  }
}

/**
 * Where a request body (JSON text) holds card numbers: the field paths (zod style, `events.0.metadata.note`), never
 * the numbers. Cheap when there is none: one pass over the text, parsing only after a hit (or
 * when \u escapes could hide digits). A body that is not JSON but holds a card number is reported as `(body)`.
 */
export function cardNumberFindingsInJson(text: string): CardFinding[] {
  if (!text.includes("\\u") && !containsCardNumber(text)) return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(text, keepNumberSource as Parameters<typeof JSON.parse>[1]);
  } catch {
    return containsCardNumber(text) ? [{ path: "(body)", in: "value" }] : [];
  }
  const out: CardFinding[] = [];
  walk(parsed, [], undefined, out);
  return out;
}
