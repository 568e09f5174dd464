import { z } from "@hono/zod-openapi";
import type { Services } from "../../platform/services";
import { and, eq } from "drizzle-orm";
import type { Db } from "../../db/client";
import { commitWithAudit } from "../../platform/audit";
import { assertChanged, isAssertionFailure } from "../../db/assert";
import { newestFirstPage } from "../../platform/pagination";
import { notifications } from "../../db/schema";
import { PaginationQuery } from "../../http/openapi";
import { conflict, fail, ok, type Outcome } from "../../platform/failure";
import { notificationEvent, notificationObject, notificationsCommitted } from "./outbox";
import { eventInsert, eventRow } from "../../platform/events";

const statuses = ["queued", "sent", "failed"] as const;

export const NotificationView = z
  .object({
    id: z.string(),
    kind: z.string().openapi({ example: "invoice.reminder" }),
    template: z.string(),
    customerId: z.string(),
    invoiceId: z.string().nullable(),
    status: z.enum(statuses).openapi({ description: "queued: waiting for delivery or a retry; sent: the webhook answered 2xx; failed: given up (see lastError)" }),
    attempts: z.number().int(),
    lastError: z.string().nullable(),
    createdAt: z.string(),
    sentAt: z.string().nullable(),
    payload: z.record(z.string(), z.unknown()),
  })
  .openapi("Notification");

export const NotificationListQuery = PaginationQuery.extend({
  status: z.enum(statuses).optional(),
  customerId: z.string().optional(),
  invoiceId: z.string().optional(),
});

type Row = typeof notifications.$inferSelect;
const view = (r: Row): z.infer<typeof NotificationView> => notificationObject(r);

/** Newest first; support uses `status=failed` to see what customers were not told, and why. */
export async function listNotifications(db: Db, q: z.infer<typeof NotificationListQuery>) {
  return newestFirstPage(
    db,
    { table: notifications, id: notifications.id, createdAt: notifications.createdAt },
    q,
    [
      q.status ? eq(notifications.status, q.status) : undefined,
      q.customerId ? eq(notifications.customerId, q.customerId) : undefined,
      q.invoiceId ? eq(notifications.invoiceId, q.invoiceId) : undefined,
    ],
    view,
  );
}

/**
 * A failed notification goes back to the queue with fresh attempts (e.g. once delivery is configured or fixed): a new
 * `customer.notification` event in the same batch, delivered with a fresh retry window (same `webhook-id`).
 */
export async function resendNotification(s: Services, id: string): Promise<Outcome<ReturnType<typeof view>, "not_found" | "conflict">> {
  const { db, audit: ctx } = s;
  const row = await db.select().from(notifications).where(eq(notifications.id, id)).get();
  if (!row) return fail("not_found", `no notification ${id}`, [{ path: "id", message: "unknown notification" }]);
  if (row.status !== "failed") {
    return conflict(`notification ${id} is ${row.status}; only a failed notification can be sent again`, [{ path: "id", message: `status is ${row.status}` }]);
  }
  const queued: Row = { ...row, status: "queued", attempts: 0, lastError: null };
  const event = eventRow({ ...notificationEvent(queued), object: notificationObject(queued) }, ctx);
  try {
    await commitWithAudit(
      db,
      [
        db.update(notifications).set({ status: "queued", attempts: 0, lastError: null }).where(and(eq(notifications.id, id), eq(notifications.status, "failed"))),
        assertChanged(db),
        eventInsert(db, event),
      ],
      [{ action: "notification.resend", targetType: "notification", targetId: id, before: { status: row.status, attempts: row.attempts, lastError: row.lastError }, after: { status: "queued" } }],
      ctx,
    );
  } catch (e) {
    if (!isAssertionFailure(e)) throw e;
    return conflict(`notification ${id} changed while it was being re-sent; fetch it again`, [{ path: "id", message: "changed concurrently" }]);
  }
  notificationsCommitted([event.id]);
  return ok(view(queued));
}
