import { and, eq, inArray, sql } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type Stripe from "stripe";
import type { AuditEntry } from "../../db/audit";
import { assertChanged } from "../../db/assert";
import { invoices, payments, subscriptions } from "../../db/schema";
import { classifyDecline } from "../../gateways/stripe";
import { planFailure } from "../payments/failure";
import { findPayment } from "./lookup";
import { settle, wait, type Commit, type Handler } from "./types";

const SUCCEEDABLE = ["processing", "pending", "failed"] as const;
const FAILABLE = ["processing", "pending"] as const;
const has = <T extends string>(list: readonly T[], v: string): v is T => (list as readonly string[]).includes(v);

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
  const statements: BatchItem<"sqlite">[] = [
    db
      .update(payments)
      .set({ status: "succeeded", gateway: payment.gateway ?? "stripe", gatewayPaymentId: intent.id, failureCode: null, failureMessage: null, nextRetryAt: null, updatedAt: now })
      .where(and(eq(payments.id, payment.id), eq(payments.status, payment.status))),
    assertChanged(db),
  ];
  if (paysInvoice) {
    statements.push(
      db
        .update(invoices)
        .set({ status: "paid", amountPaid: sql`${invoices.amountPaid} + ${payment.amount}`, amountDue: 0, paidAt: now, lastError: null, updatedAt: now })
        .where(and(eq(invoices.id, inv.id), inArray(invoices.status, ["open", "uncollectible"]))),
    );
    if (inv.subscriptionId) statements.push(db.update(subscriptions).set({ status: "active", updatedAt: now }).where(and(eq(subscriptions.id, inv.subscriptionId), eq(subscriptions.status, "past_due"))));
  }
  const audit: AuditEntry[] = [
    {
      action: "payment.reconciled_by_webhook",
      targetType: "payment",
      targetId: payment.id,
      before: { status: payment.status, invoiceStatus: inv?.status ?? null },
      after: { status: "succeeded", eventId, gatewayPaymentId: intent.id, invoiceId: payment.invoiceId, invoiceStatus: paysInvoice ? "paid" : (inv?.status ?? null) },
    },
  ];
  return settle("processed", null, statements, audit);
};

/**
 * The intent failed: a processing payment becomes failed, with the next attempt scheduled as the retry
 * configuration says (or collection given up, as a synchronous decline would). A succeeded payment is never
 * downgraded by a late or reordered failure.
 */
export const intentFailed: Handler = async ({ env, db, now, eventId }, object) => {
  const intent = object as unknown as Stripe.PaymentIntent;
  const payment = await findPayment(db, { ids: [intent.id], metadata: intent.metadata });
  if (!payment) return wait(`no local payment for payment intent ${intent.id} yet`);
  if (payment.status === "failed") return settle("processed");
  if (payment.status === "succeeded") return settle("ignored", `payment ${payment.id} already succeeded; a failure event does not downgrade it`);
  if (!has(FAILABLE, payment.status)) return settle("ignored", `payment ${payment.id} is ${payment.status}; only a processing payment can fail`);

  const err = intent.last_payment_error;
  const decline = classifyDecline({ code: err?.code, decline_code: err?.decline_code, advice_code: err?.advice_code, message: err?.message });
  const inv = await db.select().from(invoices).where(eq(invoices.id, payment.invoiceId)).get();
  const plan = await planFailure(db, inv, payment, { code: decline.failureCode, message: decline.failureMessage, retryable: decline.retryable }, now, eventId);
  const statements: BatchItem<"sqlite">[] = [
    db
      .update(payments)
      .set({ status: "failed", gatewayPaymentId: intent.id, failureCode: decline.failureCode, failureMessage: decline.failureMessage, nextRetryAt: plan.nextRetryAt, updatedAt: now })
      .where(and(eq(payments.id, payment.id), eq(payments.status, payment.status))),
    assertChanged(db),
    ...plan.statements,
  ];
  const decision: Commit = { kind: "commit", status: "processed", note: null, statements, audit: plan.audit, afterCommit: () => plan.scheduleRetry(env) };
  return decision;
};
