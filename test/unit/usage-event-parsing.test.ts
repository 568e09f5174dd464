import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { formatDecimal, parseDecimal } from "../../src/domain/decimal";
import { MAX_METADATA_CHARS, parseEvent, quantityText, type ParsedEvent } from "../../src/modules/usage/events";

// parseEvent is the hand-written validator of POST /api/v1/usage (and of each event of a batch). These properties pin
// down what it promises: it never throws on anything JSON can carry, an accepted event obeys every documented rule,
// a refusal names the fields at fault (under the batch's path prefix), and it accepts exactly the events whose fields
// are all valid.

const NOW = Date.UTC(2024, 5, 24, 10);
const FIELDS = ["subscriptionId", "meterId", "quantity", "timestamp", "metadata", "eventId"] as const;
type Field = (typeof FIELDS)[number];
const RUNS = { numRuns: 300 };

/** The shortest exact decimal: no sign, no leading zeros (but "0"), no trailing fractional zeros, at most 12 decimals. */
const CANONICAL = /^(0|[1-9]\d*)(\.\d{0,11}[1-9])?$/;
const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** Every documented rule an accepted event obeys, given what was sent. */
function expectAcceptedEvent(raw: Record<string, unknown>, event: ParsedEvent, index: number, idempotencyKey: string | undefined) {
  expect(event.index).toBe(index);
  expect(event.subscriptionId).toBe(raw.subscriptionId);
  expect(event.subscriptionId.length).toBeGreaterThan(0);
  expect(event.subscriptionId.length).toBeLessThanOrEqual(200);
  expect(event.meterId).toBe(raw.meterId);
  expect(event.meterId.length).toBeGreaterThan(0);
  expect(event.meterId.length).toBeLessThanOrEqual(64);

  expect(event.quantity).toMatch(CANONICAL);
  const sent = parseDecimal(raw.quantity as string | number);
  const kept = parseDecimal(event.quantity);
  expect(sent.ok && kept.ok && sent.value === kept.value).toBe(true);

  if (raw.timestamp === undefined) expect(event.timestamp).toBeNull();
  else {
    expect(Number.isFinite(event.timestamp)).toBe(true);
    expect(event.timestamp).toBe(Date.parse(raw.timestamp as string));
  }

  if (raw.metadata === undefined || raw.metadata === null) expect(event.metadata).toBeNull();
  else {
    const meta = event.metadata!;
    expect(isPlainObject(meta)).toBe(true);
    expect(Object.keys(meta).length).toBeLessThanOrEqual(50);
    for (const v of Object.values(meta)) expect(v === null || typeof v === "string" || typeof v === "boolean" || Number.isFinite(v)).toBe(true);
    expect(JSON.stringify(meta).length).toBeLessThanOrEqual(MAX_METADATA_CHARS);
  }

  if (typeof raw.eventId === "string") {
    expect(event.eventId).toBe(raw.eventId);
    expect(event.eventKey).toBe(`id:${raw.eventId}`);
  } else {
    expect(raw.eventId).toBeUndefined();
    expect(event.eventId).toBeNull();
    if (idempotencyKey) expect(event.eventKey).toBe(`idem:${idempotencyKey}:${index}`);
    else expect(event.eventKey).toMatch(/^gen:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  }
}

/** The field an error path names, once the prefix is removed ("metadata.region" names metadata); throws on any other path. */
function fieldOf(path: string, prefix: string): Field | "(event)" {
  expect(path.startsWith(prefix)).toBe(true);
  const rest = path.slice(prefix.length);
  if (rest === "(event)") return "(event)";
  const head = rest.startsWith("metadata.") ? "metadata" : rest;
  expect(FIELDS).toContain(head);
  return head as Field;
}

/** parseEvent, checked against the invariants that hold whatever the input: it returns, and its answer is well formed. */
function parseChecked(raw: unknown, index: number, idempotencyKey: string | undefined, prefix: string) {
  const r = parseEvent(raw, index, idempotencyKey, NOW, prefix);
  if (r.ok) {
    expect(isPlainObject(raw)).toBe(true);
    expectAcceptedEvent(raw as Record<string, unknown>, r.event, index, idempotencyKey);
  } else {
    expect(r.errors.length).toBeGreaterThan(0);
    for (const e of r.errors) {
      expect(typeof e.message).toBe("string");
      expect(e.message.length).toBeGreaterThan(0);
      fieldOf(e.path, prefix);
    }
  }
  return r;
}

const prefixArb = fc.oneof(fc.constant(""), fc.nat({ max: 999 }).map((i) => `events.${i}.`));
const idemArb = fc.option(fc.string({ minLength: 1, maxLength: 40 }), { nil: undefined });
const unicodeText = (o: { minLength?: number; maxLength?: number } = {}) => fc.string({ unit: "binary", ...o });

// Values of each field, tagged valid or not by construction: the oracle for "accepts exactly what it should". A field
// is valid four times in five, so about a third of the events are wholly valid and the rest fail on one field or more.
type Tagged = { value: unknown; valid: boolean };
function field(valid: fc.Arbitrary<unknown>[], invalid: fc.Arbitrary<unknown>[]): fc.Arbitrary<Tagged> {
  return fc.oneof(
    { arbitrary: fc.oneof(...valid).map((value): Tagged => ({ value, valid: true })), weight: 4 },
    { arbitrary: fc.oneof(...invalid).map((value): Tagged => ({ value, valid: false })), weight: 1 },
  );
}
const ABSENT = fc.constant(undefined);
const wrongType = fc.oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.string(), { maxLength: 2 }), fc.dictionary(fc.string(), fc.string(), { maxKeys: 2 }));

/** A string of exactly `min`..`max` UTF-16 code units (NUL, unicode and lone surrogates included). */
const sizedText = (min: number, max: number) =>
  fc.tuple(unicodeText({ maxLength: max }), fc.integer({ min, max })).map(([s, n]) => (s + "a".repeat(n)).slice(0, n));

const idArb = (max: number) => field([sizedText(1, max)], [ABSENT, fc.constant(""), sizedText(max + 1, max + 40), wrongType]);

/** A non-negative decimal as digits: [integer digits, fractional digits with at most 12 significant, trailing zeros]. */
const decimalDigits = fc.tuple(fc.stringMatching(/^\d{0,20}$/), fc.stringMatching(/^\d{0,12}$/), fc.stringMatching(/^0{0,4}$/)).filter(([i, f]) => i.length + f.length > 0);

const quantityArb = field(
  [decimalDigits.map(([i, f, z]) => (f + z ? `${i}.${f}${z}` : i)), fc.maxSafeNat(), fc.constantFrom(0, 0.5, 1.25, 1e21, 1e-7, 123.000000000001)],
  [
    ABSENT,
    fc.constantFrom(null, true, [], {}, [1], { value: 1 }),
    fc.integer({ min: Number.MIN_SAFE_INTEGER, max: -1 }),
    fc.constantFrom(-0.5, NaN, Infinity, -Infinity, 1e-13, 0.1 + 0.2),
    decimalDigits.filter(([i, f]) => /[1-9]/.test(i + f)).map(([i, f]) => `-${i}${f ? `.${f}` : ""}`),
    fc.constantFrom("", ".", "1.", "-", "+1", " 1", "1 ", "1e5", "1E5", "NaN", "Infinity", "-Infinity", "0x10", "1,5", "1_000", "١٢", "1\u0000", "0.0000000000001"),
    fc.stringMatching(/^\d{1,3}\.\d{12}[1-9]$/),
  ],
);

const isoInstant = fc.date({ min: new Date("0000-01-01T00:00:00Z"), max: new Date("9999-12-31T23:59:59Z"), noInvalidDate: true });
const offset = fc.tuple(fc.constantFrom("+", "-"), fc.integer({ min: 0, max: 23 }), fc.constantFrom(0, 15, 30, 45)).map(([s, h, m]) => `${s}${String(h).padStart(2, "0")}:${String(m).padStart(2, "0")}`);
const timestampArb = field(
  [ABSENT, isoInstant.map((d) => d.toISOString()), fc.tuple(isoInstant, offset).map(([d, o]) => d.toISOString().slice(0, 19) + o), isoInstant.map((d) => `${d.toISOString().slice(0, 16)}Z`)],
  [
    fc.constantFrom(null, true, [], {}),
    fc.integer(),
    isoInstant.map((d) => d.toISOString().slice(0, 19)), // no zone
    isoInstant.map((d) => d.toISOString().slice(0, 10)), // a date only
    fc.constantFrom("", "now", "yesterday", "2024-13-01T00:00:00Z", "2024-06-24T25:00:00Z", "2024-06-24 10:00:00Z", "2024-06-24T10:00:00+0530", "+012024-06-24T10:00:00Z"),
  ],
);

// Finite: JSON reads an overflowing number (1e999) as Infinity, which metadata refuses (see the invalid values below).
const scalar = fc.oneof(fc.string(), unicodeText({ maxLength: 20 }), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.integer(), fc.boolean(), fc.constant(null));
const metadataArb = field(
  [fc.constantFrom(undefined, null), fc.dictionary(fc.string({ maxLength: 10 }), scalar, { maxKeys: 50 })],
  [
    fc.constantFrom("x", 1, true, [], [{ a: 1 }]),
    fc.dictionary(fc.string({ maxLength: 10 }), scalar, { minKeys: 51, maxKeys: 60 }),
    fc
      .tuple(fc.dictionary(fc.string({ maxLength: 10 }), scalar, { maxKeys: 5 }), fc.string({ minLength: 1, maxLength: 10 }), fc.oneof(fc.array(scalar, { maxLength: 2 }), fc.object({ maxDepth: 3 })))
      .map(([base, k, v]) => ({ ...base, [k]: v })),
    fc.constant({ blob: "x".repeat(MAX_METADATA_CHARS) }),
    fc
      .tuple(fc.dictionary(fc.string({ maxLength: 10 }), scalar, { maxKeys: 5 }), fc.string({ minLength: 1, maxLength: 10 }), fc.constantFrom(Infinity, -Infinity, NaN))
      .map(([base, k, v]) => ({ ...base, [k]: v })),
  ],
);

const eventArb = fc.record({
  subscriptionId: idArb(200),
  meterId: idArb(64),
  quantity: quantityArb,
  timestamp: timestampArb,
  metadata: metadataArb,
  eventId: field([ABSENT, sizedText(1, 200)], [fc.constant(""), fc.constant(null), sizedText(201, 230), fc.integer()]),
});

/** The event the tagged fields make (an absent field is left out, as JSON would). */
function build(tagged: Record<Field, Tagged>): Record<string, unknown> {
  const raw: Record<string, unknown> = {};
  for (const f of FIELDS) if (tagged[f].value !== undefined) raw[f] = tagged[f].value;
  return raw;
}

describe("parseEvent on arbitrary input", () => {
  it("never throws on anything JSON can hold, and answers an event that keeps the rules or errors that name fields", () => {
    fc.assert(
      fc.property(fc.oneof(fc.anything(), fc.jsonValue(), fc.json().map((t) => JSON.parse(t) as unknown)), fc.nat({ max: 999 }), idemArb, prefixArb, (raw, i, key, prefix) => {
        parseChecked(raw, i, key, prefix);
      }),
      RUNS,
    );
  });

  it("never throws on objects of the real field names holding arbitrary values", () => {
    const value = fc.oneof(fc.anything(), fc.string(), unicodeText(), fc.double(), fc.constant(undefined));
    fc.assert(
      fc.property(fc.record(Object.fromEntries(FIELDS.map((f) => [f, value])) as Record<Field, typeof value>, { requiredKeys: [] }), fc.nat({ max: 999 }), idemArb, prefixArb, (raw, i, key, prefix) => {
        parseChecked(raw, i, key, prefix);
      }),
      RUNS,
    );
  });

  it("refuses a non-object naming the event, under a batch's prefix when given", () => {
    fc.assert(
      fc.property(fc.oneof(fc.constant(null), fc.array(fc.anything(), { maxLength: 3 }), fc.string(), fc.double(), fc.boolean()), prefixArb, (raw, prefix) => {
        const r = parseEvent(raw, 0, undefined, NOW, prefix);
        expect(r).toEqual({ ok: false, errors: [{ path: `${prefix}(event)`, message: "must be an object" }] });
      }),
      RUNS,
    );
  });
});

describe("parseEvent accepts exactly the valid events", () => {
  it("accepts an event iff every field is valid, and names exactly the invalid fields", () => {
    const seen = { valid: 0, invalid: 0 };
    fc.assert(
      fc.property(eventArb, fc.nat({ max: 999 }), idemArb, prefixArb, (tagged, i, key, prefix) => {
        const raw = build(tagged);
        const r = parseChecked(raw, i, key, prefix);
        const invalid = FIELDS.filter((f) => !tagged[f].valid);
        seen[invalid.length === 0 ? "valid" : "invalid"]++;
        if (invalid.length === 0) expect(r.ok).toBe(true);
        else {
          expect(r.ok).toBe(false);
          if (!r.ok) expect([...new Set(r.errors.map((e) => fieldOf(e.path, prefix)))].sort()).toEqual([...invalid].sort());
        }
      }),
      RUNS,
    );
    // Both sides of the "iff" were exercised, not just refusals.
    expect(seen.valid).toBeGreaterThan(RUNS.numRuns / 10);
    expect(seen.invalid).toBeGreaterThan(RUNS.numRuns / 10);
  });

  it("normalises the quantity of a valid event to its shortest exact decimal", () => {
    fc.assert(
      fc.property(decimalDigits, fc.boolean(), (parts, asNumber) => {
        const [int, frac, zeros] = parts;
        const digits = int.replace(/^0+/, "") || "0";
        const sig = frac.replace(/0+$/, "");
        const expected = sig ? `${digits}.${sig}` : digits;
        const text = frac + zeros ? `${int}.${frac}${zeros}` : int;
        // A number only where it is exactly that decimal (safe integers).
        const quantity = asNumber && !sig && Number.isSafeInteger(Number(digits)) ? Number(digits) : text;
        const r = parseEvent({ subscriptionId: "sub_1", meterId: "api_calls", quantity }, 0, undefined, NOW);
        expect(r.ok && r.event.quantity).toBe(expected);
      }),
      RUNS,
    );
  });

  it.each([
    ["1.50", "1.5"],
    [2, "2"],
    ["007", "7"],
    ["0.000", "0"],
    [".5", "0.5"],
    [1.25, "1.25"],
    [1e21, "1000000000000000000000"],
    [1e-7, "0.0000001"],
    ["0.000000000001", "0.000000000001"],
    ["123456789012345678901234567890", "123456789012345678901234567890"],
  ])("normalises quantity %j to %j", (quantity, expected) => {
    const r = parseEvent({ subscriptionId: "sub_1", meterId: "api_calls", quantity }, 0, undefined, NOW);
    expect(r.ok && r.event.quantity).toBe(expected);
  });
});

describe("metadata size", () => {
  /** Metadata of the generated keys plus a `pad` string sized so that the whole is exactly `chars` characters as JSON. */
  const metadataOf = (base: Record<string, string | number | boolean | null>, chars: number) => {
    const meta = { ...base, pad: "" };
    meta.pad = "x".repeat(chars - JSON.stringify(meta).length);
    expect(JSON.stringify(meta).length).toBe(chars);
    return meta;
  };
  const baseArb = fc.dictionary(fc.string({ maxLength: 8 }).map((k) => `k_${k}`), scalar, { maxKeys: 49 });

  it("refuses metadata just over MAX_METADATA_CHARS as JSON, naming metadata", () => {
    fc.assert(
      fc.property(baseArb, fc.integer({ min: 1, max: 64 }), prefixArb, (base, over, prefix) => {
        const r = parseEvent({ subscriptionId: "sub_1", meterId: "api_calls", quantity: 1, metadata: metadataOf(base, MAX_METADATA_CHARS + over) }, 0, undefined, NOW, prefix);
        expect(r.ok).toBe(false);
        if (!r.ok) expect(r.errors).toEqual([{ path: `${prefix}metadata`, message: `must be at most ${MAX_METADATA_CHARS} characters as JSON` }]);
      }),
      { numRuns: 100 },
    );
  });

  it("accepts metadata of exactly MAX_METADATA_CHARS as JSON", () => {
    fc.assert(
      fc.property(baseArb, (base) => {
        const r = parseEvent({ subscriptionId: "sub_1", meterId: "api_calls", quantity: 1, metadata: metadataOf(base, MAX_METADATA_CHARS) }, 0, undefined, NOW);
        expect(r.ok).toBe(true);
      }),
      { numRuns: 100 },
    );
  });
});

describe("metadata numbers", () => {
  it("refuses a number JSON read as Infinity (1e999), naming the key", () => {
    const raw = JSON.parse('{"subscriptionId":"sub_1","meterId":"api_calls","quantity":1,"metadata":{"user":1e999,"region":"eu"}}');
    const r = parseEvent(raw, 3, undefined, NOW, "events.3.");
    expect(r).toEqual({ ok: false, errors: [{ path: "events.3.metadata.user", message: "must be a finite number" }] });
  });
});

describe("quantityText (the text a meter stores for a quantity)", () => {
  // Its shortcut for whole numbers must give exactly what the general path gives: formatDecimal of parseDecimal.
  const general = (raw: number | string) => {
    const d = parseDecimal(raw);
    return !d.ok ? { ok: false } : d.value < 0n ? { ok: false, negative: true } : { ok: true, text: formatDecimal(d.value) };
  };
  const quantityArb = fc.oneof(
    fc.integer(),
    fc.maxSafeInteger(),
    fc.double(),
    fc.constantFrom(-0, 0, 1e21, 2 ** 53, 2 ** 53 + 2, Number.MAX_SAFE_INTEGER),
    fc.stringMatching(/^-?\d{1,20}(\.\d{0,14})?$/),
    fc.constantFrom("0", "00", "007", "-0", "9999999999999999", "99999999999999999", "1.0", "", " 1", "1e3", "+1"),
  );

  it("agrees with formatDecimal(parseDecimal(x)) on numbers and strings", () => {
    fc.assert(
      fc.property(quantityArb, (raw) => {
        const t = quantityText(raw);
        const g = general(raw);
        expect(t.ok).toBe(g.ok);
        if (t.ok) expect(t.text).toBe(g.text);
        else expect(t.negative).toBe(g.negative ?? false);
      }),
      { numRuns: 2000 },
    );
  });
});
