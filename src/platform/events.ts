import type { BatchItem } from "drizzle-orm/batch";
import { env as workerEnv, waitUntil } from "cloudflare:workers";
import type { Db } from "../db/client";
import { events } from "../db/schema";
import { insertRow, insertRowIfChanged, insertRows } from "../db/prepared";
import { sortableId } from "../lib/ids";
import type { AuditContext } from "./audit";

/** Every event type the engine emits (Stripe's names where Stripe has one). */
export const eventTypes = [
  "customer.created",
  "customer.updated",
  "customer.deleted",
  "customer.subscription.created",
  "customer.subscription.updated",
  "customer.subscription.trial_will_end",
  "customer.subscription.paused",
  "customer.subscription.resumed",
  "customer.subscription.deleted",
  "invoice.created",
  "invoice.finalized",
  "invoice.paid",
  "invoice.payment_failed",
  "invoice.voided",
  "invoice.marked_uncollectible",
  "invoice.upcoming",
  "invoice.updated",
  "payment.succeeded",
  "payment.failed",
  "refund.created",
  "refund.succeeded",
  "refund.failed",
  "charge.refunded",
  "credit_note.created",
  "credit_note.voided",
  "usage.threshold_crossed",
  "payments.frozen",
  "payments.queue_mode",
  "payments.resumed",
  "webhook_endpoint.disabled",
  "test.webhook",
  // --- notify ---
  /** A customer notification was queued (the built-in endpoint delivers it to NOTIFY_WEBHOOK_URL). */
  "customer.notification",
  // --- credits ---
  "coupon.created",
  "coupon.deleted",
  "promotion_code.created",
  "promotion_code.updated",
  "customer.discount.created",
  "customer.discount.deleted",
  "billing.credit_grant.created",
  "billing.credit_grant.updated",
  "billing.credit_balance_transaction.created",
] as const;
export type EventType = (typeof eventTypes)[number];

/**
 * What a lifecycle owner emits: the object as the REST API returns it after the change, and the attributes that
 * changed with their previous values (Stripe's `previous_attributes`).
 */
export type EventDraft = {
  type: EventType;
  objectType: string;
  objectId: string;
  customerId?: string | null;
  object: unknown;
  previousAttributes?: Record<string, unknown> | null;
  /** False for objects on a test clock; otherwise live in production only. */
  livemode?: boolean;
  /**
   * The test clock the object lives on: the event is stamped in the clock's frozen time (as Stripe does) and is
   * never live. `commit()` reads the clock's time when `at` is not given.
   */
  testClockId?: string | null;
  /** When the change happened in the object's time (a test clock's frozen time); default: the context's `now`. */
  at?: number;
};

export type EventRow = typeof events.$inferSelect;

const liveEnvironment = () => (workerEnv as Partial<Env>).ENVIRONMENT === "production";

/** The event's row; goes into the same batch as the change that causes it (outbox: no change without its event). */
export function eventRow(draft: EventDraft, ctx: Pick<AuditContext, "now" | "requestId">): EventRow {
  const createdAt = draft.at ?? ctx.now;
  return {
    // Sorts by createdAt, then in creation order within the isolate: list order, id order and time order agree.
    id: sortableId("evt", createdAt),
    type: draft.type,
    objectType: draft.objectType,
    objectId: draft.objectId,
    customerId: draft.customerId ?? null,
    livemode: draft.livemode ?? (draft.testClockId ? false : liveEnvironment()),
    requestId: ctx.requestId ?? null,
    data: { object: draft.object, previousAttributes: draft.previousAttributes ?? null },
    createdAt,
  };
}

/**
 * The drafts with their time in their object's clock, as the context's clock (`clockOf`, from the services context)
 * tells it: drafts on a test clock without `at` get the clock's frozen time; a clock that no longer exists leaves the
 * context's time.
 */
export async function inClockTime(clockOf: (testClockId: string) => Promise<number | null>, drafts: EventDraft[]): Promise<EventDraft[]> {
  const ids = [...new Set(drafts.filter((d) => d.testClockId && d.at === undefined).map((d) => d.testClockId!))];
  if (!ids.length) return drafts;
  const time = new Map<string, number>();
  for (const id of ids) {
    const t = await clockOf(id);
    if (t !== null) time.set(id, t);
  }
  return drafts.map((d) => (d.testClockId && d.at === undefined && time.has(d.testClockId) ? { ...d, at: time.get(d.testClockId)! } : d));
}

// Prepared SQL (src/db/prepared.ts): several events per subscription on the billing run's hot path.
export function eventInsert(db: Db, row: EventRow): BatchItem<"sqlite"> {
  return insertRow(db, events, row);
}

/** Several events' inserts, as few statements as D1's bound-parameter limit allows (11 events a statement). */
export function eventInserts(db: Db, rows: EventRow[]): BatchItem<"sqlite">[] {
  return insertRows(db, events, rows);
}

/** The public shape of an event (ISO time, Stripe-style field names). */
export function toEvent(row: EventRow) {
  return {
    id: row.id,
    object: "event" as const,
    type: row.type,
    createdAt: new Date(row.createdAt).toISOString(),
    livemode: row.livemode,
    requestId: row.requestId,
    data: { object: row.data.object, previousAttributes: row.data.previousAttributes },
  };
}

/** `types`, when the caller knows them (`commit()` does): lets delivery skip endpoints nobody subscribed. */
type CommittedListener = (env: Env, eventIds: string[], types?: readonly string[]) => Promise<void>;
let onCommitted: CommittedListener | null = null;

/** The delivery machinery registers here to hear of committed events (at most one listener: fan-out to endpoints). */
export function onEventsCommitted(listener: CommittedListener): void {
  onCommitted = listener;
}

/**
 * After the change's batch committed: hand the new events to delivery, off the response path. A lost hand-off is
 * not a lost event: the row is in D1 and the delivery sweep picks it up.
 */
export function eventsCommitted(eventIds: string[], types?: readonly string[]): void {
  if (!eventIds.length || !onCommitted) return;
  const listener = onCommitted;
  const run = listener(workerEnv as Env, eventIds, types).catch((e) =>
    console.log(JSON.stringify({ level: "error", msg: "event hand-off failed; the delivery sweep retries", count: eventIds.length, error: String(e) })),
  );
  try {
    waitUntil(run);
  } catch {
    // Outside a request (e.g. a unit test calling services directly): the promise runs on its own.
  }
}

/**
 * The event's insert, applied only when the statement just before it in the batch changed a row (SQLite's
 * `changes()`): place it right after a guarded UPDATE whose WHERE names the state it leaves, so the event exists
 * exactly when the transition happened (a concurrent writer that moved first makes both a no-op).
 */
export function eventInsertIfChanged(db: Db, row: EventRow): BatchItem<"sqlite"> {
  return insertRowIfChanged(db, events, row);
}
