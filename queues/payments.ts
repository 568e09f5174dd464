import { messageServices, type Services } from "../src/platform/services";
import { collectInvoice } from "../src/modules/payments/collect";
import { GuardLease } from "../src/modules/payments/guard";
import { releaseParked } from "../src/modules/payments/service";
import { processBulkRefundItem } from "../src/modules/refunds/service";
import { backoffSeconds, consumer, type HandlerResult } from "./dispatch";
import type { PaymentMessage } from "./messages";
import { queueNames } from "./messages";

/**
 * Payment attempts. Delivery is at least once: the attempt's idempotency key makes a redelivery a no-op (or a
 * re-ask of the gateway with the same key). A declined charge is not a message failure: its retry is a new
 * attempt message, sent with the configured backoff by the collection itself.
 */
const handlers = (lease: GuardLease) => ({
  "payment.attempt": async (m: Extract<PaymentMessage, { type: "payment.attempt" }>, s: Services, attempts: number): Promise<HandlerResult> => {
    const r = await collectInvoice(s, m.invoiceId, { attempt: m.attempt, direct: false, lease });
    s.log.info("payment attempt", { invoiceId: m.invoiceId, attempt: m.attempt, outcome: r.outcome });
    // Gateway unreachable: the same attempt (same idempotency key) again, with backoff; after the queue's
    // retries it rests in the DLQ with its payment still "processing" for webhooks or reconciliation to settle.
    if (r.outcome === "unknown") return { status: "retry", delaySeconds: backoffSeconds(attempts, 30), reason: r.error };
    return { status: "done" };
  },
  "refund.bulk_item": (m: Extract<PaymentMessage, { type: "refund.bulk_item" }>, s: Services) => processBulkRefundItem(s, m),
  // Frozen again (or queue mode) since the resume: the rest stays parked until the next resume releases it.
  "payments.release_parked": async (_m: Extract<PaymentMessage, { type: "payments.release_parked" }>, s: Services): Promise<HandlerResult> => {
    if ((await s.guard.stub.state()).mode === "normal") await releaseParked(s);
    return { status: "done" };
  },
});

/**
 * Charges of one batch in flight at once: Cloudflare opens at most six connections per invocation at a time (more
 * wait), and a freeze then has at most this many charges to wait for.
 */
export const CHARGES_IN_FLIGHT = 6;

/** One invoice's attempts (or one payment's refund) in a batch run in order; different ones concurrently. */
const paymentKey = (m: PaymentMessage): string =>
  m.type === "payment.attempt" ? `invoice:${m.invoiceId}` : m.type === "refund.bulk_item" ? `payment:${m.paymentId}` : m.type;

/**
 * The batch's charges share one PaymentGuard lease (one guard call per lease window, not an admit/release pair
 * per charge); it is given back when the batch is done.
 */
export async function consumePayments(batch: MessageBatch<unknown>, env: Env): Promise<void> {
  const lease = new GuardLease(env);
  try {
    await consumer<PaymentMessage>(queueNames.payments, handlers(lease), { services: messageServices, producer: (e) => e.PAYMENT_QUEUE, keyOf: paymentKey, concurrency: CHARGES_IN_FLIGHT })(batch, env);
  } finally {
    await lease.release();
  }
}
