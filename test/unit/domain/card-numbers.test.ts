import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { cardNumberFindingsInJson, containsCardNumber, isCardNumber, luhnValid } from "../../../src/domain/card-numbers";

// Test PANs published by the card networks and Stripe.
const PANS = [
  "4242424242424242", // Visa
  "4000056655665556", // Visa debit
  "5555555555554444", // Mastercard
  "2223003122003222", // Mastercard 2-series
  "378282246310005", // Amex, 15 digits
  "6011111111111117", // Discover
  "36227206271667", // Diners, 14 digits
  "3566002020360505", // JCB
  "6200000000000005", // UnionPay
  "4222222222222", // Visa, 13 digits
  "4242424242424242428", // Visa, 19 digits
  "6221260000000000001", // UnionPay, 19 digits
];

/** Appends the Luhn check digit. */
function withCheckDigit(body: string): string {
  for (let d = 0; d < 10; d++) if (luhnValid(body + d)) return body + d;
  throw new Error("unreachable");
}

/** A Luhn-valid number that begins like a card of a network (MII 3-6, or a 16-digit 2-series). */
const panArb = fc
  .tuple(fc.constantFrom("3", "4", "5", "6", "2"), fc.integer({ min: 13, max: 19 }), fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 18, maxLength: 18 }))
  .map(([first, length, rest]) => withCheckDigit(first + rest.join("").slice(0, (first === "2" ? 16 : length) - 2)));

/** The number as people write it: in one run, or in groups of four with spaces or dashes (Amex 4-6-5). */
function formatted(pan: string, sep: "" | " " | "-"): string {
  if (sep === "") return pan;
  if (pan.length === 15) return [pan.slice(0, 4), pan.slice(4, 10), pan.slice(10)].join(sep);
  return pan.match(/.{1,4}/g)!.join(sep);
}

/** Text around a number that does not itself touch digits or separators. */
const proseArb = fc.string({ unit: fc.constantFrom(..."abcxyz:,.;/()\n\t_#é€".split("")), maxLength: 12 });

describe("luhnValid / isCardNumber", () => {
  it("accepts the networks' test card numbers", () => {
    for (const pan of PANS) expect(isCardNumber(pan), pan).toBe(true);
  });

  it("refuses near misses: a wrong check digit, too short, too long", () => {
    for (const n of ["4242424242424241", "4000056655665557", "378282246310006", "424242424242", "42424242424242424242"]) expect(isCardNumber(n), n).toBe(false);
  });

  it("does not take 13-digit epoch milliseconds for cards, even Luhn-valid ones (no card network's PAN starts with 1)", () => {
    expect(luhnValid("1764505200006")).toBe(true); // 2025-11-30T12:20:00.006Z
    expect(isCardNumber("1764505200006")).toBe(false);
  });

  it("catches every single-digit error of a valid number", () => {
    fc.assert(
      fc.property(panArb, fc.nat(), fc.integer({ min: 1, max: 9 }), (pan, at, delta) => {
        const i = at % pan.length;
        const wrong = pan.slice(0, i) + String((Number(pan[i]) + delta) % 10) + pan.slice(i + 1);
        expect(luhnValid(wrong)).toBe(false);
      }),
    );
  });

  it("epoch milliseconds from 2001 to 2065 are never card numbers", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1_000_000_000_000, max: 2_999_999_999_999 }), (ms) => {
        expect(isCardNumber(String(ms))).toBe(false);
      }),
    );
  });
});

describe("containsCardNumber", () => {
  it("finds a number in one run, in groups with spaces or dashes, and inside text", () => {
    for (const text of [
      "4242 4242 4242 4242",
      "4000-0566-5566-5556",
      "378282246310005",
      "3782 822463 10005",
      "6011111111111117",
      "4242 4242 4242 4242 428",
      "card 4242424242424242 exp 12/30",
      "my card is 4242-4242-4242-4242, thanks",
      "pay with:4242 4242 4242 4242 cvc 123", // a trailing group that is not part of the number
      "2024-06-24 4242424242424242",
    ])
      expect(containsCardNumber(text), text).toBe(true);
  });

  it("leaves alone what is not a card number", () => {
    for (const text of [
      "",
      "pm_card_visa",
      "4242424242424241", // Luhn fails
      "42424242424242424242", // 20 digits: an id, not a card
      "1764505200006", // Luhn-valid epoch ms
      "order 12345678901234567890123",
      "2024-06-24T10:00:00.123Z",
      "2024-06-24 2024-06-25", // dates: groups of two are not card groups
      "550e8400-e29b-41d4-a716-446655440000",
      "+1 415 555 0100",
      "99.99",
      "0.4242424242424242", // decimals of a number
      "12.6011111111111117",
      "0.000000000001",
      "4242.4242.4242.4242", // dots are not separators
      "4242  4242  4242  4242", // nor are double spaces
    ])
      expect(containsCardNumber(text), text).toBe(false);
  });

  it("property: a valid number, written any usual way, embedded in any text, is found", () => {
    fc.assert(
      fc.property(panArb, fc.constantFrom("" as const, " " as const, "-" as const), proseArb, proseArb, (pan, sep, before, after) => {
        // A run of digits counts even glued to letters; groups glued to letters read as an identifier (see the UUID case).
        const text = sep === "" ? `${before}${pan}${after}` : `${before} ${formatted(pan, sep)}, ${after}`;
        expect(containsCardNumber(text)).toBe(true);
      }),
    );
  });

  it("property: UUIDs are never card numbers, even when four of their groups are all digits", () => {
    expect(containsCardNumber("e2b41234-5678-9012-3456-ab0000000000")).toBe(false);
    fc.assert(
      fc.property(fc.uuid(), fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 16, maxLength: 16 }), (uuid, digits) => {
        expect(containsCardNumber(uuid)).toBe(false);
        // The most card-like a UUID gets: the end of its first group and the next three groups all digits.
        const d = digits.join("");
        expect(containsCardNumber(`${uuid.slice(0, 4)}${d.slice(0, 4)}-${d.slice(4, 8)}-${d.slice(8, 12)}-${d.slice(12)}-${uuid.slice(24)}`)).toBe(false);
      }),
    );
  });

  it("property: text whose digit runs are shorter than 13 digits, and not in card groups, is never flagged", () => {
    const runArb = fc.stringMatching(/^[0-9]{1,12}$/);
    fc.assert(
      fc.property(fc.array(fc.tuple(runArb, proseArb.filter((s) => s.length > 0)), { maxLength: 8 }), (parts) => {
        expect(containsCardNumber(parts.map(([digits, prose]) => digits + prose).join(""))).toBe(false);
      }),
    );
  });
});

describe("cardNumberFindingsInJson", () => {
  const json = (v: unknown) => JSON.stringify(v);

  it("names the field of a card number at any depth, never the number", () => {
    const body = json({ email: "a@example.com", metadata: { note: "card 4242 4242 4242 4242" }, items: [{ x: 1 }, { ref: "6011111111111117" }] });
    const findings = cardNumberFindingsInJson(body);
    expect(findings).toEqual([
      { path: "metadata.note", in: "value" },
      { path: "items.1.ref", in: "value" },
    ]);
    expect(JSON.stringify(findings)).not.toMatch(/4242|6011/);
  });

  it("finds card numbers sent as JSON numbers, exactly as written (19 digits lose precision in a double)", () => {
    expect(cardNumberFindingsInJson('{"metadata":{"card":4242424242424242}}')).toEqual([{ path: "metadata.card", in: "value" }]);
    expect(cardNumberFindingsInJson('{"metadata":{"card":4242424242424242428}}')).toEqual([{ path: "metadata.card", in: "value" }]);
  });

  it("finds object keys that are card numbers, naming the object that holds them", () => {
    expect(cardNumberFindingsInJson(json({ metadata: { "4242424242424242": "visa" } }))).toEqual([{ path: "metadata", in: "key" }]);
    expect(cardNumberFindingsInJson(json({ "4242424242424242": 1 }))).toEqual([{ path: "(body)", in: "key" }]);
  });

  it("finds a number hidden behind JSON escapes", () => {
    expect(cardNumberFindingsInJson('{"paymentMethod":"\\u00342424242424242\\u00342"}')).toEqual([{ path: "paymentMethod", in: "value" }]);
  });

  it("refuses a body that is not JSON but holds a card number as a whole", () => {
    expect(cardNumberFindingsInJson("paymentMethod=4242424242424242")).toEqual([{ path: "(body)", in: "value" }]);
  });

  it("keeps unit counts: a usage quantity or tier bound is a number of units, not card data", () => {
    const bytes = "4242424242424242";
    expect(cardNumberFindingsInJson(`{"quantity":${bytes}}`)).toEqual([]);
    expect(cardNumberFindingsInJson(json({ events: [{ quantity: bytes }] }))).toEqual([]);
    expect(cardNumberFindingsInJson(json({ prices: [{ tiers: [{ upTo: Number(bytes) }] }] }))).toEqual([]);
    // …but text in such a field is still read.
    expect(cardNumberFindingsInJson(json({ quantity: `card ${bytes}` }))).toEqual([{ path: "quantity", in: "value" }]);
  });

  it("accepts epoch milliseconds, ISO timestamps, ids and amounts", () => {
    const body = json({ events: [{ subscriptionId: "sub_1", meterId: "api_calls", quantity: 1000, timestamp: "2025-11-30T12:20:00.006Z", metadata: { at: 1764505200006, atText: "1764505200006", amount: 99.99 } }] });
    expect(cardNumberFindingsInJson(body)).toEqual([]);
    expect(cardNumberFindingsInJson('{"metadata":{"ratio":0.4242424242424242}}')).toEqual([]);
  });

  it("property: a card number put anywhere in any JSON document is reported at exactly its path", () => {
    const keyArb = fc.string({ unit: fc.constantFrom(..."abcdefgh_".split("")), minLength: 1, maxLength: 6 });
    const cleanJson = fc.jsonValue().filter((v) => !containsCardNumber(JSON.stringify(v)));
    fc.assert(
      fc.property(cleanJson, fc.array(keyArb, { minLength: 1, maxLength: 4 }), panArb, fc.constantFrom(" ", "-", ""), (doc, path, pan, sep) => {
        let value: unknown = `x ${formatted(pan, sep as "" | " " | "-")} y`;
        for (const key of [...path].reverse()) value = { [key]: value };
        const body = { base: doc, ...(value as object) };
        const findings = cardNumberFindingsInJson(JSON.stringify(body));
        expect(findings).toContainEqual({ path: path.join("."), in: "value" });
        expect(findings.filter((f) => f.path !== path.join("."))).toEqual([]);
      }),
    );
  });

  it("property: JSON without card numbers yields nothing", () => {
    fc.assert(
      fc.property(
        fc.jsonValue().filter((v) => !containsCardNumber(JSON.stringify(v))),
        (doc) => {
          expect(cardNumberFindingsInJson(JSON.stringify(doc))).toEqual([]);
        },
      ),
    );
  });
});
