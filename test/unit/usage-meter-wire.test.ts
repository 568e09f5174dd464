import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { IngestEvent } from "../../src/modules/usage/meter-types";
import { decodeEvents, encodeEvents } from "../../src/modules/usage/meter-wire";

// The worker hands a meter its events as one JSON text (usage/meter-wire.ts). Whatever an event holds must reach the
// meter unchanged: a key that lost a NUL or a lone surrogate would collide with another key and be counted as its
// duplicate, a timestamp off by a millisecond could land in the wrong period.

// Strings as senders can write them: NULs, lone surrogates, astral characters, JSON's own metacharacters.
const text = fc.oneof(fc.string({ unit: "binary" }), fc.constantFrom("", "\u0000", "a\u0000b", "\ud800", "\udfff", "x\ud83d", "😀", '"\\/\n\t\u2028'));
// -0 is left out: it arrives as 0, as stored metadata (JSON text) always had it. Infinity and NaN cannot reach the
// wire: parseEvent and routed ingestion refuse them in metadata.
const finite = fc.double({ noNaN: true, noDefaultInfinity: true }).filter((n) => !Object.is(n, -0));
const event: fc.Arbitrary<IngestEvent> = fc.record({
  index: fc.nat({ max: 999 }),
  eventKey: text,
  eventId: fc.option(text, { nil: null }),
  meterId: text,
  quantity: fc.constantFrom("0", "1", "0.000000000001", "12345678901234567890.5"),
  timestamp: fc.option(fc.integer({ min: 0, max: 8.64e15 }), { nil: null }),
  metadata: fc.option(fc.dictionary(text, fc.oneof(text, finite, fc.boolean(), fc.constant(null)), { maxKeys: 5, noNullPrototype: true }), { nil: null }),
}, { noNullPrototype: true });

describe("events on their way to a meter", () => {
  it("arrive exactly as they were sent, in order", () => {
    fc.assert(
      fc.property(fc.array(event, { maxLength: 30 }), (events) => {
        expect(decodeEvents(encodeEvents(events))).toStrictEqual(events);
      }),
      { numRuns: 400 },
    );
  });

  it("carry only an IngestEvent's fields (a ParsedEvent's subscription stays with the worker)", () => {
    const sent = { index: 3, eventKey: "id:e1", eventId: "e1", meterId: "api_calls", quantity: "2", timestamp: 1_700_000_000_123, metadata: { region: "eu" }, subscriptionId: "sub_1" };
    expect(decodeEvents(encodeEvents([sent]))).toStrictEqual([{ index: 3, eventKey: "id:e1", eventId: "e1", meterId: "api_calls", quantity: "2", timestamp: 1_700_000_000_123, metadata: { region: "eu" } }]);
  });
});
