import { createRoute, z } from "@hono/zod-openapi";
import { and, eq } from "drizzle-orm";
import { access, requireRole } from "../../http/auth";
import { jsonResponse, listOf, optionalJsonBody, PaginationQuery, problems, router } from "../../http/openapi";
import { services } from "../../http/context";
import { problem, respond } from "../../http/problem";
import { conflict, notFound, ok, type Failure, type Outcome } from "../../platform/failure";
import type { Db } from "../../db/client";
import { commitWithAudit } from "../../platform/audit";
import { dbOf } from "../../db/client";
import { newestFirstPage } from "../../platform/pagination";
import { webhookEvents } from "../../db/schema";
import { iso } from "../../lib/time";
import { cleanupWebhookEvents } from "./cleanup";
import { receiveStripeEvent } from "./receive";
import { verifyStripeSignature } from "./verify";

export { applyStripeEvent } from "./apply";
export { cleanupWebhookEvents } from "./cleanup";

const Received = z.object({ received: z.literal(true), duplicate: z.literal(true).optional(), requeued: z.literal(true).optional() }).openapi("WebhookReceived");

const unverified: Failure<"bad_request"> = { kind: "bad_request", detail: "the Stripe-Signature header is missing or does not verify for this body" };

/** Public (Stripe calls it): the signature is the authentication. Mounted at /webhooks/stripe. */
export const stripeWebhookRoutes = router().openapi(
  createRoute({
    method: "post",
    path: "/",
    operationId: "receiveStripeWebhook",
    tags: ["Webhooks"],
    summary: "Receive a Stripe event",
    security: [],
    description:
      "Called by Stripe. The event is verified against the Stripe-Signature header (300 s tolerance), stored once and applied through the webhooks queue. Answers 400 when the signature is missing, forged or older than 300 s.",
    request: {
      headers: z.object({ "stripe-signature": z.string().optional().openapi({ description: "Stripe's signature over the raw body", example: "t=1719223200,v1=5257a869e7ec…" }) }),
      // A plain JSON Schema, not zod: a validator would parse the body first, and the signature covers the raw bytes.
      body: {
        required: true,
        description: "The Stripe event exactly as Stripe signed it",
        content: {
          "application/json": {
            schema: {
              type: "object",
              required: ["id", "type", "data"],
              properties: { id: { type: "string", example: "evt_1PQ" }, type: { type: "string", example: "payment_intent.succeeded" }, data: { type: "object" } },
            },
          },
        },
      },
    },
    responses: { 200: jsonResponse(Received, "Stored (or already stored) and queued"), ...problems(400, 503) },
  }),
  async (c) => {
    const raw = await c.req.text();
    const s = services(c);
    const verified = await verifyStripeSignature(c.env, raw, c.req.header("stripe-signature"), s.clock.wall);
    if (!verified.ok) {
      s.log.warn("stripe webhook refused", { reason: verified.reason });
      return problem(c, unverified);
    }
    return respond(c, await receiveStripeEvent(s, verified.event, raw), 200);
  },
);

const EventStatus = z.enum(["received", "processed", "failed", "ignored"]);
const WebhookEvent = z
  .object({ id: z.string(), source: z.string(), type: z.string(), status: EventStatus, error: z.string().nullable(), receivedAt: z.string(), processedAt: z.string().nullable() })
  .openapi("WebhookEvent");
type EventRow = typeof webhookEvents.$inferSelect;
const toEvent = (e: EventRow) => ({ id: e.id, source: e.source, type: e.type, status: e.status, error: e.error, receivedAt: iso(e.receivedAt), processedAt: iso(e.processedAt) });
const IdParam = z.object({ id: z.string().openapi({ param: { name: "id", in: "path" }, example: "evt_123" }) });
/** A stored Stripe event by its id. */
async function storedEvent(db: Db, id: string): Promise<Outcome<EventRow, "not_found">> {
  const row = await db.select().from(webhookEvents).where(eq(webhookEvents.id, id)).get();
  return row ? ok(row) : notFound("webhook event", id);
}

/** The event, unless it is processed or ignored (409): only a received or failed event is queued again. */
const replayable = (row: EventRow): Outcome<EventRow, "conflict"> =>
  row.status === "processed" || row.status === "ignored" ? conflict(`event ${row.id} is ${row.status}; there is nothing to replay`) : ok(row);

const Cleanup = z.object({ olderThanDays: z.coerce.number().int().min(1).max(3650).default(30).openapi({ example: 30 }) }).openapi("WebhookCleanup");

/** Mounted at /admin/webhooks. */
export const webhookAdminRoutes = router()
  .openapi(
    createRoute({
      method: "post",
      path: "/cleanup",
      operationId: "cleanupWebhookEvents",
      tags: ["Webhooks"],
      summary: "Delete old processed Stripe events",
      middleware: [requireRole(access.admin)] as const,
      description:
        "Deletes processed and ignored Stripe events older than `olderThanDays` (default 30). The runbook's daily script posts with no body and no Content-Type: the body is optional and read as JSON whatever its type.",
      request: optionalJsonBody(Cleanup),
      responses: { 200: jsonResponse(z.object({ deleted: z.number().int(), olderThanDays: z.number().int(), cutoff: z.string() }), "Deleted") },
    }),
    async (c) => {
      const { olderThanDays } = c.req.valid("json");
      return c.json(await cleanupWebhookEvents(services(c), olderThanDays), 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/events",
      operationId: "listWebhookEvents",
      tags: ["Webhooks"],
      summary: "List stored Stripe events",
      description: "Received Stripe events, newest first, filtered by `status` or `type`.",
      middleware: [requireRole(access.admin)] as const,
      request: { query: PaginationQuery.extend({ status: EventStatus.optional(), type: z.string().optional() }) },
      responses: { 200: jsonResponse(listOf(WebhookEvent), "Events") },
    }),
    async (c) => {
      const q = c.req.valid("query");
      const db = dbOf(c.env);
      const page = await newestFirstPage(
        db,
        { table: webhookEvents, id: webhookEvents.id, createdAt: webhookEvents.receivedAt },
        q,
        [q.status ? eq(webhookEvents.status, q.status) : undefined, q.type ? eq(webhookEvents.type, q.type) : undefined],
        toEvent,
      );
      return c.json(page, 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/events/{id}",
      operationId: "getWebhookEvent",
      tags: ["Webhooks"],
      summary: "Get a stored Stripe event",
      description: "One received Stripe event with its status, error and payload.",
      middleware: [requireRole(access.admin)] as const,
      request: { params: IdParam },
      responses: { 200: jsonResponse(WebhookEvent.extend({ payload: z.unknown() }), "Event"), ...problems(404) },
    }),
    async (c) => {
      const found = await storedEvent(dbOf(c.env), c.req.valid("param").id);
      if (!found.ok) return problem(c, found.error);
      const row = found.value;
      let payload: unknown = row.payload;
      try {
        payload = JSON.parse(row.payload);
      } catch {
        /* keep the text */
      }
      return c.json({ ...toEvent(row), payload }, 200);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/events/{id}/replay",
      operationId: "replayWebhookEvent",
      tags: ["Webhooks"],
      summary: "Replay a Stripe event",
      description: "Queues a received or failed event again (after fixing what it was waiting for); 409 when it was processed or ignored.",
      middleware: [requireRole(access.admin)] as const,
      request: { params: IdParam },
      responses: { 202: jsonResponse(WebhookEvent, "Queued"), ...problems(404, 409) },
    }),
    async (c) => {
      const s = services(c);
      const db = s.db;
      const id = c.req.valid("param").id;
      const found = await storedEvent(db, id);
      if (!found.ok) return problem(c, found.error);
      const live = replayable(found.value);
      if (!live.ok) return problem(c, live.error);
      const row = live.value;
      await commitWithAudit(db, [], [{ action: "webhook.replayed", targetType: "webhook_event", targetId: id, before: { status: row.status, error: row.error } }], s.audit);
      await s.queues.webhooks.send({ type: "stripe.event", eventId: id });
      return c.json(toEvent(row), 202);
    },
  );
