import { and, eq, gte, sql } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type { Db } from "../../db/client";
import type { AuditContext, AuditEntry } from "../../platform/audit";
import { assertChanged } from "../../db/assert";
import { payments, refunds, refundStatuses } from "../../db/schema";
import { defineLifecycle } from "../../domain/lifecycle";
import { change, type ChangeSet } from "../../platform/change-set";
import { eventInsert, eventRow, type EventDraft } from "../../platform/events";
import { toPayment } from "../payments/serialize";
import { withRemaining } from "./serialize";

type RefundRow = typeof refunds.$inferSelect;
type PaymentRow = typeof payments.$inferSelect;
export type RefundStatus = (typeof refundStatuses)[number];

/**
 * A refund is created pending (amount reserved on its payment) and settles once; a refund Stripe reported
 * succeeded can still fail later (the bank returns it), which gives the amount back. Failed is final.
 * Refunds the engine knows only afterwards (made in Stripe's dashboard, or rejected before anything was
 * reserved) are created directly in their settled state, with the events of both steps.
 */
export const refundLifecycle = defineLifecycle<RefundStatus>("refund", {
  pending: ["succeeded", "failed"],
  succeeded: ["failed"],
  failed: [],
});

const refundEvent = (type: EventDraft["type"], r: RefundRow, payment: PaymentRow | null | undefined, previousAttributes: Record<string, unknown> | null = null): EventDraft => ({
  type,
  objectType: "refund",
  objectId: r.id,
  customerId: payment?.customerId ?? null,
  object: withRemaining(r, payment),
  previousAttributes,
});

/** Stripe's `charge.refunded`: the payment as the REST API returns it after the refund, and its refunded amount before. */
export const chargeRefundedEvent = (before: PaymentRow, after: PaymentRow): EventDraft => {
  const was = toPayment(before);
  return {
    type: "charge.refunded",
    objectType: "payment",
    objectId: after.id,
    customerId: after.customerId,
    object: toPayment(after),
    previousAttributes: { amountRefunded: was.amountRefunded, amountRefundedMinor: was.amountRefundedMinor },
  };
};

/**
 * A new pending refund: its amount is taken out of the payment's refundable balance by an UPDATE that checks the
 * balance itself (a concurrent refund that got there first makes `assertChanged` abort the whole batch).
 * `payment` is the payment as read; the event shows it with this refund reserved.
 */
export function createPending(db: Db, refund: RefundRow, payment: PaymentRow, ctx: AuditContext): ChangeSet {
  const x = refund.amount;
  const after = { ...payment, amountRefunded: payment.amountRefunded + x, updatedAt: ctx.now };
  return change({
    statements: [
      db
        .update(payments)
        .set({ amountRefunded: sql`${payments.amountRefunded} + ${x}`, updatedAt: ctx.now })
        .where(and(eq(payments.id, refund.paymentId), eq(payments.status, "succeeded"), sql`${payments.amountRefunded} + ${x} <= ${payments.amount}`)),
      assertChanged(db),
      db.insert(refunds).values({ ...refund, status: "pending" }),
    ],
    audit: [{ action: "refund.requested", targetType: "refund", targetId: refund.id, after: { paymentId: refund.paymentId, amount: x, currency: refund.currency, reason: refund.reason, bulkId: refund.bulkId } }],
    events: [refundEvent("refund.created", { ...refund, status: "pending" }, after)],
  });
}

/**
 * A refund rejected before anything was reserved (unknown payment, nothing left to refund…), recorded failed.
 * Written only once: a second insert of the same key changes nothing and aborts the batch.
 */
export function createRejected(db: Db, refund: RefundRow, payment: PaymentRow | undefined, ctx: AuditContext): ChangeSet {
  const row = { ...refund, status: "failed" as const };
  return change({
    statements: [db.insert(refunds).values(row).onConflictDoNothing(), assertChanged(db)],
    audit: [{ action: "refund.failed", targetType: "refund", targetId: refund.id, after: { status: "failed", paymentId: refund.paymentId, bulkId: refund.bulkId, failureMessage: refund.failureMessage } }],
    events: [refundEvent("refund.created", row, payment), refundEvent("refund.failed", row, payment)],
  });
}

/**
 * A refund learnt of afterwards (Stripe's dashboard), created in the state the gateway reports. Succeeded: the
 * charge's `charge.refunded` is the caller's (one per charge update, with the payment after all its refunds).
 */
export function createSettled(db: Db, refund: RefundRow, paymentAfter: PaymentRow, audit: AuditEntry): ChangeSet {
  const steps: EventDraft[] = [refundEvent("refund.created", refund, paymentAfter)];
  if (refund.status !== "pending") steps.push(refundEvent(refund.status === "succeeded" ? "refund.succeeded" : "refund.failed", refund, paymentAfter));
  return change({
    statements: [db.insert(refunds).values(refund).onConflictDoNothing(), assertChanged(db)],
    audit: [audit],
    events: steps,
  });
}

export type SucceedOptions = {
  gateway: string;
  gatewayRefundId: string | null;
  /** The payment after this refund (its refunded amount as it stands once the batch committed). */
  paymentAfter: PaymentRow;
  /** Its refunded amount before this refund; omitted: no `charge.refunded` (the caller emits one for several). */
  paymentBefore?: PaymentRow;
  audit: AuditEntry;
  statements?: BatchItem<"sqlite">[];
};

/** pending → succeeded. Guarded on the state as read: a concurrent settle makes the batch abort (assertChanged). */
export function succeed(db: Db, refund: RefundRow, o: SucceedOptions, ctx: Pick<AuditContext, "now">): ChangeSet {
  refundLifecycle.assertMove(refund.id, refund.status, "succeeded");
  const after: RefundRow = { ...refund, status: "succeeded", gateway: o.gateway, gatewayRefundId: o.gatewayRefundId, failureMessage: null, updatedAt: ctx.now };
  const events = [refundEvent("refund.succeeded", after, o.paymentAfter, { status: refund.status })];
  if (o.paymentBefore) events.push(chargeRefundedEvent(o.paymentBefore, o.paymentAfter));
  return change({
    statements: [
      db
        .update(refunds)
        .set({ status: "succeeded", gateway: o.gateway, gatewayRefundId: o.gatewayRefundId, failureMessage: null, updatedAt: ctx.now })
        .where(and(eq(refunds.id, refund.id), eq(refunds.status, refund.status))),
      assertChanged(db),
      ...(o.statements ?? []),
    ],
    audit: [o.audit],
    events,
  });
}

export type FailOptions = {
  failureMessage: string | null;
  gatewayRefundId?: string | null;
  /** Give the refund's amount back to the payment here (pending refunds). False: the caller recomputes it. */
  giveBack: boolean;
  paymentAfter: PaymentRow | null | undefined;
  audit: AuditEntry;
};

/** pending | succeeded → failed, guarded on the state as read. */
export function fail(db: Db, refund: RefundRow, o: FailOptions, ctx: Pick<AuditContext, "now">): ChangeSet {
  refundLifecycle.assertMove(refund.id, refund.status, "failed");
  const set = { status: "failed" as const, failureMessage: o.failureMessage ?? refund.failureMessage, updatedAt: ctx.now, ...(o.gatewayRefundId !== undefined ? { gatewayRefundId: o.gatewayRefundId } : {}) };
  const statements: BatchItem<"sqlite">[] = [db.update(refunds).set(set).where(and(eq(refunds.id, refund.id), eq(refunds.status, refund.status))), assertChanged(db)];
  if (o.giveBack) {
    statements.push(
      db
        .update(payments)
        .set({ amountRefunded: sql`${payments.amountRefunded} - ${refund.amount}`, updatedAt: ctx.now })
        .where(and(eq(payments.id, refund.paymentId), gte(payments.amountRefunded, refund.amount))),
    );
  }
  return change({
    statements,
    audit: [o.audit],
    events: [refundEvent("refund.failed", { ...refund, ...set }, o.paymentAfter, { status: refund.status })],
  });
}

/** The gateway's refund id (and gateway) on a refund, in its current state: no status change, no event. */
export function linkGatewayRefund(db: Db, refund: Pick<RefundRow, "id" | "status">, set: { gateway?: string; gatewayRefundId: string | null }, now: number): BatchItem<"sqlite"> {
  return db
    .update(refunds)
    .set({ ...set, updatedAt: now })
    .where(and(eq(refunds.id, refund.id), eq(refunds.status, refund.status)));
}

/**
 * A change set as plain batch statements (its events as inserts after them), for a caller that commits its own
 * batch (the Stripe webhook applies a handler's statements with the event's status in one batch).
 */
export function asStatements(db: Db, cs: ChangeSet, ctx: Pick<AuditContext, "now" | "requestId">): { statements: BatchItem<"sqlite">[]; audit: AuditEntry[]; eventIds: string[] } {
  const rows = cs.events.map((e) => eventRow(e, ctx));
  return { statements: [...cs.statements, ...rows.map((r) => eventInsert(db, r))], audit: cs.audit, eventIds: rows.map((r) => r.id) };
}
