import { formatMinor } from "../../domain/money";
import { iso } from "../../lib/time";
import type { payments, refunds } from "../../db/schema";
import { amountText } from "./amounts";

type RefundRow = typeof refunds.$inferSelect;
type PaymentRow = typeof payments.$inferSelect;

/** A refund as the REST API returns it in lists. */
export function toRefund(r: RefundRow) {
  return {
    id: r.id,
    paymentId: r.paymentId,
    amount: amountText(r.amount, r.currency),
    amountMinor: r.amount,
    currency: r.currency,
    reason: r.reason,
    status: r.status,
    gateway: r.gateway,
    gatewayRefundId: r.gatewayRefundId,
    failureMessage: r.failureMessage,
    notify: r.notify,
    bulkId: r.bulkId,
    createdBy: r.createdBy,
    createdAt: iso(r.createdAt),
    updatedAt: iso(r.updatedAt),
  };
}

/** A refund with what is still refundable on its payment (null when the payment does not exist): GET /refunds/{id}. */
export function withRemaining(r: RefundRow, p: PaymentRow | undefined | null) {
  const remaining = p ? p.amount - p.amountRefunded : null;
  return { ...toRefund(r), remainingRefundable: p && remaining !== null ? formatMinor(remaining, p.currency) : null, remainingRefundableMinor: remaining };
}
