import { and, eq, gte, sql } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type { Db } from "../../db/client";
import { commitWithAudit, type AuditContext } from "../../db/audit";
import { assertChanged, isAssertionFailure, isUniqueViolation } from "../../db/assert";
import { customers, notifications, payments, refunds } from "../../db/schema";
import { currencyExponent, formatMinor } from "../../domain/money";
import { gatewayByName } from "../../gateways";
import type { Admitted } from "../../gateways/guard";
import { counterIncrement } from "../../gateways/metrics";
import type { GatewayName, PaymentGateway, RefundResult } from "../../gateways/types";
import { newId } from "../../lib/ids";
import type { WebhookMessage } from "../../../queues/messages";

export type RefundRow = typeof refunds.$inferSelect;
export type PaymentRow = typeof payments.$inferSelect;

/** Currency of a failed refund row whose payment does not exist (ISO 4217 "no currency"). */
export const NO_CURRENCY = "XXX";

/** Major-unit string of a stored amount; rows without a real currency (XXX) show the bare minor amount. */
export const amountText = (minor: number, currency: string) => (currencyExponent(currency) === undefined ? String(minor) : formatMinor(minor, currency));

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
 * Takes `refund.amount` out of the payment's refundable balance and records the pending refund, in one batch.
 * The UPDATE itself checks the balance, so concurrent refunds cannot overdraw a payment: the loser's UPDATE
 * changes nothing and `assertChanged` aborts its whole batch.
 */
export async function reserve(db: Db, refund: RefundRow, ctx: AuditContext): Promise<"reserved" | "insufficient" | "duplicate"> {
  const x = refund.amount;
  try {
    await commitWithAudit(
      db,
      [
        db
          .update(payments)
          .set({ amountRefunded: sql`${payments.amountRefunded} + ${x}`, updatedAt: ctx.now })
          .where(and(eq(payments.id, refund.paymentId), eq(payments.status, "succeeded"), sql`${payments.amountRefunded} + ${x} <= ${payments.amount}`)),
        assertChanged(db),
        db.insert(refunds).values(refund),
      ],
      [{ action: "refund.requested", targetType: "refund", targetId: refund.id, after: { paymentId: refund.paymentId, amount: x, currency: refund.currency, reason: refund.reason, bulkId: refund.bulkId } }],
      ctx,
    );
    return "reserved";
  } catch (e) {
    if (isAssertionFailure(e)) return "insufficient";
    if (isUniqueViolation(e, "refunds.idempotency_key")) return "duplicate";
    throw e;
  }
}

/** Marks a pending refund failed and gives its amount back to the payment; a refund already final is left alone. */
export async function reverse(db: Db, refund: RefundRow, failureMessage: string, ctx: AuditContext): Promise<RefundRow> {
  try {
    await commitWithAudit(
      db,
      [
        db.update(refunds).set({ status: "failed", failureMessage, updatedAt: ctx.now }).where(and(eq(refunds.id, refund.id), eq(refunds.status, "pending"))),
        assertChanged(db),
        db
          .update(payments)
          .set({ amountRefunded: sql`${payments.amountRefunded} - ${refund.amount}`, updatedAt: ctx.now })
          .where(and(eq(payments.id, refund.paymentId), gte(payments.amountRefunded, refund.amount))),
      ],
      [{ action: "refund.failed", targetType: "refund", targetId: refund.id, before: { status: "pending" }, after: { status: "failed", paymentId: refund.paymentId, amount: refund.amount, currency: refund.currency, failureMessage } }],
      ctx,
    );
  } catch (e) {
    if (!isAssertionFailure(e)) throw e;
  }
  return (await refundById(db, refund.id))!;
}

/** A failed refund row for a bulk item that could not even be reserved (unknown payment, nothing left…); nothing is held. */
export async function recordRejected(db: Db, refund: RefundRow, ctx: AuditContext): Promise<void> {
  try {
    await commitWithAudit(
      db,
      [db.insert(refunds).values(refund).onConflictDoNothing(), assertChanged(db)],
      [{ action: "refund.failed", targetType: "refund", targetId: refund.id, after: { status: "failed", paymentId: refund.paymentId, bulkId: refund.bulkId, failureMessage: refund.failureMessage } }],
      ctx,
    );
  } catch (e) {
    // A redelivered message stored its row first.
    if (!isAssertionFailure(e)) throw e;
  }
}

async function recordSuccess(env: Env, db: Db, refund: RefundRow, payment: PaymentRow, gateway: string, gatewayRefundId: string, ctx: AuditContext): Promise<RefundRow> {
  const statements: BatchItem<"sqlite">[] = [
    db.update(refunds).set({ status: "succeeded", gateway, gatewayRefundId, failureMessage: null, updatedAt: ctx.now }).where(and(eq(refunds.id, refund.id), eq(refunds.status, "pending"))),
    assertChanged(db),
    counterIncrement(db, "billing_refunds_total", { reason: refund.reason, gateway }),
  ];
  const notificationId = newId("ntf");
  if (refund.notify) {
    const customer = await db.select({ email: customers.email, name: customers.name }).from(customers).where(eq(customers.id, payment.customerId)).get();
    statements.push(
      db
        .insert(notifications)
        .values({
          id: notificationId,
          kind: "refund.issued",
          customerId: payment.customerId,
          invoiceId: payment.invoiceId,
          template: "refund_issued",
          payload: { refundId: refund.id, paymentId: payment.id, amount: formatMinor(refund.amount, refund.currency), amountMinor: refund.amount, currency: refund.currency, reason: refund.reason, email: customer?.email ?? null, name: customer?.name ?? null },
          dedupeKey: `refund:${refund.id}`,
          status: "queued",
          createdAt: ctx.now,
        })
        .onConflictDoNothing(),
    );
  }
  try {
    await commitWithAudit(
      db,
      statements,
      [{ action: "refund.processed", targetType: "refund", targetId: refund.id, before: { status: "pending" }, after: { status: "succeeded", paymentId: payment.id, amount: refund.amount, currency: refund.currency, gateway, gatewayRefundId } }],
      ctx,
    );
  } catch (e) {
    if (!isAssertionFailure(e)) throw e;
    return (await refundById(db, refund.id))!; // a concurrent delivery recorded it first
  }
  if (refund.notify) {
    // The row is the outbox: without the message it stays `queued` and visible.
    await env.WEBHOOK_QUEUE.send({ type: "notification.send", notificationId } satisfies WebhookMessage).catch((e) =>
      console.log(JSON.stringify({ level: "error", msg: "notification enqueue failed", notificationId, error: String(e) })),
    );
  }
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
export async function settle(env: Env, db: Db, refund: RefundRow, payment: PaymentRow, ctx: AuditContext, onThrow: "fail" | "keep", held: Admitted): Promise<SettleOutcome> {
  let gateway: PaymentGateway;
  try {
    gateway = await gatewayByName(env, db, payment.gateway as GatewayName, held);
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
    if (result.gatewayRefundId) await db.update(refunds).set({ gatewayRefundId: result.gatewayRefundId }).where(eq(refunds.id, refund.id));
    return finalOutcome(await reverse(db, refund, result.failureMessage, ctx));
  }
  if (result.status === "succeeded") return finalOutcome(await recordSuccess(env, db, refund, payment, gateway.name, result.gatewayRefundId, ctx));
  // Pending: submitted, the gateway settles it later. The reservation stays until then.
  await db.update(refunds).set({ gateway: gateway.name, gatewayRefundId: result.gatewayRefundId, updatedAt: ctx.now }).where(and(eq(refunds.id, refund.id), eq(refunds.status, "pending")));
  return finalOutcome((await refundById(db, refund.id))!);
}

function finalOutcome(row: RefundRow): SettleOutcome {
  if (row.status === "failed") return { kind: "failed", refund: row, message: row.failureMessage ?? "refund failed" };
  return { kind: row.status, refund: row };
}
