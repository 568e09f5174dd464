import { eq } from "drizzle-orm";
import type { Services } from "../../platform/services";
import type { BatchItem } from "drizzle-orm/batch";
import type { Db } from "../../db/client";
import type { AuditContext } from "../../platform/audit";
import { isAssertionFailure, isUniqueViolation } from "../../db/assert";
import { commit } from "../../platform/change-set";
import { createPending, createRejected, fail, linkGatewayRefund, succeed } from "./lifecycle";
import { customers, payments, refunds } from "../../db/schema";
import { formatMinor } from "../../domain/money";
import type { Admitted } from "../../gateways/guard";
import { counterIncrement } from "../../platform/metrics";
import type { GatewayName, PaymentGateway, RefundResult } from "../../gateways/types";
import { newId } from "../../lib/ids";
import { notificationInserts, notificationsCommitted } from "../notifications/outbox";

export type RefundRow = typeof refunds.$inferSelect;
export type PaymentRow = typeof payments.$inferSelect;

/** Currency of a failed refund row whose payment does not exist (ISO 4217 "no currency"). */
export const NO_CURRENCY = "XXX";

export { amountText } from "./amounts";

export const remainingOf = (p: PaymentRow) => p.amount - p.amountRefunded;

export const paymentById = (db: Db, id: string) => db.select().from(payments).where(eq(payments.id, id)).get();
export const refundById = (db: Db, id: string) => db.select().from(refunds).where(eq(refunds.id, id)).get();
export const refundByKey = (db: Db, key: string) => db.select().from(refunds).where(eq(refunds.idempotencyKey, key)).get();

const GATEWAYS: readonly string[] = ["stripe", "sandbox"] satisfies GatewayName[];

/** Why a payment cannot be refunded at all (whatever the amount), or null. */
export function notRefundable(p: PaymentRow): string | null {
  if (p.status !== "succeeded") return `payment ${p.id} is ${p.status}; only succeeded payments can be refunded`;
  if (!p.gateway || !GATEWAYS.includes(p.gateway) || !p.gatewayPaymentId) return `payment ${p.id} has no gateway charge to refund`;
  return null;
}

/**
 * Takes `refund.amount` out of the payment's refundable balance and records the pending refund, in one batch
 * (with its `refund.created` event). The UPDATE itself checks the balance, so concurrent refunds cannot overdraw a
 * payment: the loser's UPDATE changes nothing and `assertChanged` aborts its whole batch.
 */
export async function reserve(db: Db, refund: RefundRow, payment: PaymentRow, ctx: AuditContext): Promise<"reserved" | "insufficient" | "duplicate"> {
  try {
    await commit(db, createPending(db, refund, payment, ctx), ctx);
    return "reserved";
  } catch (e) {
    if (isAssertionFailure(e)) return "insufficient";
    if (isUniqueViolation(e, "refunds.idempotency_key")) return "duplicate";
    throw e;
  }
}

/** Marks a pending refund failed and gives its amount back to the payment; a refund already final is left alone. */
export async function reverse(db: Db, refund: RefundRow, failureMessage: string, ctx: AuditContext, gatewayRefundId?: string | null): Promise<RefundRow> {
  const current = await refundById(db, refund.id);
  if (!current || current.status !== "pending") return current ?? refund;
  const payment = await paymentById(db, refund.paymentId);
  const paymentAfter = payment && { ...payment, amountRefunded: Math.max(0, payment.amountRefunded - refund.amount), updatedAt: ctx.now };
  try {
    await commit(
      db,
      fail(db, current, {
        failureMessage,
        ...(gatewayRefundId ? { gatewayRefundId } : {}),
        giveBack: true,
        paymentAfter,
        audit: { action: "refund.failed", targetType: "refund", targetId: refund.id, before: { status: "pending" }, after: { status: "failed", paymentId: refund.paymentId, amount: refund.amount, currency: refund.currency, failureMessage } },
      }, ctx),
      ctx,
    );
  } catch (e) {
    if (!isAssertionFailure(e)) throw e;
  }
  return (await refundById(db, refund.id))!;
}

/** A failed refund row for a bulk item that could not even be reserved (unknown payment, nothing left…); nothing is held. */
export async function recordRejected(db: Db, refund: RefundRow, payment: PaymentRow | undefined, ctx: AuditContext): Promise<void> {
  try {
    await commit(db, createRejected(db, refund, payment, ctx), ctx);
  } catch (e) {
    // A redelivered message stored its row first.
    if (!isAssertionFailure(e)) throw e;
  }
}

async function recordSuccess(s: Services, refund: RefundRow, gateway: string, gatewayRefundId: string): Promise<RefundRow> {
  const { db, audit: ctx } = s;
  const current = await refundById(db, refund.id);
  if (!current || current.status !== "pending") return current ?? refund; // a concurrent delivery recorded it first
  // The payment as it stands: this refund's amount was reserved on it when the refund was created.
  const payment = (await paymentById(db, refund.paymentId))!;
  const statements: BatchItem<"sqlite">[] = [counterIncrement(db, "billing_refunds_total", { reason: refund.reason, gateway })];
  let noticeEventIds: string[] = [];
  if (refund.notify) {
    const customer = await db.select({ email: customers.email, name: customers.name }).from(customers).where(eq(customers.id, payment.customerId)).get();
    const outbox = notificationInserts(
      db,
      [
        {
          id: newId("ntf"),
          kind: "refund.issued",
          customerId: payment.customerId,
          invoiceId: payment.invoiceId,
          template: "refund_issued",
          payload: { refundId: refund.id, paymentId: payment.id, amount: formatMinor(refund.amount, refund.currency), amountMinor: refund.amount, currency: refund.currency, reason: refund.reason, email: customer?.email ?? null, name: customer?.name ?? null },
          dedupeKey: `refund:${refund.id}`,
          status: "queued",
          createdAt: ctx.now,
        },
      ],
      ctx,
      { ignoreDuplicates: true },
    );
    statements.push(...outbox.statements);
    noticeEventIds = outbox.eventIds;
  }
  try {
    await commit(
      db,
      succeed(db, current, {
        gateway,
        gatewayRefundId,
        paymentAfter: payment,
        paymentBefore: { ...payment, amountRefunded: Math.max(0, payment.amountRefunded - refund.amount) },
        statements,
        audit: { action: "refund.processed", targetType: "refund", targetId: refund.id, before: { status: "pending" }, after: { status: "succeeded", paymentId: payment.id, amount: refund.amount, currency: refund.currency, gateway, gatewayRefundId } },
      }, ctx),
      ctx,
    );
  } catch (e) {
    if (!isAssertionFailure(e)) throw e;
    return (await refundById(db, refund.id))!; // a concurrent delivery recorded it first
  }
  // The notice's event was written with it (or not at all, if a notice for this refund existed): delivery picks it up.
  notificationsCommitted(noticeEventIds);
  return (await refundById(db, refund.id))!;
}

export type SettleOutcome =
  | { kind: "succeeded" | "pending"; refund: RefundRow }
  | { kind: "failed"; refund: RefundRow; message: string }
  /** The gateway call threw and the caller asked to keep the refund pending (retried later with the same key). */
  | { kind: "error"; refund: RefundRow; message: string };

/**
 * Sends a reserved (pending) refund to the gateway that took the payment, with the refund's own idempotency key,
 * and records the answer: success → succeeded (+ counter, notification); decline → failed and the reservation
 * given back. A thrown call is a decline when `onThrow` is "fail"; with "keep" the refund stays pending so a retry
 * asks the gateway again with the same key (the gateway answers with the first outcome, never a second refund).
 * The caller holds a PaymentGuard admission (`held`), under which the gateway call runs.
 */
export async function settle(s: Services, refund: RefundRow, payment: PaymentRow, onThrow: "fail" | "keep", held: Admitted): Promise<SettleOutcome> {
  const { db, audit: ctx } = s;
  let gateway: PaymentGateway;
  try {
    gateway = await s.gateways.byName(payment.gateway as GatewayName, held);
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    return { kind: "failed", refund: await reverse(db, refund, message, ctx), message };
  }
  let result: RefundResult;
  try {
    result = await gateway.refund({ gatewayPaymentId: payment.gatewayPaymentId!, amountMinor: refund.amount, currency: refund.currency, idempotencyKey: refund.idempotencyKey, reason: refund.reason });
  } catch (e) {
    const message = `gateway error: ${e instanceof Error ? e.message : String(e)}`;
    if (onThrow === "keep") return { kind: "error", refund, message };
    result = { status: "failed", gatewayRefundId: null, failureMessage: message };
  }
  if (result.status === "failed") {
    return finalOutcome(await reverse(db, refund, result.failureMessage, ctx, result.gatewayRefundId));
  }
  if (result.status === "succeeded") return finalOutcome(await recordSuccess(s, refund, gateway.name, result.gatewayRefundId));
  // Pending: submitted, the gateway settles it later. The reservation stays until then.
  await linkGatewayRefund(db, { id: refund.id, status: "pending" }, { gateway: gateway.name, gatewayRefundId: result.gatewayRefundId }, ctx.now);
  return finalOutcome((await refundById(db, refund.id))!);
}

function finalOutcome(row: RefundRow): SettleOutcome {
  if (row.status === "failed") return { kind: "failed", refund: row, message: row.failureMessage ?? "refund failed" };
  return { kind: row.status, refund: row };
}
