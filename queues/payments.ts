import { dbOf } from "../src/db/client";
import { SYSTEM_ACTOR } from "../src/platform/actor";
import { collectInvoice } from "../src/modules/payments/collect";
import { paymentGuard } from "../src/modules/payments/guard";
import { releaseParked } from "../src/modules/payments/service";
import { processBulkRefundItem } from "../src/modules/refunds/service";
import { backoffSeconds, consumer } from "./dispatch";
import type { PaymentMessage } from "./messages";
import { queueNames } from "./messages";

/**
 * Payment attempts. Delivery is at least once: the attempt's idempotency key makes a redelivery a no-op (or a
 * re-ask of the gateway with the same key). A declined charge is not a message failure: its retry is a new
 * attempt message, sent with the configured backoff by the collection itself.
 */
export const consumePayments = consumer<PaymentMessage>(queueNames.payments, {
  "payment.attempt": async (m, env, attempts) => {
    const r = await collectInvoice(env, dbOf(env), m.invoiceId, { attempt: m.attempt, direct: false }, { actor: SYSTEM_ACTOR, now: Date.now() });
    console.log(JSON.stringify({ level: "info", msg: "payment attempt", invoiceId: m.invoiceId, attempt: m.attempt, outcome: r.outcome }));
    // Gateway unreachable: the same attempt (same idempotency key) again, with backoff; after the queue's
    // retries it rests in the DLQ with its payment still "processing" for webhooks or reconciliation to settle.
    if (r.outcome === "unknown") return { status: "retry", delaySeconds: backoffSeconds(attempts, 30), reason: r.error };
    return { status: "done" };
  },
  "refund.bulk_item": (m, env) => processBulkRefundItem(env, m),
  // Frozen again (or queue mode) since the resume: the rest stays parked until the next resume releases it.
  "payments.release_parked": async (_m, env) => {
    if ((await paymentGuard(env).state()).mode === "normal") await releaseParked(env, dbOf(env));
    return { status: "done" };
  },
}, (env) => env.PAYMENT_QUEUE);
