import { and, asc, eq, lt, notExists, sql } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type { Db } from "../../db/client";
import { events, notifications } from "../../db/schema";
import type { AuditContext } from "../../platform/audit";
import { eventInsert, eventInsertIfChanged, eventRow, eventsCommitted, type EventDraft, type EventRow } from "../../platform/events";
import { iso } from "../../lib/time";

/**
 * Customer notifications are one consumer of the event stream: every notification row is written with a
 * `customer.notification` event in the same batch, and the built-in webhook endpoint `we_notifications`
 * (NOTIFY_WEBHOOK_URL, signed with NOTIFY_WEBHOOK_SECRET) delivers it with the endpoints' machinery.
 */
export const NOTIFICATION_EVENT = "customer.notification" as const;
export const NOTIFICATIONS_ENDPOINT_ID = "we_notifications";

type Row = typeof notifications.$inferSelect;
export type NewNotification = typeof notifications.$inferInsert;

/** A notification as GET /admin/notifications returns it (and as its event's `data.object`). */
export const notificationObject = (r: Row) => ({
  id: r.id,
  kind: r.kind,
  template: r.template,
  customerId: r.customerId,
  invoiceId: r.invoiceId,
  status: r.status,
  attempts: r.attempts,
  lastError: r.lastError,
  createdAt: iso(r.createdAt),
  sentAt: iso(r.sentAt),
  payload: r.payload,
});

const asRow = (n: NewNotification): Row => ({ invoiceId: null, sentAt: null, attempts: 0, lastError: null, ...n }) as Row;

export function notificationEvent(n: NewNotification): EventDraft {
  return { type: NOTIFICATION_EVENT, objectType: "notification", objectId: n.id, customerId: n.customerId, object: notificationObject(asRow(n)) };
}

const NOTIFICATIONS_PER_INSERT = 9; // 10 columns × 9 rows stays under D1's 100 bound parameters
const EVENTS_PER_INSERT = 11; // 9 columns × 11 rows

/**
 * The rows' inserts and their `customer.notification` events, for the caller's batch (outbox: no notification without
 * its event). `ignoreDuplicates`: a row whose dedupe key exists is skipped, and so is its event (each event is
 * written only when the insert just before it added its row).
 */
export function notificationInserts(db: Db, rows: NewNotification[], ctx: Pick<AuditContext, "now" | "requestId">, opts: { ignoreDuplicates?: boolean } = {}) {
  const eventRows: EventRow[] = rows.map((n) => eventRow(notificationEvent(n), ctx));
  const statements: BatchItem<"sqlite">[] = [];
  if (opts.ignoreDuplicates) {
    rows.forEach((n, i) => statements.push(db.insert(notifications).values(n).onConflictDoNothing(), eventInsertIfChanged(db, eventRows[i]!)));
  } else {
    for (let i = 0; i < rows.length; i += NOTIFICATIONS_PER_INSERT) statements.push(db.insert(notifications).values(rows.slice(i, i + NOTIFICATIONS_PER_INSERT)));
    for (let i = 0; i < eventRows.length; i += EVENTS_PER_INSERT) statements.push(db.insert(events).values(eventRows.slice(i, i + EVENTS_PER_INSERT)));
  }
  return { statements, eventIds: eventRows.map((e) => e.id) };
}

/** After the batch committed: the notifications' events go to delivery (a lost hand-off is swept up hourly). */
export function notificationsCommitted(eventIds: string[]): void {
  eventsCommitted(eventIds, eventIds.map(() => NOTIFICATION_EVENT));
}

/**
 * Hourly: queued notifications without any `customer.notification` event (written before notifications became
 * events, or by a writer that missed it) get one now, so the built-in endpoint delivers them. Bounded per run.
 */
export async function adoptNotificationsWithoutEvent(db: Db, now: number, limit = 200, ids?: string[]): Promise<number> {
  const rows = await db
    .select()
    .from(notifications)
    .where(
      and(
        eq(notifications.status, "queued"),
        ids ? sql`${notifications.id} IN (${sql.join(ids.map((id) => sql`${id}`), sql`, `)})` : lt(notifications.createdAt, now),
        notExists(db.select({ one: sql`1` }).from(events).where(and(eq(events.objectId, notifications.id), eq(events.type, NOTIFICATION_EVENT)))),
      ),
    )
    .orderBy(asc(notifications.createdAt))
    .limit(limit)
    .all();
  if (!rows.length) return 0;
  const eventRows = rows.map((r) => eventRow({ ...notificationEvent(r), object: notificationObject(r) }, { now }));
  for (let i = 0; i < eventRows.length; i += 50) {
    const part = eventRows.slice(i, i + 50);
    await db.batch(part.map((e) => eventInsert(db, e)) as [BatchItem<"sqlite">, ...BatchItem<"sqlite">[]]);
  }
  notificationsCommitted(eventRows.map((e) => e.id));
  return rows.length;
}
