import { createRoute, z } from "@hono/zod-openapi";
import { access, actorOf, requireRole, requireScopeOrRole } from "../../http/auth";
import { jsonBody, jsonResponse, listOf, PaginationQuery, problemResponse, problems, router } from "../../http/openapi";
import { problem } from "../../http/problem";
import { bodyText } from "../../http/body-text";
import { MAX_KEY_LENGTH } from "../../http/idempotency";
import { fail, ok, type Failure, type Outcome } from "../../platform/failure";
import { services, wallClock } from "../../http/context";
import { commitWithAudit } from "../../platform/audit";
import { dbOf } from "../../db/client";
import { parseDecimal } from "../../domain/decimal";
import { money } from "../../domain/money";
import { maxPriceableQuantity, priceQuantity } from "../../domain/pricing";
import { iso } from "../../lib/time";
import { MAX_BATCH, parseEvent, type ParsedEvent } from "./events";
import { ingestEvents, summarise } from "./ingest";

import type { EventCursor, IngestOutcome, MeterAggregate, PeriodSelector } from "./meter-types";

const UsageEvent = z
  .object({
    subscriptionId: z.string().openapi({ example: "sub_123" }),
    meterId: z.string().openapi({ example: "api_calls" }),
    quantity: z.union([z.number(), z.string()]).openapi({ example: 1000, description: "Non-negative; up to 12 decimals" }),
    timestamp: z.string().optional().openapi({ example: "2024-06-24T10:00:00Z", description: "Defaults to now" }),
    metadata: z
      .record(z.string(), z.unknown())
      .optional()
      .openapi({ description: "At most 50 keys, each a string, number, boolean or null, and 32 KB as JSON", example: { region: "eu-west-1" } }),
    eventId: z.string().optional().openapi({ description: "Unique per subscription; a repeat is counted once" }),
  })
  .openapi("UsageEvent");

const IngestResult = z
  .object({
    accepted: z.number().int(),
    duplicates: z.number().int(),
    rejected: z.number().int(),
    results: z.array(
      z.object({ index: z.number().int(), eventId: z.string().nullable(), status: z.enum(["duplicate", "rejected"]), reason: z.string().optional(), detail: z.string().optional(), retryable: z.boolean().optional() }),
    ),
  })
  .openapi("UsageIngestResult");

const USAGE_EVENT_PROBLEM = "https://billing-engine.dev/problems/usage-event-rejected";

function resultsOf(outcomes: IngestOutcome[]) {
  return outcomes
    .filter((o) => o.status !== "accepted")
    .map((o) =>
      o.status === "duplicate"
        ? { index: o.index, eventId: o.eventId, status: "duplicate" as const }
        : { index: o.index, eventId: o.eventId, status: "rejected" as const, reason: o.reason, detail: o.detail, ...(o.retryable ? { retryable: true } : {}) },
    );
}

const SubscriptionParam = z.object({ subscriptionId: z.string().openapi({ param: { name: "subscriptionId", in: "path" }, example: "sub_123" }) });

function toSelector(period: string): Outcome<PeriodSelector, "validation_failed"> {
  if (period === "current") return ok({ kind: "current" });
  if (period === "previous") return ok({ kind: "previous" });
  const start = Date.parse(period);
  if (Number.isNaN(start)) return fail("validation_failed", "period must be current, previous or an ISO-8601 instant", [{ path: "period", message: "invalid" }]);
  return ok({ kind: "at", start });
}

/** The meter's answer for an unknown subscription or period, as the summary and events routes give it (404). */
const noMeterOrPeriod = (subscriptionId: string, error: string): Failure<"not_found"> =>
  error === "unknown_subscription"
    ? { kind: "not_found", detail: `subscription ${subscriptionId} does not exist or has no usage meter` }
    : { kind: "not_found", detail: "no such period for this subscription", errors: [{ path: "period", message: "no such period" }] };

export const usageRoutes = router();

// Relative to where the router is mounted, like every route: app.route("/api/v1/usage", …) adds the prefix.
usageRoutes.openAPIRegistry.registerPath({
  method: "post",
  path: "/",
  operationId: "ingestUsage",
  tags: ["Usage"],
  summary: "Record usage events",
  description:
    "One event, or a batch `{ events: [...] }` of up to 1,000. Authenticate with an API key (bek_…, scope usage:write) or an admin token. 202 when every event was stored or was a duplicate; 207 with per-event results when some were rejected; 400 when the body itself is malformed. Only non-accepted events are listed in results.",
  // Documented here, parsed by hand in the handler (parseEvent): the hot path's own parser, cheaper than a zod pass.
  request: {
    body: {
      required: true,
      description: "One event, or `{ events: [...] }` (1-1,000 events)",
      content: { "application/json": { schema: z.union([UsageEvent, z.object({ events: z.array(UsageEvent).min(1).max(MAX_BATCH) }).openapi("UsageEventBatch")]) } },
    },
  },
  responses: {
    202: jsonResponse(IngestResult, "All stored (or duplicates)"),
    207: jsonResponse(IngestResult, "Some events rejected"),
    ...problems(400, 401, 403),
    404: problemResponse("A single event names an unknown subscription"),
    413: problems(413)[413],
    422: problemResponse("A single event was rejected (`reason` says why: unknown meter, closed period, timestamp in the future…)"),
    503: problemResponse("A single event's meter is unavailable; retry"),
  },
});

usageRoutes.post("/", requireScopeOrRole("usage:write", access.admin), async (c) => {
  let body: unknown;
  try {
    // The text refuseCardNumbers already decoded: c.req.json() would wrap the bytes in a new Response and read that
    // back through the runtime's streams, which costs a single event as much as storing it.
    body = JSON.parse(await bodyText(c));
  } catch {
    return problem(c, { kind: "bad_request", detail: "body is not valid JSON", errors: [{ path: "(body)", message: "malformed JSON" }] });
  }
  const now = wallClock(c);
  const idempotencyKey = c.req.header("idempotency-key");
  // Checked here, not by the idempotency layer (usage is deduped per event by its meter): every event key carries it.
  if (idempotencyKey && idempotencyKey.length > MAX_KEY_LENGTH) {
    return problem(c, { kind: "bad_request", detail: `Idempotency-Key must be at most ${MAX_KEY_LENGTH} characters`, errors: [{ path: "Idempotency-Key", message: `at most ${MAX_KEY_LENGTH} characters` }] });
  }
  const isBatch = typeof body === "object" && body !== null && "events" in body;

  if (!isBatch) {
    const parsed = parseEvent(body, 0, idempotencyKey, now);
    if (!parsed.ok) return problem(c, { kind: "validation_failed", detail: parsed.errors.map((e) => `${e.path}: ${e.message}`).join("; "), errors: parsed.errors });
    const [outcome] = await ingestEvents(c.env, [parsed.event], now);
    if (outcome!.status === "rejected") {
      const status = outcome!.reason === "meter_unavailable" ? 503 : outcome!.reason === "unknown_subscription" ? 404 : 422;
      return new Response(
        JSON.stringify({ type: USAGE_EVENT_PROBLEM, title: "Usage event rejected", status, detail: outcome!.detail, reason: outcome!.reason, instance: c.req.path, requestId: c.get("requestId"), errors: [{ path: pathOf(outcome!.reason), message: outcome!.detail }] }),
        { status, headers: { "content-type": "application/problem+json" } },
      );
    }
    const s = summarise([outcome!]);
    return c.json({ accepted: s.accepted, duplicates: s.duplicates, rejected: 0, results: resultsOf(s.outcomes) }, 202);
  }

  const events = (body as { events: unknown }).events;
  if (!Array.isArray(events) || events.length === 0 || events.length > MAX_BATCH) {
    return problem(c, { kind: "validation_failed", detail: `events must be an array of 1-${MAX_BATCH} events`, errors: [{ path: "events", message: `must hold 1-${MAX_BATCH} events` }] });
  }
  const valid: ParsedEvent[] = [];
  const invalid: IngestOutcome[] = [];
  events.forEach((raw, i) => {
    const p = parseEvent(raw, i, idempotencyKey, now, `events.${i}.`);
    if (p.ok) valid.push(p.event);
    else {
      const eventId = typeof (raw as { eventId?: unknown })?.eventId === "string" ? (raw as { eventId: string }).eventId : null;
      invalid.push({ index: i, eventId, status: "rejected", reason: "invalid_event", detail: p.errors.map((e) => `${e.path}: ${e.message}`).join("; ") });
    }
  });
  const outcomes = valid.length ? await ingestEvents(c.env, valid, now) : [];
  const s = summarise([...outcomes, ...invalid]);
  return c.json({ accepted: s.accepted, duplicates: s.duplicates, rejected: s.rejected, results: resultsOf(s.outcomes) }, s.rejected ? 207 : 202);
});

function pathOf(reason: string): string {
  switch (reason) {
    case "unknown_subscription":
    case "subscription_canceled":
    case "subscription_paused":
      return "subscriptionId";
    case "unknown_meter":
      return "meterId";
    case "timestamp_in_future":
    case "before_subscription_start":
    case "period_closed":
      return "timestamp";
    case "missing_unique_field":
      return "metadata";
    case "invalid_quantity":
      return "quantity";
    default:
      return "(event)";
  }
}

const PriceOfUsage = z.object({
  amount: z.string(),
  amountMinor: z.number().int(),
  currency: z.string(),
  pricingModel: z.string(),
  explanation: z.string(),
  tiers: z.array(z.object({ tier: z.number(), units: z.string(), unitAmount: z.string(), flatAmount: z.string(), amount: z.string() })).optional(),
});

const Summary = z
  .object({
    subscriptionId: z.string(),
    currency: z.string(),
    period: z.object({ start: z.string(), end: z.string() }),
    meters: z.array(
      z.object({
        meterId: z.string(),
        aggregation: z.string(),
        value: z.string(),
        eventCount: z.number().int(),
        closed: z.boolean(),
        resetAt: z.string().nullable(),
        price: PriceOfUsage,
      }),
    ),
    total: z.object({ amount: z.string(), amountMinor: z.number().int(), currency: z.string() }),
  })
  .openapi("UsageSummary");

usageRoutes.openapi(
  createRoute({
    method: "get",
    path: "/{subscriptionId}/summary",
    tags: ["Usage"],
    operationId: "getUsageSummary",
    summary: "Usage summary of a period",
    description: "Per-meter usage of a period and what it would bill at, with the plan's prices.",
    middleware: [requireScopeOrRole("usage:read", access.read)] as const,
    request: {
      params: SubscriptionParam,
      query: z.object({ period: z.string().default("current").openapi({ description: "current, previous, or an ISO-8601 instant inside (or at the start of) the period" }) }),
    },
    responses: { 200: jsonResponse(Summary, "Usage summary"), ...problems(400, 404, 409) },
  }),
  async (c) => {
    const { subscriptionId } = c.req.valid("param");
    const s = services(c);
    const selector = toSelector(c.req.valid("query").period);
    if (!selector.ok) return problem(c, selector.error);
    const out = await s.meters.of(subscriptionId).summary(selector.value, s.clock.wall);
    if (!out.ok) return problem(c, noMeterOrPeriod(subscriptionId, out.error));
    const currency = out.config.currency;
    let totalMinor = 0;
    // The meter keeps a period's total billable under the price it holds; a later, dearer price (a plan change) can
    // still take it past what an amount can be: said as a conflict, not a failure.
    const unpriceable = out.meters.find((m: MeterAggregate) => {
      const spec = out.config.meters.find((x) => x.meterId === m.meterId)!;
      const qty = parseDecimal(m.value);
      const limit = maxPriceableQuantity(spec, currency, Number.MAX_SAFE_INTEGER);
      return limit !== null && qty.ok && qty.value > limit;
    });
    if (unpriceable) {
      return problem(c, {
        kind: "conflict",
        detail: `meter ${unpriceable.meterId}'s ${unpriceable.aggregation} for the period (${unpriceable.value}) is more than its current price can bill`,
        errors: [{ path: "period", message: `meter ${unpriceable.meterId} cannot be priced` }],
      });
    }
    const meters = out.meters.map((m: MeterAggregate) => {
      const spec = out.config.meters.find((x) => x.meterId === m.meterId)!;
      const qty = parseDecimal(m.value);
      const priced = priceQuantity(spec, qty.ok ? qty.value : 0n, currency);
      totalMinor += priced.amountMinor;
      return {
        meterId: m.meterId,
        aggregation: m.aggregation,
        value: m.value,
        eventCount: m.eventCount,
        closed: m.closed,
        resetAt: iso(m.resetAt),
        price: { ...money(priced.amountMinor, currency), pricingModel: spec.pricingModel, explanation: priced.explanation, ...(priced.tiers ? { tiers: priced.tiers } : {}) },
      };
    });
    return c.json({ subscriptionId, currency, period: { start: iso(out.periodStart), end: iso(out.periodEnd) }, meters, total: money(totalMinor, currency) }, 200);
  },
);

const StoredEventView = z
  .object({
    eventId: z.string().nullable(),
    dedupeKey: z.string().openapi({ description: "What made the event unique: id:<eventId>, idem:<Idempotency-Key>:<index>, or gen:<uuid>" }),
    meterId: z.string(),
    quantity: z.string(),
    timestamp: z.string(),
    receivedAt: z.string(),
    metadata: z.record(z.string(), z.unknown()).nullable(),
  })
  .openapi("StoredUsageEvent");

const encodeCursor = (c: EventCursor) => `${c.receivedAt}.${c.seq}`;
function decodeCursor(raw: string | undefined): Outcome<EventCursor | null, "validation_failed"> {
  if (raw === undefined) return ok(null);
  const m = /^(\d{1,16})\.(\d{1,16})$/.exec(raw);
  if (!m) return fail("validation_failed", "startingAfter must be the nextCursor of a previous page", [{ path: "startingAfter", message: "not a cursor from this list" }]);
  return ok({ receivedAt: Number(m[1]), seq: Number(m[2]) });
}

usageRoutes.openapi(
  createRoute({
    method: "get",
    path: "/{subscriptionId}/events",
    tags: ["Usage"],
    operationId: "listUsageEvents",
    summary: "List a period's usage events",
    description: "The stored events of a period, newest arrival first: what a summary's figures are made of. Events received before a meter's reset (see the summary's resetAt) are kept here but no longer counted.",
    middleware: [requireScopeOrRole("usage:read", access.read)] as const,
    request: {
      params: SubscriptionParam,
      query: PaginationQuery.extend({
        period: z.string().default("current").openapi({ description: "current, previous, or an ISO-8601 instant inside (or at the start of) the period" }),
        meterId: z.string().min(1).max(64).optional(),
      }),
    },
    responses: { 200: jsonResponse(listOf(StoredEventView).extend({ period: z.object({ start: z.string(), end: z.string() }) }), "A page of events"), ...problems(400, 404) },
  }),
  async (c) => {
    const { subscriptionId } = c.req.valid("param");
    const q = c.req.valid("query");
    const s = services(c);
    const selector = toSelector(q.period);
    if (!selector.ok) return problem(c, selector.error);
    const cursor = decodeCursor(q.startingAfter);
    if (!cursor.ok) return problem(c, cursor.error);
    const out = await s.meters.of(subscriptionId).events(selector.value, q.meterId ?? null, q.limit, cursor.value, s.clock.wall);
    if (!out.ok) return problem(c, noMeterOrPeriod(subscriptionId, out.error));
    return c.json(
      {
        period: { start: iso(out.periodStart), end: iso(out.periodEnd) },
        data: out.events.map((e) => ({ ...e, timestamp: iso(e.timestamp), receivedAt: iso(e.receivedAt) })),
        hasMore: out.next !== null,
        nextCursor: out.next ? encodeCursor(out.next) : null,
      },
      200,
    );
  },
);

usageRoutes.openapi(
  createRoute({
    method: "post",
    path: "/reset",
    tags: ["Usage"],
    operationId: "resetUsageMeter",
    summary: "Reset a usage meter",
    description: "Zeroes a meter for the open period; its events are kept. Audited.",
    middleware: [requireRole(access.admin)] as const,
    request: jsonBody(z.object({ subscriptionId: z.string().min(1), meterId: z.string().min(1), reason: z.string().max(500).optional() })),
    responses: {
      200: jsonResponse(
        z.object({ subscriptionId: z.string(), meterId: z.string(), period: z.object({ start: z.string(), end: z.string() }), before: z.object({ value: z.string(), eventCount: z.number() }), resetAt: z.string() }),
        "The meter was reset",
      ),
      ...problems(404, 422),
    },
  }),
  async (c) => {
    const { subscriptionId, meterId, reason } = c.req.valid("json");
    const s = services(c);
    const ctx = s.audit;
    const out = await s.meters.of(subscriptionId).reset(meterId, actorOf(c).id, reason ?? null, ctx.now);
    if (!out.ok) {
      if (out.error === "unknown_meter") return problem(c, { kind: "unprocessable", detail: `subscription ${subscriptionId} has no meter ${meterId}`, errors: [{ path: "meterId", message: "unknown meter" }] });
      return problem(c, { kind: "not_found", detail: `subscription ${subscriptionId} does not exist or has no usage meter`, errors: [{ path: "subscriptionId", message: "unknown subscription" }] });
    }
    await commitWithAudit(
      dbOf(c.env),
      [],
      [{ action: "usage.reset", targetType: "subscription", targetId: subscriptionId, before: { meterId, value: out.before.value, eventCount: out.before.eventCount, periodStart: iso(out.before.periodStart) }, after: { meterId, value: out.after.value }, ...(reason ? { reason } : {}) }],
      ctx,
    );
    return c.json(
      { subscriptionId, meterId, period: { start: iso(out.before.periodStart), end: iso(out.before.periodEnd) }, before: { value: out.before.value, eventCount: out.before.eventCount }, resetAt: iso(ctx.now) },
      200,
    );
  },
);
