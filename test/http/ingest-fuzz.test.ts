import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { parseDecimal } from "../../src/domain/decimal";
import { api, createApiKey, createCustomer, createPlan, createSubscription, unique, type ApiResponse } from "../helpers";

// Malformed and odd bodies on the usage ingestion routes (native, Stripe v1 and v2, OpenMeter): whatever is sent, the
// answer is a 2xx or a 4xx in the route's documented shape, never a 5xx, and the subscription's usage stays readable.
// Each route gets at most ~60 requests (generated ones plus a few fixed edge cases), so the file runs in seconds.

type World = { subscriptionId: string; customerId: string; stripeId: string; auth: string };
let w: World;

beforeAll(async () => {
  const stripeId = unique("cus_stripe");
  const customer = await createCustomer({ metadata: { stripeCustomerId: stripeId } });
  const plan = await createPlan({
    prices: [
      { type: "flat", amount: "10" },
      { type: "metered", meterId: "api_calls", eventName: "api_request", aggregation: "sum", pricingModel: "per_unit", unitAmount: "0.001" },
      { type: "metered", meterId: "tokens", eventName: "prompt", valueProperty: "$.usage.tokens", groupBy: { model: "$.model" }, aggregation: "sum", pricingModel: "per_unit", unitAmount: "0.0001" },
    ],
  });
  const sub = await createSubscription({ customerId: customer.id, planId: plan.id });
  const { key } = await createApiKey(["usage:write"]);
  w = { subscriptionId: sub.id, customerId: customer.id, stripeId, auth: `Bearer ${key}` };
});

const RUNS = { numRuns: 40 };

// ---------------------------------------------------------------------------------------------------------------
// Odd values, shared by every route.

/** `depth` levels of arrays and objects around a value. */
const nest = (depth: number): unknown => {
  let v: unknown = "bottom";
  for (let i = 0; i < depth; i++) v = i % 2 ? [v] : { d: v };
  return v;
};
const deepJsonText = (depth: number) => `${"[".repeat(depth)}1${"]".repeat(depth)}`;
const deepObjectText = (depth: number) => `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;

const nastyText = fc.constantFrom("", " ", "\u0000", "a\u0000b", "💥", "\u202eevil", "\ud800", "\uffff", "NaN", "-1", "-0", "Infinity", "-Infinity", "1e999", "1e5", "0x1f", "1,5", "null", "[]", "{}", "<b>", "' OR 1=1 --", "%00", "a".repeat(300));
const text = fc.string({ unit: "binary", maxLength: 30 });
const hugeNumber = fc.constantFrom(1e308, -1e308, Number.MAX_VALUE, Number.MIN_VALUE, -Number.MAX_SAFE_INTEGER - 2, 2 ** 64, -(2 ** 64));
const wrong: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, -0.5, [], {}, [null], { $ne: 1 }),
  hugeNumber,
  nastyText,
  text,
  fc.double(), // NaN and ±Infinity become null in JSON
  fc.jsonValue({ maxDepth: 2 }),
  fc.integer({ min: 20, max: 1500 }).map(nest),
);

const smallQuantity = fc.oneof(fc.nat({ max: 1000 }), fc.constantFrom("1.5", "0.001", "007", "0", ".5", "10.000"));
const oddQuantity = fc.constantFrom<unknown>("-5", "-0", "-0.000001", "1.0000000000001", "1e3", " 7", "7 ", "١", "0x10", "+1", "", -1, 1e-13, "NaN");

/** The usual value nine times in ten, else an odd one of the right type (unknown ids, refused times, a bad quantity). */
const usually = (usual: fc.Arbitrary<unknown>, odd: fc.Arbitrary<unknown>) => fc.oneof({ arbitrary: usual, weight: 9 }, { arbitrary: odd, weight: 1 });

const DROP = Symbol("drop");
/**
 * An object of `fields` as is half of the time, else with one or two of them left out or replaced by `change` (a
 * wrong value): events that get past the first checks, so the meters are fuzzed too, not only the parsers.
 */
function mutated(fields: Record<string, fc.Arbitrary<unknown>>, change: fc.Arbitrary<unknown> = wrong): fc.Arbitrary<Record<string, unknown>> {
  const keys = Object.keys(fields);
  const edits = fc.oneof(fc.constant([]), fc.subarray(keys, { minLength: 1, maxLength: Math.min(2, keys.length) }));
  const values = fc.array(fc.oneof({ arbitrary: fc.constant(DROP), weight: 1 }, { arbitrary: change, weight: 3 }), { minLength: 2, maxLength: 2 });
  return fc.tuple(fc.record(fields), edits, values).map(([o, ks, vs]) => {
    const out: Record<string, unknown> = { ...o };
    ks.forEach((k, i) => (vs[i] === DROP ? delete out[k] : (out[k] = vs[i])));
    return out;
  });
}

const now = () => new Date().toISOString();
const oddTimestamp = fc.constantFrom<unknown>("2024-13-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2024-06-24", "2024-06-24T10:00:00", "", new Date(Date.now() + 86_400_000).toISOString());
const metadataOdd = fc.oneof(
  fc.integer({ min: 20, max: 1500 }).map((d) => ({ deep: nest(d) })),
  fc.constant(Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, i]))),
  fc.constant({ blob: "x".repeat(40_000) }),
  fc.constant({ "\u0000": "\u0000", "💥": "\ud800", "": "" }),
  fc.constantFrom<unknown>([], "x", 1),
);
const metadataUsual = fc.option(fc.dictionary(text, fc.oneof(text, fc.integer(), fc.boolean(), fc.constant(null)), { maxKeys: 5 }), { nil: undefined });

type Req = { body: string; contentType: string | null };
const json = (contentType: string | null = "application/json") => (v: unknown): Req => ({ body: JSON.stringify(v) ?? "", contentType });
/** Text that is not JSON, or is JSON of an odd shape. */
const oddText = fc.oneof(
  text,
  fc.constantFrom("", "null", "[]", "{}", "0", "\"events\"", "{\"events\":", "{'a':1}", "{\"a\":1,}", "\u0000", "\ufeff{}", "{\"quantity\":1e999}", "NaN"),
  fc.integer({ min: 1_000, max: 200_000 }).map(deepJsonText),
);
const oddContentType = fc.constantFrom("text/plain", null, "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json; charset=utf-16", "application/xml");

async function send(path: string, r: Req): Promise<ApiResponse> {
  return api("POST", path, { auth: w.auth, rawBody: r.body, contentType: r.contentType });
}

/** Never a 5xx (what every property checks first); the status goes into the message, with the answer. */
function expectNo5xx(r: ApiResponse, req: Req) {
  expect(r.status, `${r.status} ${JSON.stringify(r.body)?.slice(0, 500)} for ${req.contentType} ${req.body.slice(0, 300)}`).toBeLessThan(500);
  expect(r.status).toBeGreaterThanOrEqual(200);
}

/** An ingest answer's counts, and each listed (not stored) event's index and status, plus the route's own fields. */
function expectCountsAndResults(b: { accepted?: unknown; duplicates?: unknown; rejected?: unknown; results?: unknown }, fields: Record<string, unknown> = {}) {
  expect(Number.isInteger(b.accepted) && Number.isInteger(b.duplicates) && Number.isInteger(b.rejected)).toBe(true);
  expect(Array.isArray(b.results)).toBe(true);
  for (const x of b.results as unknown[]) expect(x).toMatchObject({ index: expect.any(Number), status: expect.stringMatching(/^(duplicate|rejected)$/), ...fields });
}

/** RFC 9457 problem+json; `withErrors` requires a non-empty errors[] of paths. */
function expectProblem(r: ApiResponse, withErrors: boolean) {
  expect(r.headers.get("content-type")).toMatch(/^application\/problem\+json/);
  expect(r.body).toMatchObject({ type: expect.any(String), title: expect.any(String), status: r.status, detail: expect.any(String) });
  if (withErrors || r.body.errors !== undefined) {
    expect(r.body.errors.length).toBeGreaterThan(0);
    for (const e of r.body.errors) expect(e).toMatchObject({ path: expect.stringMatching(/./), message: expect.any(String) });
  }
}

function expectStripeError(r: ApiResponse) {
  expect(r.status).toBeGreaterThanOrEqual(400);
  expect(r.headers.get("content-type")).toMatch(/^application\/json/);
  expect(r.body.error).toMatchObject({ type: expect.stringMatching(/^(invalid_request_error|authentication_error|permission_error)$/), message: expect.any(String) });
}

// ---------------------------------------------------------------------------------------------------------------

describe("POST /api/v1/usage with odd bodies", () => {
  const eventArb = () =>
    mutated({
      subscriptionId: usually(fc.constant(w.subscriptionId), fc.constantFrom("sub_nobody", "")),
      meterId: usually(fc.constantFrom("api_calls", "tokens"), fc.constantFrom("no_such_meter", "API_CALLS")),
      quantity: usually(smallQuantity, oddQuantity),
      timestamp: usually(fc.constantFrom(undefined, now()), oddTimestamp),
      metadata: usually(metadataUsual, metadataOdd),
      eventId: usually(fc.uuid(), fc.constantFrom("", "x".repeat(201))),
    });
  const requestArb = () =>
    fc.oneof(
      { arbitrary: eventArb().map(json()), weight: 4 },
      { arbitrary: fc.array(eventArb(), { minLength: 1, maxLength: 5 }).map((events) => json()({ events })), weight: 3 },
      { arbitrary: wrong.map((events) => json()({ events })), weight: 1 },
      { arbitrary: oddText.map((body): Req => ({ body, contentType: "application/json" })), weight: 1 },
      { arbitrary: fc.tuple(eventArb(), oddContentType).map(([e, t]) => json(t)(e)), weight: 1 },
    );

  function check(r: ApiResponse, req: Req) {
    expectNo5xx(r, req);
    if (r.status === 202 || r.status === 207) {
      expectCountsAndResults(r.body);
      if (r.status === 207) expect(r.body.rejected).toBeGreaterThan(0);
    } else expectProblem(r, true);
  }

  it("answers 2xx or a problem+json naming paths, never a 5xx", async () => {
    await fc.assert(
      fc.asyncProperty(requestArb(), async (req) => check(await send("/api/v1/usage", req), req)),
      RUNS,
    );
  });

  it.each([
    ["an empty batch", json()({ events: [] }), 400],
    ["a batch over 1,000 events", json()({ events: Array.from({ length: 1001 }, () => ({ subscriptionId: "sub_x", meterId: "m", quantity: 1 })) }), 400],
    ["1,000 events that are all wrong", json()({ events: Array.from({ length: 1000 }, (_, i) => (i % 2 ? null : { quantity: -i })) }), 207],
    ["JSON nested 300,000 deep", { body: deepJsonText(300_000), contentType: "application/json" }, 400],
    ["metadata of arrays nested 300,000 deep, with an escape", { body: `{"subscriptionId":"x","meterId":"\\u0041","quantity":1,"metadata":${deepJsonText(300_000)}}`, contentType: "application/json" }, 400],
    ["metadata of objects nested 300,000 deep", { body: `{"subscriptionId":"x","meterId":"m","quantity":1,"metadata":${deepObjectText(300_000)}}`, contentType: "application/json" }, 400],
    ["no body", { body: "", contentType: null }, 400],
  ] as const)("%s", async (_, req, status) => {
    const r = await send("/api/v1/usage", req);
    check(r, req);
    expect(r.status).toBe(status);
  });
});

describe("POST /v1/billing/meter_events (Stripe, form-encoded) with odd bodies", () => {
  const formChange = fc.oneof(nastyText, text, hugeNumber.map(String), wrong.map((v) => JSON.stringify(v) ?? ""));
  const formArb = () =>
    fc
      .record({
        fields: mutated(
          {
            event_name: usually(fc.constant("api_request"), fc.constantFrom("prompt", "no_such_event", "x".repeat(101))),
            "payload[stripe_customer_id]": usually(fc.constantFrom(w.stripeId, w.customerId), fc.constantFrom(w.subscriptionId, "cus_nobody")),
            "payload[value]": usually(smallQuantity.map(String), oddQuantity.map(String)),
            identifier: usually(fc.uuid(), fc.constantFrom("x".repeat(101))),
            timestamp: usually(fc.constant(undefined), fc.constantFrom("0", "-1", "999999999999", "9999999999999", "1.5", "1e9", "")),
          },
          formChange,
        ),
        odd: fc.oneof(
          { arbitrary: fc.constant(undefined), weight: 3 },
          { arbitrary: fc.constantFrom("payload[a][b]", "payload[]", "payload", "event_name[x]", "payload[__proto__][x]", "payload[constructor]", "payload[value][]", "[]", "a[[b]]"), weight: 1 },
        ),
        oddValue: text,
      })
      .map(({ odd, oddValue, fields }) => {
        const p = new URLSearchParams();
        for (const [k, v] of Object.entries(fields)) if (v !== undefined) p.append(k, String(v));
        if (odd) p.append(odd, oddValue);
        return p.toString();
      });
  const requestArb = () =>
    fc.oneof(
      { arbitrary: formArb().map((body): Req => ({ body, contentType: "application/x-www-form-urlencoded" })), weight: 5 },
      { arbitrary: fc.string({ unit: fc.constantFrom(..."ab=&[]%0Z+é\u0000".split("")), maxLength: 40 }).map((body): Req => ({ body, contentType: "application/x-www-form-urlencoded" })), weight: 1 },
      { arbitrary: fc.oneof(oddText, wrong.map((v) => JSON.stringify(v) ?? "")).map((body): Req => ({ body, contentType: "application/json" })), weight: 1 },
      { arbitrary: fc.tuple(formArb(), oddContentType).map(([body, contentType]): Req => ({ body, contentType })), weight: 1 },
    );

  function check(r: ApiResponse, req: Req) {
    expectNo5xx(r, req);
    if (r.status === 200) expect(r.body).toMatchObject({ object: "billing.meter_event", event_name: expect.any(String), identifier: expect.any(String) });
    else expectStripeError(r);
  }

  it("answers Stripe's meter event or Stripe's error shape, never a 5xx", async () => {
    await fc.assert(
      fc.asyncProperty(requestArb(), async (req) => check(await send("/v1/billing/meter_events", req), req)),
      RUNS,
    );
  });

  it.each([
    ["no body", { body: "", contentType: null }],
    ["a key nested 100,000 deep", { body: `a${"[b".repeat(100_000)}]=1`, contentType: "application/x-www-form-urlencoded" }],
    ["JSON nested 300,000 deep", { body: deepJsonText(300_000), contentType: "application/json" }],
  ])("%s", async (_, req) => check(await send("/v1/billing/meter_events", req), req));
});

describe("POST /v2/billing/meter_event_stream (Stripe, JSON) with odd bodies", () => {
  const eventArb = () =>
    mutated({
      event_name: usually(fc.constant("api_request"), fc.constantFrom("prompt", "no_such_event", "x".repeat(101))),
      identifier: usually(fc.uuid(), fc.constantFrom("", "x".repeat(101))),
      payload: mutated({
        stripe_customer_id: usually(fc.constantFrom(w.stripeId, w.customerId), fc.constantFrom("cus_nobody", "")),
        value: usually(smallQuantity, oddQuantity),
        region: usually(fc.constant(undefined), text),
      }),
      timestamp: usually(fc.constantFrom(undefined, now()), oddTimestamp),
    });
  const requestArb = () =>
    fc.oneof(
      // Stripe refuses the whole request for one malformed event, so the batches are short.
      { arbitrary: fc.array(eventArb(), { minLength: 1, maxLength: 3 }).map((events) => json()({ events })), weight: 5 },
      { arbitrary: wrong.map((events) => json()({ events })), weight: 1 },
      { arbitrary: oddText.map((body): Req => ({ body, contentType: "application/json" })), weight: 1 },
      { arbitrary: fc.tuple(fc.array(eventArb(), { minLength: 1, maxLength: 2 }), oddContentType).map(([events, t]) => json(t)({ events })), weight: 1 },
    );

  function check(r: ApiResponse, req: Req) {
    expectNo5xx(r, req);
    if (r.status === 200) expectCountsAndResults(r.body, { identifier: expect.any(String) });
    else expectStripeError(r);
  }

  it("answers the per-event results or Stripe's error shape, never a 5xx", async () => {
    await fc.assert(
      fc.asyncProperty(requestArb(), async (req) => check(await send("/v2/billing/meter_event_stream", req), req)),
      RUNS,
    );
  });

  it.each([
    ["an empty events array", json()({ events: [] })],
    ["101 events", json()({ events: Array.from({ length: 101 }, () => ({ event_name: "api_request", payload: { stripe_customer_id: "cus_x", value: "1" } })) })],
    ["no body", { body: "", contentType: null }],
    ["JSON nested 300,000 deep", { body: deepJsonText(300_000), contentType: "application/json" }],
  ])("%s", async (_, req) => {
    const r = await send("/v2/billing/meter_event_stream", req);
    check(r, req);
    expect(r.status).toBe(400);
  });
});

describe("POST /openmeter/api/v1/events (CloudEvents) with odd bodies", () => {
  const ONE = "application/cloudevents+json";
  const BATCH = "application/cloudevents-batch+json";
  const eventArb = () =>
    mutated({
      specversion: usually(fc.constant("1.0"), fc.constantFrom("0.3", "1")),
      id: usually(fc.uuid(), fc.constantFrom("", "x".repeat(201))),
      source: usually(fc.constant("fuzz"), fc.constant("")),
      type: usually(fc.constantFrom("api_request", "prompt"), fc.constant("no_such_event")),
      subject: usually(fc.constantFrom(w.customerId, w.subscriptionId, w.stripeId), fc.constantFrom("cus_nobody", "")),
      time: usually(fc.constantFrom(undefined, null, now()), oddTimestamp),
      data: mutated({
        value: usually(smallQuantity, oddQuantity),
        usage: mutated({ tokens: usually(smallQuantity, oddQuantity) }),
        model: usually(fc.constantFrom("gpt", "small"), text),
      }),
    });
  const requestArb = () =>
    fc.oneof(
      { arbitrary: eventArb().map(json(ONE)), weight: 3 },
      { arbitrary: fc.array(eventArb(), { maxLength: 4 }).map(json(BATCH)), weight: 3 },
      { arbitrary: eventArb().map(json(BATCH)), weight: 1 },
      { arbitrary: fc.tuple(oddText, fc.constantFrom(ONE, BATCH)).map(([body, contentType]): Req => ({ body, contentType })), weight: 1 },
      { arbitrary: fc.tuple(eventArb(), fc.constantFrom("text/plain", null, "APPLICATION/CLOUDEVENTS+JSON", `${ONE}; charset=utf-8`, "application/json", "application/cloudevents")).map(([e, t]) => json(t)(e)), weight: 1 },
    );

  function check(r: ApiResponse, req: Req) {
    expectNo5xx(r, req);
    if (r.status === 204) expect(r.body).toBeNull();
    else if (r.status === 207) {
      expectCountsAndResults(r.body);
      expect(r.body.rejected).toBeGreaterThan(0);
    } else expectProblem(r, false);
  }

  it("answers 204, the per-event results or a problem+json, never a 5xx", async () => {
    await fc.assert(
      fc.asyncProperty(requestArb(), async (req) => check(await send("/openmeter/api/v1/events", req), req)),
      RUNS,
    );
  });

  it.each([
    ["an empty batch", json(BATCH)([]), 400],
    ["a batch over 1,000 events", json(BATCH)(Array.from({ length: 1001 }, () => ({ specversion: "1.0", id: "x", source: "s", type: "api_request", subject: "cus_x" }))), 400],
    ["a batch that is an object", json(BATCH)({ specversion: "1.0" }), 400],
    ["no body", { body: "", contentType: ONE }, 400],
    ["an event of objects nested 300,000 deep", { body: deepObjectText(300_000), contentType: ONE }, 400],
    // An array under the single-event type is taken as a batch: one event, refused in the per-event results.
    ["a batch of arrays nested 300,000 deep", { body: deepJsonText(300_000), contentType: ONE }, 207],
    ["a content type that is not CloudEvents", { body: "{}", contentType: "text/plain" }, 415],
  ] as const)("%s", async (_, req, status) => {
    const r = await send("/openmeter/api/v1/events", req);
    check(r, req);
    expect(r.status).toBe(status);
  });
});

describe("after the fuzzing", () => {
  it("still answers the subscription's usage summary (200, exact figures)", async () => {
    const r = await api("GET", `/api/v1/usage/${w.subscriptionId}/summary`);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.meters.map((m: { meterId: string }) => m.meterId).sort()).toEqual(["api_calls", "tokens"]);
    for (const m of r.body.meters) {
      expect(m.value).toMatch(/^(0|[1-9]\d*)(\.\d*[1-9])?$/);
      expect(Number.isInteger(m.eventCount)).toBe(true);
    }
    expect(Number.isSafeInteger(r.body.total.amountMinor)).toBe(true);
  });
});

describe("a quantity too large to bill", () => {
  // Pricing a meter's total past Number.MAX_SAFE_INTEGER minor units used to throw, so one accepted event (1e17 units
  // at 0.001 USD is 1e16 cents) made the usage summary answer 500 for the rest of the period. The meter now refuses
  // the event that would take its period total past what its price can bill (src/domain/pricing.ts,
  // MAX_METERED_AMOUNT_MINOR), in every dialect.
  it("is refused on every route, and the usage summary stays readable", async () => {
    const subscriptionId = (await createSubscription()).id;
    const native = await api("POST", "/api/v1/usage", { auth: w.auth, body: { subscriptionId, meterId: "api_calls", quantity: "100000000000000000" } });
    expect(native.status).toBe(422);
    expect(native.body).toMatchObject({ reason: "invalid_quantity", errors: [{ path: "quantity" }] });
    // A sum of moderate quantities is stopped at the same line: 10^14 units is exactly the most 0.001 USD can bill.
    const sum = await api("POST", "/api/v1/usage", { auth: w.auth, body: { events: [{ subscriptionId, meterId: "api_calls", quantity: "60000000000000" }, { subscriptionId, meterId: "api_calls", quantity: "40000000000000" }, { subscriptionId, meterId: "api_calls", quantity: "1" }] } });
    expect(sum.body).toMatchObject({ accepted: 2, rejected: 1, results: [{ index: 2, status: "rejected", reason: "invalid_quantity" }] });
    const stripe = await api("POST", "/v1/billing/meter_events", {
      auth: w.auth,
      rawBody: new URLSearchParams({ event_name: "api_request", "payload[stripe_customer_id]": w.stripeId, "payload[value]": "100000000000000000" }).toString(),
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
    expect(stripe.status).toBe(400);
    expect(stripe.body.error).toMatchObject({ type: "invalid_request_error", param: "payload[value]" });
    const cloudEvent = await api("POST", "/openmeter/api/v1/events", {
      auth: w.auth,
      rawBody: JSON.stringify({ specversion: "1.0", id: unique("ce"), source: "fuzz", type: "api_request", subject: subscriptionId, data: { value: 1e300 } }),
      headers: { "content-type": "application/cloudevents+json" },
    });
    expect(cloudEvent.status).toBe(422);
    const summary = await api("GET", `/api/v1/usage/${subscriptionId}/summary`);
    expect(summary.status).toBe(200);
    expect(summary.body.meters.find((m: { meterId: string }) => m.meterId === "api_calls").value).toBe("100000000000000");
    expect(summary.body.total.amountMinor).toBeLessThan(Number.MAX_SAFE_INTEGER);
  });
});
