import { payments } from "../../db/schema";
import { formatMinor } from "../../domain/money";
import { iso } from "../../lib/time";

type PaymentRow = typeof payments.$inferSelect;

/** The payment as the REST API returns it (and as payment.* events carry it). */
export function toPayment(p: PaymentRow) {
  return {
    id: p.id,
    invoiceId: p.invoiceId,
    customerId: p.customerId,
    attempt: p.attempt,
    amount: formatMinor(p.amount, p.currency),
    amountMinor: p.amount,
    currency: p.currency,
    status: p.status,
    gateway: p.gateway,
    gatewayPaymentId: p.gatewayPaymentId,
    paymentMethod: p.paymentMethod,
    failureCode: p.failureCode,
    failureMessage: p.failureMessage,
    amountRefunded: formatMinor(p.amountRefunded, p.currency),
    amountRefundedMinor: p.amountRefunded,
    nextRetryAt: iso(p.nextRetryAt),
    latencyMs: p.latencyMs,
    createdAt: iso(p.createdAt),
    updatedAt: iso(p.updatedAt),
  };
}

