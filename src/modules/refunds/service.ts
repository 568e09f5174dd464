import type { Services } from "../../platform/services";
import { and, asc, eq, gt, isNull, lt } from "drizzle-orm";
import { refunds } from "../../db/schema";
import { formatMinor, toMinor } from "../../domain/money";
import { fail, invalid, notFound, ok, type Outcome } from "../../platform/failure";
import { newId } from "../../lib/ids";
import { lockedFailure } from "../../gateways/guard";
import { notRefundable, paymentById, remainingOf, reserve, settle, type PaymentRow, type RefundRow } from "./ledger";

export { processBulkRefundItem, type BulkRefundItemMessage, type BulkItemResult } from "./bulk";

export { toRefund, withRemaining } from "./serialize";

export type CreateRefundInput = { paymentId: string; amount?: string | number; reason: string; notify: boolean };

/** The amount asked for, in minor units of the payment's currency (omitted: everything still refundable). */
function requestedMinor(payment: PaymentRow, amount: string | number | undefined): Outcome<number, "unprocessable" | "validation_failed"> {
  if (amount === undefined) {
    const remaining = remainingOf(payment);
    if (remaining <= 0) return invalid([{ path: "amount", message: `payment ${payment.id} is already fully refunded` }]);
    return ok(remaining);
  }
  const minor = toMinor(amount, payment.currency);
  if (!minor.ok) return fail("validation_failed", `amount: ${minor.error}`, [{ path: "amount", message: minor.error }]);
  if (minor.value <= 0) return fail("validation_failed", "amount: must be greater than 0", [{ path: "amount", message: "must be greater than 0" }]);
  return ok(minor.value);
}

function overRefund(payment: PaymentRow, asked: number) {
  const remaining = formatMinor(Math.max(0, remainingOf(payment)), payment.currency);
  return invalid(
    [{ path: "amount", message: `exceeds the remaining refundable amount ${remaining} ${payment.currency}` }],
    `amount ${formatMinor(asked, payment.currency)} ${payment.currency} exceeds the remaining refundable amount ${remaining} ${payment.currency} of payment ${payment.id}`,
  );
}

/**
 * Refunds part or all of a succeeded payment through the gateway that took it. PaymentGuard admits the refund
 * first: frozen or queue mode → 423 before anything is written, so a refusal never consumes the request's
 * Idempotency-Key. Then the amount is reserved on the payment atomically (no overdraw under concurrency). A gateway
 * decline → 422 and the reservation given back; no answer from the gateway → the refund stays pending (the caller
 * sees status "pending") and the hourly sweep settles it.
 */
export async function createRefund(
  requestS: Services,
  input: CreateRefundInput,
): Promise<Outcome<{ refund: RefundRow; payment: PaymentRow }, "not_found" | "unprocessable" | "validation_failed" | "locked">> {
  const db = requestS.db;
  const payment = await paymentById(db, input.paymentId);
  if (!payment) return notFound("payment", input.paymentId);
  // A payment of a test-clock invoice is refunded in the clock's time (the refund and its events).
  const s = await requestS.inClockOfInvoice(payment.invoiceId);
  const ctx = s.audit;
  const why = notRefundable(payment);
  if (why) return invalid([{ path: "paymentId", message: why }]);
  const asked = requestedMinor(payment, input.amount);
  if (!asked.ok) return asked;
  const amount = asked.value;
  const id = newId("re");
  const row: RefundRow = {
    id,
    paymentId: payment.id,
    amount,
    currency: payment.currency,
    reason: input.reason,
    status: "pending",
    gateway: payment.gateway,
    gatewayRefundId: null,
    idempotencyKey: id,
    failureMessage: null,
    notify: input.notify,
    bulkId: null,
    createdBy: ctx.actor.id,
    createdAt: ctx.now,
    updatedAt: ctx.now,
  };

  const admitted = await s.guard.withAdmission(`refund ${id}`, async (held) => {
    if ((await reserve(db, row, payment, ctx)) !== "reserved") return overRefund((await paymentById(db, payment.id)) ?? payment, amount);
    // A gateway that does not answer may still have refunded: keep the reservation and the key; the hourly sweep
    // asks again with the same key. Giving the reservation back here could let a second refund overdraw the charge.
    return ok(await settle(s, row, payment, "keep", held));
  });
  if (!admitted.admitted) return lockedFailure(admitted);
  if (!admitted.value.ok) return admitted.value;
  const outcome = admitted.value.value;
  if (outcome.kind === "failed") return fail("unprocessable", `refund ${id} failed: ${outcome.message}`, [{ path: "paymentId", message: outcome.message }]);
  return ok({ refund: outcome.refund, payment: (await paymentById(db, payment.id))! });
}

/**
 * Hourly: refunds still pending after `graceMs` whose gateway never answered (no gateway refund id) are sent again
 * with their own key, so the gateway reports what it did. Frozen or queue mode: left for the next sweep.
 */
/** Pending refunds one call settles: each is a PaymentGuard admission, a gateway call and a D1 batch. */
export const SETTLE_PER_INVOCATION = 50;

export async function settlePendingRefunds(s: Services, graceMs = 15 * 60_000, limit = SETTLE_PER_INVOCATION, after: string | null = null): Promise<{ settled: number; stillPending: number; next: string | null }> {
  const { db, audit: ctx } = s;
  const rows = await db
    .select()
    .from(refunds)
    .where(and(eq(refunds.status, "pending"), isNull(refunds.gatewayRefundId), lt(refunds.updatedAt, ctx.now - graceMs), after ? gt(refunds.id, after) : undefined))
    .orderBy(asc(refunds.id))
    .limit(limit)
    .all();
  // A full page hands the rest on (by id, so a refund still pending is not asked twice in one run).
  const next = rows.length === limit ? rows[rows.length - 1]!.id : null;
  let settled = 0;
  let stillPending = 0;
  for (const r of rows) {
    const payment = await paymentById(db, r.paymentId);
    if (!payment) continue;
    const admission = await s.guard.stub.admit(`refund ${r.id}`);
    // Payments stopped: the rest waits for the next hourly run.
    if (!admission.admitted) return { settled, stillPending: rows.length - settled, next: null };
    try {
      const out = await settle(s, r, payment, "keep", admission);
      if (out.kind === "error" || out.refund.status === "pending") stillPending++;
      else settled++;
    } finally {
      await s.guard.stub.release(admission.token);
    }
  }
  return { settled, stillPending, next };
}
