import { and, asc, eq, inArray } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type { Db } from "../../db/client";
import { updateWhere } from "../../db/prepared";
import type { AuditContext, AuditEntry } from "../../platform/audit";
import { assertChanged } from "../../db/assert";
import { payments, type PaymentStatus } from "../../db/schema";
import { defineLifecycle } from "../../domain/lifecycle";
import { change, type ChangeSet } from "../../platform/change-set";
import { eventInsertIfChanged, eventRow, eventsCommitted, type EventType } from "../../platform/events";
import { toPayment } from "./serialize";

type PaymentRow = typeof payments.$inferSelect;
type Ctx = Pick<AuditContext, "now" | "requestId">;

/**
 * The payment (collection attempt) lifecycle, owner: this module. An attempt is created processing (admitted) or
 * parked (payments frozen / queue mode). parked → pending when payments resume (releaseParked), pending → parked
 * when it is parked again before it ran, pending | parked → processing when the charge is sent. processing →
 * succeeded | failed on the gateway's answer (charge or Stripe webhook; a webhook may also settle a pending one).
 * failed → succeeded: Stripe reports a late success of an intent we recorded as declined (webhooks/intents.ts).
 * succeeded is terminal (refunds change amountRefunded, never the status). canceled is a declared state that
 * nothing moves to today (a gateway's canceled intent is recorded as failed): no edge leads to it until something does.
 */
export const paymentLifecycle = defineLifecycle<PaymentStatus>("payment", {
  pending: ["parked", "processing", "succeeded", "failed"],
  parked: ["pending", "processing"],
  processing: ["succeeded", "failed"],
  failed: ["succeeded"],
  succeeded: [],
  canceled: [],
});

type Options = {
  /** Abort the whole batch when the guarded UPDATE did not move the payment (the caller handles the race). */
  strict?: boolean;
  /** False for a test clock's invoice's payments. */
  livemode?: boolean;
};

/**
 * from → to for one payment, guarded by the status as read (`p.status`), with `patch`'s other fields and, for the
 * settled states, the payment.* event — inserted only when the UPDATE moved the row. Staying in the same state is
 * a field update, not a transition (no event).
 */
function move(db: Db, p: PaymentRow, to: PaymentStatus, patch: Partial<PaymentRow>, ctx: Ctx, opts: Options & { event?: EventType; audit?: AuditEntry[] } = {}): { change: ChangeSet; after: PaymentRow } {
  const after: PaymentRow = { ...p, ...patch, status: to, updatedAt: ctx.now };
  const { id: _id, status: _status, ...fields } = { ...patch, updatedAt: ctx.now };
  if (p.status !== to) paymentLifecycle.assertMove(p.id, p.status, to);
  const row = opts.event && p.status !== to
    ? eventRow(
        {
          type: opts.event,
          objectType: "payment",
          objectId: p.id,
          customerId: p.customerId,
          object: toPayment(after),
          previousAttributes: { status: p.status },
          ...(opts.livemode === false ? { livemode: false } : {}),
        },
        ctx,
      )
    : null;
  const statements: BatchItem<"sqlite">[] = [
    // Prepared SQL (src/db/prepared.ts): two moves per charge.
    updateWhere(db, payments, p.status === to ? fields : { ...fields, status: to }, { id: p.id, status: p.status }),
    ...(row ? [eventInsertIfChanged(db, row)] : []),
    ...(opts.strict ? [assertChanged(db)] : []),
  ];
  return { change: change({ statements, audit: opts.audit ?? [], after: row ? [async () => eventsCommitted([row.id])] : [] }), after };
}

/** The charge is being sent: pending | parked → processing (a redelivered processing attempt just updates its fields). */
export const paymentProcessing = (db: Db, p: PaymentRow, patch: Pick<PaymentRow, "paymentMethod" | "gateway">, ctx: Ctx) => move(db, p, "processing", patch, ctx);

/** Not admitted (payments frozen / queue mode) before it ran: pending → parked. */
export const paymentParked = (db: Db, p: PaymentRow, ctx: Ctx) => move(db, p, "parked", {}, ctx);

/** The gateway (or Stripe's webhook) says the money moved: → succeeded, with payment.succeeded. */
export const paymentSucceeded = (db: Db, p: PaymentRow, patch: Partial<PaymentRow>, ctx: Ctx, opts: Options = {}) =>
  move(db, p, "succeeded", { failureCode: null, failureMessage: null, ...patch }, ctx, { ...opts, event: "payment.succeeded" });

/** Declined: → failed, with payment.failed (the retry or giving up is planFailure's, in the same batch). */
export const paymentFailed = (db: Db, p: PaymentRow, patch: Partial<PaymentRow>, ctx: Ctx, opts: Options = {}) => move(db, p, "failed", patch, ctx, { ...opts, event: "payment.failed" });

/**
 * On resume: up to `limit` parked charges, oldest first, become pending in one conditional UPDATE (parked → pending)
 * whose RETURNING rows are the only ones released, so concurrent resumes release each charge exactly once.
 */
export async function releaseParkedPage(db: Db, limit: number, now: number) {
  if (!paymentLifecycle.canMove("parked", "pending")) throw new Error("payment lifecycle: parked → pending is not declared");
  const page = db.select({ id: payments.id }).from(payments).where(eq(payments.status, "parked")).orderBy(asc(payments.createdAt), asc(payments.id)).limit(limit);
  return db
    .update(payments)
    .set({ status: "pending", updatedAt: now })
    .where(and(inArray(payments.id, page), eq(payments.status, "parked")))
    .returning({ invoiceId: payments.invoiceId, attempt: payments.attempt, createdAt: payments.createdAt, id: payments.id });
}
