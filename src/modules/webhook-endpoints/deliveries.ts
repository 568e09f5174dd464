import { asc, eq, inArray } from "drizzle-orm";
import type { Services } from "../../platform/services";
import { z } from "@hono/zod-openapi";
import type { Db } from "../../db/client";
import { commitWithAudit } from "../../platform/audit";
import { newestFirstPage, type PageQuery } from "../../platform/pagination";
import { events, webhookDeliveries, webhookDeliveryAttempts } from "../../db/schema";
import { conflict, notFound, ok, type Outcome } from "../../platform/failure";
import { iso } from "../../lib/time";
import { eventInsert, eventRow, toEvent } from "../../platform/events";
import { deliverNow, type DeliveryRow } from "./delivery";
import { getEndpointRow, toEndpoint, type EndpointRow } from "./service";

type AttemptRow = typeof webhookDeliveryAttempts.$inferSelect;

export const DeliveryAttempt = z
  .object({ id: z.string(), at: z.string(), statusCode: z.number().int().nullable(), latencyMs: z.number().int(), error: z.string().nullable() })
  .openapi("WebhookDeliveryAttempt");

export const WebhookDelivery = z
  .object({
    id: z.string(),
    object: z.literal("webhook_delivery"),
    eventId: z.string(),
    eventType: z.string().nullable(),
    endpointId: z.string(),
    status: z.enum(["pending", "succeeded", "failed"]),
    attemptCount: z.number().int(),
    nextAttemptAt: z.string().nullable(),
    lastStatusCode: z.number().int().nullable(),
    lastError: z.string().nullable(),
    createdAt: z.string(),
    updatedAt: z.string(),
    attempts: z.array(DeliveryAttempt).openapi({ description: "Oldest first" }),
  })
  .openapi("WebhookDelivery");

const toAttempt = (a: AttemptRow) => ({ id: a.id, at: iso(a.at), statusCode: a.statusCode, latencyMs: a.latencyMs, error: a.error });

function toDelivery(d: DeliveryRow, eventType: string | null, attempts: AttemptRow[]): z.infer<typeof WebhookDelivery> {
  return {
    id: d.id,
    object: "webhook_delivery",
    eventId: d.eventId,
    eventType,
    endpointId: d.endpointId,
    status: d.status,
    attemptCount: d.attempts,
    nextAttemptAt: iso(d.nextAttemptAt),
    lastStatusCode: d.lastStatusCode,
    lastError: d.lastError,
    createdAt: iso(d.createdAt),
    updatedAt: iso(d.updatedAt),
    attempts: attempts.map(toAttempt),
  };
}

/** Deliveries with their attempts and event types, read in pages of ids that stay under D1's parameter limit. */
async function withDetails(db: Db, rows: DeliveryRow[]) {
  const attempts: AttemptRow[] = [];
  const types = new Map<string, string>();
  for (let i = 0; i < rows.length; i += 50) {
    const part = rows.slice(i, i + 50);
    attempts.push(
      ...(await db.select().from(webhookDeliveryAttempts).where(inArray(webhookDeliveryAttempts.deliveryId, part.map((r) => r.id))).orderBy(asc(webhookDeliveryAttempts.at), asc(webhookDeliveryAttempts.id)).all()),
    );
    for (const e of await db.select({ id: events.id, type: events.type }).from(events).where(inArray(events.id, part.map((r) => r.eventId))).all()) types.set(e.id, e.type);
  }
  return rows.map((r) => toDelivery(r, types.get(r.eventId) ?? null, attempts.filter((a) => a.deliveryId === r.id)));
}

export async function listDeliveries(db: Db, endpointId: string, q: PageQuery & { status?: DeliveryRow["status"] | undefined; eventId?: string | undefined }) {
  const endpoint = await getEndpointRow(db, endpointId);
  if (!endpoint.ok) return endpoint;
  const page = await newestFirstPage(
    db,
    { table: webhookDeliveries, id: webhookDeliveries.id, createdAt: webhookDeliveries.createdAt, scope: eq(webhookDeliveries.endpointId, endpointId) },
    q,
    [q.status ? eq(webhookDeliveries.status, q.status) : undefined, q.eventId ? eq(webhookDeliveries.eventId, q.eventId) : undefined],
    (r) => r,
  );
  return ok({ ...page, data: await withDetails(db, page.data) });
}

/** The endpoint, unless it is disabled (409): a manual send goes to an enabled endpoint only. */
async function deliverable(db: Db, endpointId: string): Promise<Outcome<EndpointRow, "not_found" | "conflict">> {
  const found = await getEndpointRow(db, endpointId);
  if (!found.ok) return found;
  if (found.value.disabled) return conflict(`webhook endpoint ${endpointId} is disabled; enable it first (PATCH disabled: false)`, [{ path: "disabled", message: "is true" }]);
  return found;
}

/** Sends one event to one endpoint now (a resend); retries follow if it fails. Answers the delivery with its attempts. */
export async function resendEvent(s: Services, eventId: string, endpointId: string) {
  const { db, audit: ctx } = s;
  const event = await db.select({ id: events.id, type: events.type }).from(events).where(eq(events.id, eventId)).get();
  if (!event) return notFound("event", eventId);
  const endpoint = await deliverable(db, endpointId);
  if (!endpoint.ok) return endpoint;
  const { delivery } = await deliverNow(s, eventId, endpointId, ctx.now);
  const [out] = await withDetails(db, [delivery]);
  return ok(out!);
}

/** A `test.webhook` event sent to this endpoint only (never fanned out to others), delivered now. */
export async function sendTestEvent(s: Services, endpointId: string) {
  const { db, audit: ctx } = s;
  const found = await deliverable(db, endpointId);
  if (!found.ok) return found;
  const endpoint = found.value;
  const row = eventRow({ type: "test.webhook", objectType: "webhook_endpoint", objectId: endpoint.id, object: toEndpoint(endpoint) }, ctx);
  await commitWithAudit(db, [eventInsert(db, row)], [{ action: "webhook_endpoint.test_sent", targetType: "webhook_endpoint", targetId: endpoint.id, after: { eventId: row.id } }], ctx);
  const { delivery } = await deliverNow(s, row.id, endpoint.id, ctx.now);
  const [out] = await withDetails(db, [delivery]);
  return ok({ event: toEvent(row), delivery: out! });
}

