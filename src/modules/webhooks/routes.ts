import { createRoute, z } from "@hono/zod-openapi";
import { and, eq } from "drizzle-orm";
import { access, requireRole } from "../../http/auth";
import { errorResponses, jsonResponse, listOf, PaginationQuery, router } from "../../http/openapi";
import { lenientJson } from "../../http/lenient-json";
import { auditCtx } from "../../http/context";
import { ApiError, notFound } from "../../http/problem";
import { commitWithAudit } from "../../platform/audit";
import { dbOf } from "../../db/client";
import { newestFirstPage } from "../../platform/pagination";
import { webhookEvents } from "../../db/schema";
import { iso } from "../../lib/time";
import type { WebhookMessage } from "../../../queues/messages";
import { cleanupWebhookEvents } from "./cleanup";
import { receiveStripeEvent } from "./receive";
import { verifyStripeSignature } from "./verify";

export { applyStripeEvent } from "./apply";
export { cleanupWebhookEvents } from "./cleanup";

const Received = z.object({ received: z.literal(true), duplicate: z.literal(true).optional(), requeued: z.literal(true).optional() }).openapi("WebhookReceived");

/** Public (Stripe calls it): the signature is the authentication. Mounted at /webhooks/stripe. */
export const stripeWebhookRoutes = router().openapi(
  createRoute({
    method: "post",
    path: "/",
    tags: ["Webhooks"],
    summary: "Stripe events: verified against Stripe-Signature (300 s tolerance), stored once, applied through the webhooks queue",
    security: [],
    // No body schema on purpose: a validator would parse the body first, and the signature covers the raw bytes.
    description: "Body: the Stripe event exactly as Stripe signed it. Answers 400 when the signature is missing, forged or older than 300 s.",
    responses: { 200: jsonResponse(Received, "Stored (or already stored) and queued"), ...errorResponses },
  }),
  async (c) => {
    const raw = await c.req.text();
    const now = Date.now();
    const verified = await verifyStripeSignature(c.env, raw, c.req.header("stripe-signature"), now);
    if (!verified.ok) {
      console.log(JSON.stringify({ level: "warn", msg: "stripe webhook refused", requestId: c.get("requestId"), reason: verified.reason }));
      throw new ApiError("bad_request", "the Stripe-Signature header is missing or does not verify for this body");
    }
    return c.json(await receiveStripeEvent(c.env, dbOf(c.env), verified.event, raw, now), 200);
  },
);

const EventStatus = z.enum(["received", "processed", "failed", "ignored"]);
const WebhookEvent = z
  .object({ id: z.string(), source: z.string(), type: z.string(), status: EventStatus, error: z.string().nullable(), receivedAt: z.string(), processedAt: z.string().nullable() })
  .openapi("WebhookEvent");
type EventRow = typeof webhookEvents.$inferSelect;
const toEvent = (e: EventRow) => ({ id: e.id, source: e.source, type: e.type, status: e.status, error: e.error, receivedAt: iso(e.receivedAt), processedAt: iso(e.processedAt) });
const IdParam = z.object({ id: z.string().openapi({ param: { name: "id", in: "path" }, example: "evt_123" }) });
const Cleanup = z.object({ olderThanDays: z.coerce.number().int().min(1).max(3650).default(30) });

/** Mounted at /admin/webhooks. */
export const webhookAdminRoutes = router()
  .openapi(
    createRoute({
      method: "post",
      path: "/cleanup",
      tags: ["Webhooks"],
      summary: "Delete processed and ignored Stripe events older than olderThanDays (default 30)",
      middleware: [requireRole(access.admin)] as const,
      // Parsed leniently: the runbook's daily script posts with no body and no Content-Type.
      description: "Body (JSON, any Content-Type, optional): { olderThanDays }",
      responses: { 200: jsonResponse(z.object({ deleted: z.number().int(), olderThanDays: z.number().int(), cutoff: z.string() }), "Deleted"), ...errorResponses },
    }),
    async (c) => {
      const { olderThanDays } = await lenientJson(c, Cleanup);
      const ctx = auditCtx(c);
      return c.json(await cleanupWebhookEvents(c.env, dbOf(c.env), olderThanDays, ctx.now, ctx), 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/events",
      tags: ["Webhooks"],
      summary: "Stored Stripe events, newest first",
      middleware: [requireRole(access.admin)] as const,
      request: { query: PaginationQuery.extend({ status: EventStatus.optional(), type: z.string().optional() }) },
      responses: { 200: jsonResponse(listOf(WebhookEvent), "Events"), ...errorResponses },
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
      tags: ["Webhooks"],
      summary: "One stored Stripe event with its payload",
      middleware: [requireRole(access.admin)] as const,
      request: { params: IdParam },
      responses: { 200: jsonResponse(WebhookEvent.extend({ payload: z.unknown() }), "Event"), ...errorResponses },
    }),
    async (c) => {
      const row = await dbOf(c.env).select().from(webhookEvents).where(eq(webhookEvents.id, c.req.valid("param").id)).get();
      if (!row) throw notFound("webhook event", c.req.valid("param").id);
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
      tags: ["Webhooks"],
      summary: "Queue a received or failed event again (after fixing what it was waiting for)",
      middleware: [requireRole(access.admin)] as const,
      request: { params: IdParam },
      responses: { 202: jsonResponse(WebhookEvent, "Queued"), ...errorResponses },
    }),
    async (c) => {
      const db = dbOf(c.env);
      const id = c.req.valid("param").id;
      const row = await db.select().from(webhookEvents).where(eq(webhookEvents.id, id)).get();
      if (!row) throw notFound("webhook event", id);
      if (row.status === "processed" || row.status === "ignored") throw new ApiError("conflict", `event ${id} is ${row.status}; there is nothing to replay`);
      await commitWithAudit(db, [], [{ action: "webhook.replayed", targetType: "webhook_event", targetId: id, before: { status: row.status, error: row.error } }], auditCtx(c));
      await c.env.WEBHOOK_QUEUE.send({ type: "stripe.event", eventId: id } satisfies WebhookMessage);
      return c.json(toEvent(row), 202);
    },
  );
