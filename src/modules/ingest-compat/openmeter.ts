import { createRoute, z } from "@hono/zod-openapi";
import { services, wallClock } from "../../http/context";
import { access, requireScopeOrRole } from "../../http/auth";
import { jsonResponse, ProblemSchema, router, problems } from "../../http/openapi";
import { problem } from "../../http/problem";
import { bodyText } from "../../http/body-text";
import { iso } from "../../lib/time";
import { eventTimeMs } from "../usage/events";
import { meterStub } from "../usage/meter-config";
import { resolveSubject } from "../usage/routing";
import { ingestRouted, type RoutedItem, type RoutedOutcome } from "./routed-ingest";

// OpenMeter's ingestion API under /openmeter, so an OpenMeter client whose base URL is http://<host>/openmeter works
// unchanged: CloudEvents in (one, or a batch), and the list of ingested events. A CloudEvent's `type` is a metered
// price's eventName, its `subject` a customer id (or a subscription id), its `id` the dedupe key, and the meter's
// valueProperty / groupBy read its `data`. Per-event semantics are POST /api/v1/usage's: the same use case decides.

export const MAX_CLOUDEVENTS = 1000;
const MAX_ID = 200;
const PROBLEM = "https://billing-engine.dev/problems/usage-event-rejected";

const CloudEvent = z
  .object({
    specversion: z.literal("1.0"),
    id: z.string().max(MAX_ID).openapi({ description: "Dedupe key: a repeat of an id (per subscription) is counted once", example: "5c10fade-1c9e-4d6c-8275-c52c36731d3c" }),
    source: z.string().openapi({ example: "my-service" }),
    type: z.string().openapi({ description: "A metered price's eventName (default its meterId)", example: "prompt" }),
    subject: z.string().openapi({ description: "A customer id (or its metadata.stripeCustomerId), or a subscription id", example: "cus_123" }),
    time: z.string().optional().openapi({ description: "ISO-8601 date-time; defaults to now", example: "2024-06-24T10:00:00Z" }),
    data: z.record(z.string(), z.unknown()).optional().openapi({ example: { tokens: 1234, model: "gpt-4" } }),
  })
  .openapi("CloudEvent");

const IngestResult = z
  .object({
    accepted: z.number().int(),
    duplicates: z.number().int(),
    rejected: z.number().int(),
    results: z.array(z.object({ index: z.number().int(), id: z.string().nullable(), status: z.enum(["duplicate", "rejected"]), reason: z.string().optional(), detail: z.string().optional(), retryable: z.boolean().optional() })),
  })
  .openapi("CloudEventsIngestResult");

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** How a CloudEvent's subject is read: our customer id, else a subscription id, else a Stripe customer id. */
const SUBJECT_VIA = ["customer", "subscription", "stripe"] as const;

/** Checks a CloudEvent's envelope; the meter's rules (value, windows, dedupe) are the native use case's. */
function readCloudEvent(raw: unknown, index: number): RoutedItem | string {
  if (!isObject(raw)) return "must be a CloudEvent object";
  const { specversion, id, source, type, subject, time, data } = raw;
  if (specversion !== undefined && specversion !== "1.0") return "specversion must be 1.0";
  if (typeof id !== "string" || !id || id.length > MAX_ID) return `id is required (1-${MAX_ID} characters)`;
  if (typeof source !== "string" || !source) return "source is required";
  if (typeof type !== "string" || !type || type.length > 100) return "type is required (a meter's event name)";
  if (typeof subject !== "string" || !subject || subject.length > MAX_ID) return "subject is required (a customer or subscription id)";
  let timestamp: number | null = null;
  if (time !== undefined && time !== null) {
    timestamp = eventTimeMs(time);
    if (Number.isNaN(timestamp)) return "time must be an ISO-8601 date-time with a zone";
  }
  if (data !== undefined && data !== null && !isObject(data)) return "data must be a JSON object";
  return { index, subject, eventName: type, eventId: id, timestamp, data: (data as Record<string, unknown>) ?? {} };
}

export const openMeterRoutes = router();

openMeterRoutes.openAPIRegistry.registerPath({
  method: "post",
  path: "/api/v1/events",
  operationId: "ingestCloudEvents",
  tags: ["Drop-in ingestion"],
  summary: "Record usage sent as CloudEvents (OpenMeter compatible)",
  description:
    "OpenMeter's ingestion API: `application/cloudevents+json` (one event) or `application/cloudevents-batch+json` (an array of up to 1,000). Authenticate with an API key (`usage:write`) or an admin token. 204 when every event was stored or was a duplicate; 207 with per-event results when some were refused (reasons as POST /api/v1/usage's); a single refused event answers 404/422 problem+json; 503 when a meter did not answer (resend: ids make it safe).",
  request: {
    body: {
      required: true,
      content: { "application/cloudevents+json": { schema: CloudEvent }, "application/cloudevents-batch+json": { schema: z.array(CloudEvent).max(MAX_CLOUDEVENTS) } },
    },
  },
  responses: {
    204: { description: "Every event stored (or a duplicate)" },
    207: jsonResponse(IngestResult, "Some events refused"),
    ...problems(400, 413),
    404: { description: "A single event's subject names no customer or subscription", content: { "application/problem+json": { schema: ProblemSchema } } },
    422: { description: "A single event was refused (`reason` says why: unknown event type, closed period, timestamp in the future…)", content: { "application/problem+json": { schema: ProblemSchema } } },
    415: { description: "Not a CloudEvents content type", content: { "application/problem+json": { schema: ProblemSchema } } },
    503: { description: "A usage meter did not answer; resend", content: { "application/problem+json": { schema: ProblemSchema } } },
  },
});

openMeterRoutes.post("/api/v1/events", requireScopeOrRole("usage:write", access.admin), async (c) => {
  const type = (c.req.header("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
  if (!["application/cloudevents+json", "application/cloudevents-batch+json", "application/json"].includes(type)) {
    return problem(c, { kind: "unsupported_media_type", detail: "send application/cloudevents+json (one event) or application/cloudevents-batch+json (an array)" });
  }
  let body: unknown;
  try {
    body = JSON.parse(await bodyText(c)); // refuseCardNumbers decoded it already
  } catch {
    return problem(c, { kind: "bad_request", detail: "body is not valid JSON", errors: [{ path: "(body)", message: "malformed JSON" }] });
  }
  const batch = Array.isArray(body);
  if (type === "application/cloudevents-batch+json" && !batch) return problem(c, { kind: "validation_failed", detail: "a cloudevents batch is a JSON array", errors: [{ path: "(body)", message: "must be an array" }] });
  const raws = batch ? (body as unknown[]) : [body];
  if (raws.length === 0 || raws.length > MAX_CLOUDEVENTS) {
    return problem(c, { kind: "validation_failed", detail: `send 1-${MAX_CLOUDEVENTS} events`, errors: [{ path: "(body)", message: `must hold 1-${MAX_CLOUDEVENTS} events` }] });
  }

  const items: RoutedItem[] = [];
  const invalid: RoutedOutcome[] = [];
  raws.forEach((raw, i) => {
    const r = readCloudEvent(raw, i);
    if (typeof r !== "string") items.push(r);
    else {
      const id = isObject(raw) && typeof raw.id === "string" ? raw.id : null;
      invalid.push({ index: i, eventId: id, status: "rejected", reason: "invalid_event", detail: batch ? `${i}: ${r}` : r, subscriptionId: null, meterId: null });
    }
  });
  if (!batch && invalid.length) {
    return problem(c, { kind: "validation_failed", detail: invalid[0]!.status === "rejected" ? invalid[0]!.detail : "invalid event", errors: [{ path: "(body)", message: "not a valid CloudEvent" }] });
  }
  const outcomes = [...(items.length ? await ingestRouted(c.env, SUBJECT_VIA, items, wallClock(c)) : []), ...invalid].sort((a, b) => a.index - b.index);
  const refused = outcomes.filter((o): o is Extract<RoutedOutcome, { status: "rejected" }> => o.status === "rejected");
  if (refused.some((o) => o.reason === "meter_unavailable")) return problem(c, { kind: "unavailable", detail: "a usage meter did not answer; resend the events (their ids make it safe)" });
  if (!refused.length) return c.body(null, 204);
  if (!batch) {
    const o = refused[0]!;
    const status = o.reason === "unknown_subscription" ? 404 : 422;
    return new Response(JSON.stringify({ type: PROBLEM, title: "Usage event rejected", status, detail: o.detail, reason: o.reason, instance: c.req.path, requestId: c.get("requestId"), errors: [{ path: "(event)", message: o.detail }] }), {
      status,
      headers: { "content-type": "application/problem+json" },
    });
  }
  const results = outcomes
    .filter((o) => o.status !== "accepted")
    .map((o) => (o.status === "duplicate" ? { index: o.index, id: o.eventId, status: "duplicate" as const } : { index: o.index, id: o.eventId, status: "rejected" as const, reason: o.reason, detail: o.detail, ...(o.retryable && { retryable: true }) }));
  const n = (s: string) => outcomes.filter((o) => o.status === s).length;
  return c.json({ accepted: n("accepted"), duplicates: n("duplicate"), rejected: n("rejected"), results }, 207);
});

const IngestedEvent = z
  .object({
    event: CloudEvent,
    customerId: z.string().optional(),
    ingestedAt: z.string(),
    storedAt: z.string(),
  })
  .openapi("IngestedCloudEvent");

openMeterRoutes.openapi(
  createRoute({
    method: "get",
    path: "/api/v1/events",
    operationId: "listCloudEvents",
    tags: ["Drop-in ingestion"],
    summary: "The events ingested for a subject in its current periods, newest first (OpenMeter compatible)",
    description:
      "Events are stored per subscription, so `subject` (a customer or subscription id) is required. Each stored event is given back as a CloudEvent: `type` is its meter's event name, `data` holds the value at the meter's valueProperty and the metadata kept (groupBy); the original `source` is not stored.",
    middleware: [requireScopeOrRole("usage:read", access.read)] as const,
    request: {
      query: z.object({
        subject: z.string().min(1).max(MAX_ID),
        limit: z.coerce.number().int().min(1).max(100).default(100),
        id: z.string().optional().openapi({ description: "Only events whose id contains this" }),
        from: z.string().optional().openapi({ description: "Event time lower bound, inclusive (ISO-8601)" }),
        to: z.string().optional().openapi({ description: "Event time upper bound, inclusive (ISO-8601)" }),
      }),
    },
    responses: { 200: jsonResponse(z.array(IngestedEvent), "Ingested events"), ...problems(400) },
  }),
  async (c) => {
    const q = c.req.valid("query");
    const now = services(c).clock.wall;
    const from = q.from ? Date.parse(q.from) : -Infinity;
    const to = q.to ? Date.parse(q.to) : Infinity;
    if (Number.isNaN(from) || Number.isNaN(to)) return problem(c, { kind: "validation_failed", detail: "from and to must be ISO-8601 date-times", errors: [{ path: "from", message: "invalid" }] });
    const resolved = await resolveSubject(c.env, { id: q.subject, via: SUBJECT_VIA }, now, true);
    const pages = await Promise.all(
      resolved.entries.map(async (entry) => {
        const out = await meterStub(c.env, entry.subscriptionId).events({ kind: "current" }, null, 100, null, now);
        return out.ok ? out.events.map((e) => ({ e, entry })) : [];
      }),
    );
    const rows = pages
      .flat()
      .filter(({ e }) => e.timestamp >= from && e.timestamp <= to && (!q.id || (e.eventId ?? "").includes(q.id)))
      .sort((a, b) => b.e.receivedAt - a.e.receivedAt)
      .slice(0, q.limit);
    return c.json(
      rows.map(({ e, entry }) => {
        const meter = entry.meters.find((m) => m.meterId === e.meterId);
        const valueKey = (meter?.valueProperty ?? "$.value").slice(2).split(".").at(-1)!;
        return {
          event: {
            specversion: "1.0" as const,
            id: e.eventId ?? e.dedupeKey,
            source: "billing-engine",
            type: meter?.eventName ?? e.meterId,
            subject: q.subject,
            time: iso(e.timestamp)!,
            data: { ...e.metadata, [valueKey]: Number(e.quantity) },
          },
          ...(resolved.customerId && { customerId: resolved.customerId }),
          ingestedAt: iso(e.receivedAt)!,
          storedAt: iso(e.receivedAt)!,
        };
      }),
      200,
    );
  },
);
