import { z } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { HonoEnv } from "../../env";
import { access, actorFromAuthorization, permits } from "../../http/auth";
import { router } from "../../http/openapi";
import { ApiError } from "../../http/problem";
import { bodyText } from "../../http/body-text";
import { wallClock } from "../../http/context";
import { containsCardNumber } from "../../domain/card-numbers";
import { ingestRouted, type RoutedItem, type RoutedOutcome } from "./routed-ingest";
import { parseStripeForm } from "./stripe-form";

// Stripe's meter event API, so a sender built on Stripe's SDK switches by changing its host: form-encoded v1 events
// (POST /v1/billing/meter_events) and the JSON v2 stream (POST /v2/billing/meter_event_stream), authenticated with an
// API key sent as Stripe's SDK sends it, answered in Stripe's shapes. `payload[stripe_customer_id]` is the customer's
// metadata.stripeCustomerId (or our customer id); `event_name` is a metered price's eventName (default its meterId).

const MAX_NAME = 100;
/** A customer id as the CloudEvents route bounds its subject: ids are cache and Durable Object names in every isolate. */
const MAX_CUSTOMER_ID = 200;
const MAX_V2_EVENTS = 100;
/** Stripe accepts events up to 35 days old; older ones here meet the meter's own late-event rule instead. */
const STRIPE_SCOPE = "usage:write";

type StripeErrorType = "invalid_request_error" | "api_error" | "authentication_error" | "permission_error";
class StripeError extends Error {
  constructor(
    readonly status: number,
    readonly type: StripeErrorType,
    message: string,
    readonly code?: string,
    readonly param?: string,
  ) {
    super(message);
  }
}

function stripeErrorResponse(c: Context<HonoEnv>, e: StripeError): Response {
  const body = { error: { type: e.type, message: e.message, ...(e.code && { code: e.code }), ...(e.param && { param: e.param }), request_id: c.get("requestId") } };
  return new Response(JSON.stringify(body), { status: e.status, headers: { "content-type": "application/json", "request-id": c.get("requestId") ?? "" } });
}

function asStripeError(e: unknown): StripeError {
  if (e instanceof StripeError) return e;
  if (e instanceof ApiError) {
    if (e.status === 401) return new StripeError(401, "authentication_error", `Invalid API Key provided: ${e.detail}`);
    if (e.status === 403) return new StripeError(403, "permission_error", e.detail);
    if (e.status === 413) return new StripeError(413, "invalid_request_error", e.detail);
    return new StripeError(e.status, e.status >= 500 ? "api_error" : "invalid_request_error", e.detail);
  }
  console.log(JSON.stringify({ level: "error", msg: "stripe-compatible ingestion failed", error: String(e) }));
  return new StripeError(500, "api_error", "An unexpected error occurred; quote the request id when reporting it.");
}

/** Authenticates as Stripe's SDK does (Authorization: Bearer <key>) and checks the usage:write scope. */
async function authorize(c: Context<HonoEnv>): Promise<void> {
  const header = c.req.header("authorization");
  if (!header) throw new StripeError(401, "invalid_request_error", "You did not provide an API key. Provide it in the Authorization header (Authorization: Bearer bek_…).");
  const actor = await actorFromAuthorization(c.env, header);
  c.set("actor", actor);
  if (!permits(actor, STRIPE_SCOPE, access.admin)) throw new StripeError(403, "permission_error", `The provided key does not have the required permissions for this endpoint: it needs the scope ${STRIPE_SCOPE}.`, "insufficient_permissions");
}

type StripeEvent = { event_name: string; identifier: string; payload: Record<string, string>; timestamp: number | null };

/** Checks one Stripe event's shape (the synchronous part of Stripe's validation); `at` prefixes the parameter names. */
function readEvent(raw: unknown, at: string, timestampOf: (v: unknown) => number | null | undefined, defaultId: () => string): StripeEvent {
  const p = (name: string) => (at ? `${at}[${name}]` : name);
  if (typeof raw !== "object" || raw === null) throw new StripeError(400, "invalid_request_error", `Invalid object: ${at || "body"}`, "parameter_invalid_empty", at || undefined);
  const r = raw as Record<string, unknown>;
  if (typeof r.event_name !== "string" || !r.event_name) throw new StripeError(400, "invalid_request_error", `Missing required param: ${p("event_name")}.`, "parameter_missing", p("event_name"));
  if (r.event_name.length > MAX_NAME) throw new StripeError(400, "invalid_request_error", `${p("event_name")} must be at most ${MAX_NAME} characters.`, "parameter_invalid_string", p("event_name"));
  if (typeof r.payload !== "object" || r.payload === null) throw new StripeError(400, "invalid_request_error", `Missing required param: ${p("payload")}.`, "parameter_missing", p("payload"));
  const payload: Record<string, string> = {};
  const sent = r.payload as Record<string, unknown>;
  // for…in, not Object.entries: no array per key (a parsed body's objects have no inherited enumerable keys).
  for (const k in sent) {
    const v = sent[k];
    if (typeof v !== "string" && typeof v !== "number") throw new StripeError(400, "invalid_request_error", `Invalid string: ${p(`payload][${k}`)}`, "parameter_invalid_string", `${p("payload")}[${k}]`);
    const text = typeof v === "string" ? v : String(v);
    if (containsCardNumber(text) || containsCardNumber(k)) throw new StripeError(400, "invalid_request_error", "The payload holds a card number: send a payment-method token, never a card number.", "parameter_invalid_string", p("payload"));
    payload[k] = text;
  }
  if (!payload.stripe_customer_id) throw new StripeError(400, "invalid_request_error", `Missing required param: ${p("payload")}[stripe_customer_id].`, "parameter_missing", `${p("payload")}[stripe_customer_id]`);
  if (payload.stripe_customer_id.length > MAX_CUSTOMER_ID) {
    throw new StripeError(400, "invalid_request_error", `${p("payload")}[stripe_customer_id] must be at most ${MAX_CUSTOMER_ID} characters.`, "parameter_invalid_string", `${p("payload")}[stripe_customer_id]`);
  }
  if (r.identifier !== undefined && (typeof r.identifier !== "string" || !r.identifier || r.identifier.length > MAX_NAME)) {
    throw new StripeError(400, "invalid_request_error", `${p("identifier")} must be a string of 1-${MAX_NAME} characters.`, "parameter_invalid_string", p("identifier"));
  }
  const ts = timestampOf(r.timestamp);
  if (ts === undefined) throw new StripeError(400, "invalid_request_error", `Invalid timestamp: ${p("timestamp")}.`, "parameter_invalid_integer", p("timestamp"));
  return { event_name: r.event_name, identifier: typeof r.identifier === "string" ? r.identifier : defaultId(), payload, timestamp: ts };
}

const unixSeconds = (v: unknown): number | null | undefined => {
  if (v === undefined || v === "") return null;
  const n = typeof v === "number" ? v : typeof v === "string" && /^\d{1,12}$/.test(v) ? Number(v) : NaN;
  return Number.isInteger(n) && n >= 0 ? n * 1000 : undefined;
};
const isoInstant = (v: unknown): number | null | undefined => {
  if (v === undefined) return null;
  const t = typeof v === "string" && /^\d{4}-\d{2}-\d{2}T/.test(v) ? Date.parse(v) : NaN;
  return Number.isNaN(t) ? undefined : t;
};

/** A Stripe customer id, else (a sender that never had Stripe) our own customer id. */
const SUBJECT_VIA = ["stripe", "customer"] as const;

function toItem(e: StripeEvent, index: number): RoutedItem {
  // Everything but the customer is the event's data; everything but the customer and the value is kept as its
  // metadata (groupBy can pick from it too). One pass, no rest spreads: a v2 batch does this 100 times.
  const data: Record<string, string> = {};
  const metadata: Record<string, string> = {};
  for (const k in e.payload) {
    if (k === "stripe_customer_id") continue;
    data[k] = e.payload[k]!;
    if (k !== "value") metadata[k] = e.payload[k]!;
  }
  return {
    index,
    subject: e.payload.stripe_customer_id!,
    eventName: e.event_name,
    eventId: e.identifier,
    timestamp: e.timestamp,
    data,
    metadata,
  };
}

/** A refusal in Stripe's error shape, naming the parameter Stripe would name. */
function refusal(o: Extract<RoutedOutcome, { status: "rejected" }>, at: string, e: StripeEvent): StripeError {
  const p = (name: string) => (at ? `${at}[${name}]` : name);
  switch (o.reason) {
    case "unknown_subscription":
      return new StripeError(400, "invalid_request_error", `No such customer: '${e.payload.stripe_customer_id}' (or it has no subscription with a meter). ${o.detail}`, "resource_missing", `${p("payload")}[stripe_customer_id]`);
    case "unknown_meter":
      return new StripeError(400, "invalid_request_error", `No active meter was found with event name '${e.event_name}' for this customer. ${o.detail}`, "resource_missing", p("event_name"));
    case "invalid_event":
    case "invalid_quantity":
      return new StripeError(400, "invalid_request_error", o.detail, "parameter_invalid", `${p("payload")}[value]`);
    case "timestamp_in_future":
    case "before_subscription_start":
    case "period_closed":
      return new StripeError(400, "invalid_request_error", o.detail, o.reason, p("timestamp"));
    case "meter_unavailable":
      return new StripeError(503, "api_error", o.detail, o.reason);
    default:
      return new StripeError(400, "invalid_request_error", o.detail, o.reason, `${p("payload")}[stripe_customer_id]`);
  }
}

const requestKey = (c: Context<HonoEnv>) => {
  const key = c.req.header("idempotency-key");
  let n = 0;
  // Without an identifier, a retried request (same Idempotency-Key, as Stripe's SDK sends) maps to the same events.
  return () => (key ? `idem:${key.slice(0, 150)}:${n++}` : `gen_${crypto.randomUUID()}`);
};

const StripeErrorSchema = z
  .object({ error: z.object({ type: z.string(), code: z.string().optional(), message: z.string(), param: z.string().optional(), request_id: z.string().optional() }) })
  .openapi("StripeError");
const stripeError = (description: string) => ({ description, content: { "application/json": { schema: StripeErrorSchema } } });
const MeterEventObject = z
  .object({
    object: z.literal("billing.meter_event"),
    created: z.number().int(),
    event_name: z.string(),
    identifier: z.string(),
    livemode: z.boolean(),
    payload: z.record(z.string(), z.string()),
    timestamp: z.number().int(),
  })
  .openapi("StripeMeterEvent");

export const stripeMeterEventRoutes = router();

stripeMeterEventRoutes.openAPIRegistry.registerPath({
  method: "post",
  path: "/v1/billing/meter_events",
  operationId: "createStripeMeterEvent",
  tags: ["Drop-in ingestion"],
  summary: "Record a usage event sent as a Stripe meter event (Stripe SDK compatible)",
  description:
    "Stripe's `POST /v1/billing/meter_events`, form-encoded: `event_name` (a metered price's eventName, default its meterId), `payload[stripe_customer_id]` (the customer's metadata.stripeCustomerId, or our customer id), `payload[value]`, optional `identifier` (the dedupe key) and `timestamp` (Unix seconds). Authenticate with an API key holding `usage:write` as `Authorization: Bearer bek_…`. A repeat of an identifier answers 200 again and is counted once. Errors use Stripe's shape `{error:{type,code,message,param}}`.",
  request: {
    body: {
      required: true,
      content: {
        "application/x-www-form-urlencoded": {
          schema: z.object({
            event_name: z.string().max(MAX_NAME),
            "payload[stripe_customer_id]": z.string().max(MAX_CUSTOMER_ID),
            "payload[value]": z.string().optional(),
            identifier: z.string().max(MAX_NAME).optional(),
            timestamp: z.number().int().optional().openapi({ description: "Unix seconds; defaults to now" }),
          }),
        },
      },
    },
  },
  responses: {
    200: { description: "The event, stored (or a repeat of a stored one)", content: { "application/json": { schema: MeterEventObject } } },
    400: stripeError("Invalid parameters, unknown customer or event name, or a refused timestamp"),
    401: stripeError("No or invalid API key"),
    403: stripeError("The key lacks usage:write"),
    503: stripeError("The subscription's meter did not answer; retry"),
  },
});

stripeMeterEventRoutes.post("/v1/billing/meter_events", async (c) => {
  try {
    await authorize(c);
    const text = await bodyText(c);
    const body = (c.req.header("content-type") ?? "").includes("json") ? (JSON.parse(text || "{}") as unknown) : parseStripeForm(text);
    const now = wallClock(c);
    const event = readEvent(body, "", unixSeconds, requestKey(c));
    const [outcome] = await ingestRouted(c.env, SUBJECT_VIA, [toItem(event, 0)], now);
    if (outcome!.status === "rejected") throw refusal(outcome!, "", event);
    return c.json(
      { object: "billing.meter_event" as const, created: Math.floor(now / 1000), event_name: event.event_name, identifier: event.identifier, livemode: false, payload: event.payload, timestamp: Math.floor((event.timestamp ?? now) / 1000) },
      200,
    );
  } catch (e) {
    if (e instanceof SyntaxError) return stripeErrorResponse(c, new StripeError(400, "invalid_request_error", "Invalid JSON body."));
    return stripeErrorResponse(c, asStripeError(e));
  }
});

const StreamEvent = z.object({
  event_name: z.string().max(MAX_NAME),
  identifier: z.string().max(MAX_NAME).optional(),
  payload: z
    .record(z.string(), z.string())
    .openapi({ description: `stripe_customer_id (at most ${MAX_CUSTOMER_ID} characters), value, and any other keys (kept as metadata)`, example: { stripe_customer_id: "cus_NciAYcXfLnqBoz", value: "25" } }),
  timestamp: z.string().optional().openapi({ description: "ISO-8601 date-time; defaults to now" }),
});
const StreamResult = z
  .object({
    accepted: z.number().int(),
    duplicates: z.number().int(),
    rejected: z.number().int(),
    results: z.array(z.object({ index: z.number().int(), identifier: z.string(), status: z.enum(["duplicate", "rejected"]), code: z.string().optional(), message: z.string().optional() })),
  })
  .openapi("StripeMeterEventStreamResult");

stripeMeterEventRoutes.openAPIRegistry.registerPath({
  method: "post",
  path: "/v2/billing/meter_event_stream",
  operationId: "createStripeMeterEventStream",
  tags: ["Drop-in ingestion"],
  summary: "Record up to 100 usage events sent as Stripe's v2 meter event stream (Stripe SDK compatible)",
  description:
    "Stripe's `POST /v2/billing/meter_event_stream` (JSON `{events:[…]}`, at most 100, timestamps ISO-8601). Stripe validates these events asynchronously and answers an empty object; this engine decides each event at once and lists those it did not store (duplicates, refusals with Stripe-style codes) in the 200 answer, which Stripe's SDK ignores. A 503 means some meter did not answer: resend the request (identifiers make that safe).",
  request: { body: { required: true, content: { "application/json": { schema: z.object({ events: z.array(StreamEvent).min(1).max(MAX_V2_EVENTS) }) } } } },
  responses: {
    200: { description: "Every event decided; those not stored are listed", content: { "application/json": { schema: StreamResult } } },
    400: stripeError("Malformed request"),
    401: stripeError("No or invalid API key"),
    403: stripeError("The key lacks usage:write"),
    503: stripeError("A meter did not answer; resend"),
  },
});

stripeMeterEventRoutes.post("/v2/billing/meter_event_stream", async (c) => {
  try {
    await authorize(c);
    const body = JSON.parse((await bodyText(c)) || "null") as { events?: unknown } | null;
    const events = body?.events;
    if (!Array.isArray(events) || events.length === 0 || events.length > MAX_V2_EVENTS) {
      throw new StripeError(400, "invalid_request_error", `events must be an array of 1-${MAX_V2_EVENTS} meter events.`, "parameter_invalid", "events");
    }
    const nextKey = requestKey(c);
    const parsed = events.map((raw, i) => readEvent(raw, `events[${i}]`, isoInstant, nextKey));
    const outcomes = await ingestRouted(c.env, SUBJECT_VIA, parsed.map(toItem), wallClock(c));
    const unavailable = outcomes.find((o) => o.status === "rejected" && o.reason === "meter_unavailable");
    if (unavailable && unavailable.status === "rejected") throw refusal(unavailable, `events[${unavailable.index}]`, parsed[unavailable.index]!);
    const results = outcomes
      .filter((o) => o.status !== "accepted")
      .map((o) => {
        const identifier = parsed[o.index]!.identifier;
        if (o.status === "duplicate") return { index: o.index, identifier, status: "duplicate" as const };
        const e = refusal(o as Extract<RoutedOutcome, { status: "rejected" }>, `events[${o.index}]`, parsed[o.index]!);
        return { index: o.index, identifier, status: "rejected" as const, ...(e.code && { code: e.code }), message: e.message };
      });
    const count = (s: string) => outcomes.filter((o) => o.status === s).length;
    return c.json({ accepted: count("accepted"), duplicates: count("duplicate"), rejected: count("rejected"), results }, 200);
  } catch (e) {
    if (e instanceof SyntaxError) return stripeErrorResponse(c, new StripeError(400, "invalid_request_error", "Invalid JSON body."));
    return stripeErrorResponse(c, asStripeError(e));
  }
});
