import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { pickRoute, type RoutingEntry } from "../../src/modules/usage/routing";
import { valueAt } from "../../src/modules/ingest-compat/routed-ingest";
import { formPairs, parseStripeForm } from "../../src/modules/ingest-compat/stripe-form";

const entry = (subscriptionId: string, status: RoutingEntry["status"], anchor: number, eventNames: string[]): RoutingEntry => ({
  subscriptionId,
  status,
  version: 1,
  anchor,
  meters: eventNames.map((eventName) => ({ meterId: `m_${eventName}`, eventName, aggregation: "sum" })),
});

describe("pickRoute: which of a customer's subscriptions an event name reaches", () => {
  it("prefers a subscription that accepts usage over a newer canceled one", () => {
    const r = pickRoute([entry("sub_new_canceled", "canceled", 200, ["calls"]), entry("sub_active", "active", 100, ["calls"])], "calls");
    expect(r?.subscriptionId).toBe("sub_active");
  });
  it("among those that accept usage, the newest billing anchor wins, whatever the order", () => {
    const a = entry("sub_a", "trialing", 100, ["calls"]);
    const b = entry("sub_b", "past_due", 300, ["calls"]);
    expect(pickRoute([a, b], "calls")?.subscriptionId).toBe("sub_b");
    expect(pickRoute([b, a], "calls")?.subscriptionId).toBe("sub_b");
  });
  it("falls back to a canceled one (its meter says why) and is null when no plan has the event name", () => {
    expect(pickRoute([entry("sub_c", "canceled", 1, ["calls"])], "calls")?.subscriptionId).toBe("sub_c");
    expect(pickRoute([entry("sub_a", "active", 1, ["tokens"])], "calls")).toBeNull();
  });
  it("answers the meter that carries the event name", () => {
    expect(pickRoute([entry("sub_a", "active", 1, ["calls", "tokens"])], "tokens")?.meter.meterId).toBe("m_tokens");
  });
});

describe("valueAt: a meter's valueProperty in an event's data", () => {
  it("follows nested keys and answers undefined for a missing step", () => {
    const data = { tokens: 5, usage: { input: { count: 7 } }, list: [1] };
    expect(valueAt(data, "$.tokens")).toBe(5);
    expect(valueAt(data, "$.usage.input.count")).toBe(7);
    expect(valueAt(data, "$.usage.output.count")).toBeUndefined();
    expect(valueAt(data, "$.list.0")).toBeUndefined();
  });
});

describe("parseStripeForm: Stripe's bracketed form keys", () => {
  it("nests payload[...] keys and keeps plain ones", () => {
    expect(parseStripeForm("event_name=api&payload%5Bstripe_customer_id%5D=cus_1&payload[value]=25&timestamp=1700000000")).toEqual({
      event_name: "api",
      payload: { stripe_customer_id: "cus_1", value: "25" },
      timestamp: "1700000000",
    });
  });
  it("never writes through __proto__ or constructor keys, and a later nested key does not crash on a plain value", () => {
    const parsed = parseStripeForm("__proto__[polluted]=1&payload[constructor][prototype][x]=2&a=1&a[b]=2");
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.keys(parsed)).toEqual(["a"]);
    expect(parsed.a).toEqual({ b: "2" });
  });
});

describe("formPairs: a form body read as URLSearchParams reads it", () => {
  // Pieces that exercise every rule: separators, '+', good and broken escapes, UTF-8 and non-UTF-8 bytes, surrogates.
  const piece = fc.constantFrom("a", "Z", "0", "=", "&", "?", "+", "%", "%2", "%20", "%2B", "%26", "%3D", "%5B", "%5D", "[", "]", "%C3%A9", "%C3", "%E2%82%AC", "%ED%A0%80", "%FF", "%zz", "é", "€", "😀", "\uD800", "\uDC00", " ", "\u0000", "%00");
  it("gives the same pairs as URLSearchParams for any text", () => {
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 24 }), (pieces) => {
        const text = pieces.join("");
        expect(formPairs(text)).toEqual([...new URLSearchParams(text)]);
      }),
      { numRuns: 3000 },
    );
  });
  it("gives the same pairs for what the Stripe SDK and the bench send", () => {
    const text = new URLSearchParams({ event_name: "api request", "payload[stripe_customer_id]": "cus_é+1", "payload[value]": "7", identifier: "a&b=c", timestamp: "1764650000" }).toString();
    expect(formPairs(text)).toEqual([...new URLSearchParams(text)]);
    expect(parseStripeForm(text)).toEqual({ event_name: "api request", payload: { stripe_customer_id: "cus_é+1", value: "7" }, identifier: "a&b=c", timestamp: "1764650000" });
  });
  it("drops one leading '?' as URLSearchParams does, whether or not the body takes the fallback", () => {
    expect(formPairs("?event_name=x&b=")).toEqual([["event_name", "x"], ["b", ""]]);
    expect(formPairs("??a=1")).toEqual([["?a", "1"]]);
    expect(formPairs("?a=%")).toEqual([["a", "%"]]);
  });
  it("keeps a ']' in a key without '[' out of the path as before (a]b is the key ab)", () => {
    expect(parseStripeForm("a]b=1")).toEqual({ ab: "1" });
  });
});
