import { eq } from "drizzle-orm";
import type Stripe from "stripe";
import type { Db } from "../../db/client";
import { invoices } from "../../db/schema";
import { classifyDecline } from "../../gateways/stripe";
import { change, merge, type ChangeSet } from "../../platform/change-set";
import { eventInsert, eventRow, eventsCommitted } from "../../platform/events";
import { invoicePaid } from "../invoices/lifecycle";
import { planFailure } from "../payments/failure";
import { paymentFailed, paymentSucceeded } from "../payments/lifecycle";
import { subscriptionAfterPayment } from "../subscriptions/transitions";
import { findPayment } from "./lookup";
import { settle, wait, WEBHOOK_ACTOR, type Commit, type Handler } from "./types";

const SUCCEEDABLE = ["processing", "pending", "failed"] as const;
const FAILABLE = ["processing", "pending"] as const;
const has = <T extends string>(list: readonly T[], v: string): v is T => (list as readonly string[]).includes(v);

/**
 * A change set as a webhook decision: webhooks/apply.ts commits the statements and audit rows with the Stripe event's
 * new status in one batch, so events still as drafts become rows of that batch here, and the effects (including the
 * hand-off of the events to delivery) run after it.
 */
function asCommit(db: Db, cs: ChangeSet, ctx: { now: number; requestId: string }): Commit {
  const rows = cs.events.map((e) => eventRow(e, ctx));
  return {
    kind: "commit",
    status: "processed",
    note: null,
    statements: [...cs.statements, ...rows.map((r) => eventInsert(db, r))],
    audit: cs.audit,
    afterCommit: async () => {
      eventsCommitted(rows.map((r) => r.id));
      for (const effect of cs.after) await effect();
    },
  };
}

/** The intent succeeded: its payment becomes succeeded and the invoice paid; a succeeded payment is left alone. */
export const intentSucceeded: Handler = async ({ db, now, eventId }, object) => {
  const intent = object as unknown as Stripe.PaymentIntent;
  const payment = await findPayment(db, { ids: [intent.id], metadata: intent.metadata });
  if (!payment) return wait(`no local payment for payment intent ${intent.id} yet`);
  if (payment.status === "succeeded") return settle("processed");
  if (!has(SUCCEEDABLE, payment.status)) return settle("failed", `payment ${payment.id} is ${payment.status} but intent ${intent.id} succeeded: needs a person`);
  const received = intent.amount_received || intent.amount;
  if (received !== payment.amount || String(intent.currency).toUpperCase() !== payment.currency) {
    return settle("failed", `intent ${intent.id} is ${received} ${String(intent.currency).toUpperCase()}, payment ${payment.id} is ${payment.amount} ${payment.currency}: left unchanged`);
  }
  const inv = await db.select().from(invoices).where(eq(invoices.id, payment.invoiceId)).get();
  const paysInvoice = inv !== undefined && (inv.status === "open" || inv.status === "uncollectible");
  const ctx = { actor: WEBHOOK_ACTOR, now, requestId: eventId };
  const livemode = inv?.testClockId ? false : undefined;
  // Strict on the payment: a concurrent settlement aborts the batch (the event is then retried and finds it settled).
  const settled = paymentSucceeded(db, payment, { gateway: payment.gateway ?? "stripe", gatewayPaymentId: intent.id, nextRetryAt: null }, ctx, { strict: true, livemode });
  // The same "invoice paid" transition as a charge's (invoices/lifecycle.ts invoicePaid): open | uncollectible → paid,
  // first in the batch as in payments/collect.ts (invoice.paid, then payment.succeeded); the payment's assertion
  // after both aborts the whole batch on a race.
  const cs = merge(
    ...(inv ? [await invoicePaid(db, inv, payment, ctx)] : []),
    settled.change,
    ...(inv?.subscriptionId && paysInvoice ? [subscriptionAfterPayment(db, inv.subscriptionId, "succeeded", ctx)] : []),
    change({
      audit: [
        {
          action: "payment.reconciled_by_webhook",
          targetType: "payment",
          targetId: payment.id,
          before: { status: payment.status, invoiceStatus: inv?.status ?? null },
          after: { status: "succeeded", eventId, gatewayPaymentId: intent.id, invoiceId: payment.invoiceId, invoiceStatus: paysInvoice ? "paid" : (inv?.status ?? null) },
        },
      ],
    }),
  );
  return asCommit(db, cs, ctx);
};

/**
 * The intent failed: a processing payment becomes failed, with the next attempt scheduled as the retry
 * configuration says (or collection given up, as a synchronous decline would). A succeeded payment is never
 * downgraded by a late or reordered failure.
 */
export const intentFailed: Handler = async ({ s, db, now, eventId }, object) => {
  const intent = object as unknown as Stripe.PaymentIntent;
  const payment = await findPayment(db, { ids: [intent.id], metadata: intent.metadata });
  if (!payment) return wait(`no local payment for payment intent ${intent.id} yet`);
  if (payment.status === "failed") return settle("processed");
  if (payment.status === "succeeded") return settle("ignored", `payment ${payment.id} already succeeded; a failure event does not downgrade it`);
  if (!has(FAILABLE, payment.status)) return settle("ignored", `payment ${payment.id} is ${payment.status}; only a processing payment can fail`);

  const err = intent.last_payment_error;
  const decline = classifyDecline({ code: err?.code, decline_code: err?.decline_code, advice_code: err?.advice_code, message: err?.message });
  const inv = await db.select().from(invoices).where(eq(invoices.id, payment.invoiceId)).get();
  const ctx = { actor: WEBHOOK_ACTOR, now, requestId: eventId };
  const plan = await planFailure(s, inv, payment, { code: decline.failureCode, message: decline.failureMessage, retryable: decline.retryable }, ctx, eventId);
  const failed = paymentFailed(
    db,
    payment,
    { gatewayPaymentId: intent.id, failureCode: decline.failureCode, failureMessage: decline.failureMessage, nextRetryAt: plan.nextRetryAt },
    ctx,
    { strict: true, livemode: inv?.testClockId ? false : undefined },
  );
  const cs = merge(failed.change, change({ statements: plan.statements, audit: plan.audit, events: plan.events, after: [() => plan.scheduleRetry(s)] }));
  return asCommit(db, cs, ctx);
};
