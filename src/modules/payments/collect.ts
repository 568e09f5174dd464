import { desc, eq } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type { Db } from "../../db/client";
import type { AuditContext } from "../../platform/audit";
import { customers, invoices, payments, subscriptions } from "../../db/schema";
import { change, commit, merge } from "../../platform/change-set";
import { invoicePaid } from "../invoices/lifecycle";
import { subscriptionAfterPayment } from "../subscriptions/transitions";
import { paymentFailed, paymentParked, paymentProcessing, paymentSucceeded } from "./lifecycle";
import { chargeGateway, gatewayByName } from "../../gateways";
import type { GatewayName } from "../../gateways/types";
import type { ChargeResult } from "../../gateways/types";
import { newId } from "../../lib/ids";
import type { PaymentMessage } from "../../../queues/messages";
import { lockedError, withAdmission } from "./guard";
import { paymentMetricStatements } from "./metrics";
import { planFailure } from "./failure";

type PaymentRow = typeof payments.$inferSelect;
type InvoiceRow = typeof invoices.$inferSelect;

export type CollectOutcome =
  | { outcome: "succeeded" | "failed" | "pending"; payment: PaymentRow; retryScheduledAt?: number | null }
  | { outcome: "duplicate"; payment: PaymentRow }
  /** The gateway did not answer: the attempt stays processing and must be asked again with the same key. */
  | { outcome: "unknown"; payment: PaymentRow; error: string }
  | { outcome: "parked"; payment: PaymentRow; mode: "frozen" | "queue" }
  | { outcome: "skipped"; reason: string };

export const chargeKey = (invoiceId: string, attempt: number) => `${invoiceId}:attempt:${attempt}`;
const FINAL = new Set(["succeeded", "failed", "canceled"]);

async function paymentByKey(db: Db, key: string) {
  return db.select().from(payments).where(eq(payments.idempotencyKey, key)).get();
}

/** The attempt row, created once per (invoice, attempt); a redelivered message finds the same row. */
async function ensurePayment(db: Db, inv: InvoiceRow, attempt: number, method: string | null, status: PaymentRow["status"], now: number): Promise<PaymentRow> {
  const key = chargeKey(inv.id, attempt);
  await db
    .insert(payments)
    .values({ id: newId("pay"), invoiceId: inv.id, customerId: inv.customerId, attempt, amount: inv.amountDue, currency: inv.currency, status, gateway: null, gatewayPaymentId: null, paymentMethod: method, idempotencyKey: key, failureCode: null, failureMessage: null, amountRefunded: 0, nextRetryAt: null, latencyMs: null, createdAt: now, updatedAt: now })
    .onConflictDoNothing();
  return (await paymentByKey(db, key))!;
}

export type CollectOptions = { attempt: number; direct: boolean; paymentMethod?: string | null };

/**
 * Charges one invoice attempt, exactly once: the gateway sees a deterministic idempotency key per invoice and
 * attempt, a redelivered message or a crash after the gateway call finds the attempt row and asks the gateway
 * again with the same key (which answers with the first outcome), and PaymentGuard admits the charge first.
 * Frozen: direct calls get 423, queued ones are parked. Queue mode: parked. Parked charges run on resume.
 */
export async function collectInvoice(env: Env, db: Db, invoiceId: string, opts: CollectOptions, ctx: AuditContext): Promise<CollectOutcome> {
  const inv = await db.select().from(invoices).where(eq(invoices.id, invoiceId)).get();
  if (!inv) return { outcome: "skipped", reason: `invoice ${invoiceId} does not exist` };
  const existing = await paymentByKey(db, chargeKey(inv.id, opts.attempt));
  if (existing && FINAL.has(existing.status)) return { outcome: "duplicate", payment: existing };
  if (inv.status !== "open" || inv.amountDue <= 0) return { outcome: "skipped", reason: `invoice ${inv.id} is ${inv.status} with ${inv.amountDue} due` };
  const sub = inv.subscriptionId ? await db.select().from(subscriptions).where(eq(subscriptions.id, inv.subscriptionId)).get() : undefined;
  const method = opts.paymentMethod ?? existing?.paymentMethod ?? sub?.paymentMethod ?? null;

  const admitted = await withAdmission(env, `charge ${chargeKey(inv.id, opts.attempt)}`, async (admission) => {
    const payment = await ensurePayment(db, inv, opts.attempt, method, "processing", ctx.now);
    if (FINAL.has(payment.status)) return { outcome: "duplicate", payment } satisfies CollectOutcome;
    // An attempt that already reached a gateway stays on it: the same key elsewhere would be a new charge.
    const gateway = payment.gateway ? await gatewayByName(env, db, payment.gateway as GatewayName, admission) : await chargeGateway(env, db, admission);
    await commit(db, paymentProcessing(db, payment, { paymentMethod: method, gateway: gateway.name }, ctx).change, ctx);
    const started = Date.now();
    let result: ChargeResult;
    try {
      const customer = await db.select({ metadata: customers.metadata }).from(customers).where(eq(customers.id, inv.customerId)).get();
      result = await gateway.charge({
        amountMinor: payment.amount,
        currency: payment.currency,
        customerId: inv.customerId,
        gatewayCustomerId: customer?.metadata.stripeCustomerId ?? null,
        paymentMethod: method,
        invoiceId: inv.id,
        idempotencyKey: payment.idempotencyKey,
        description: `Invoice ${inv.number ?? inv.id}`,
      });
    } catch (e) {
      // Unknown outcome (timeout, 5xx): the gateway may have charged. Never a new attempt (new key) for this:
      // the same attempt is asked again later with the same key, and the gateway answers with what it did.
      const message = e instanceof Error ? e.message : String(e);
      await db.update(payments).set({ failureCode: "gateway_error", failureMessage: message, latencyMs: Date.now() - started, updatedAt: ctx.now }).where(eq(payments.id, payment.id));
      return { outcome: "unknown", payment: { ...payment, gateway: gateway.name, status: "processing", failureCode: "gateway_error", failureMessage: message }, error: message } satisfies CollectOutcome;
    }
    const latencyMs = Date.now() - started;
    return recordOutcome(env, db, inv, { ...payment, paymentMethod: method, gateway: gateway.name, status: "processing" }, result, latencyMs, ctx);
  });
  if (admitted.admitted) return admitted.value;
  if (admitted.mode === "frozen" && opts.direct) throw lockedError(admitted);
  const parked = await ensurePayment(db, inv, opts.attempt, method, "parked", ctx.now);
  if (parked.status === "pending") await commit(db, paymentParked(db, parked, ctx).change, ctx);
  return { outcome: "parked", payment: { ...parked, status: "parked" }, mode: admitted.mode };
}

async function recordOutcome(env: Env, db: Db, inv: InvoiceRow, payment: PaymentRow, result: ChargeResult, latencyMs: number, ctx: AuditContext): Promise<CollectOutcome> {
  const base = { gateway: payment.gateway, gatewayPaymentId: result.gatewayPaymentId, latencyMs, updatedAt: ctx.now };
  const planLabel = inv.subscriptionId ? ((await db.select({ planId: subscriptions.planId }).from(subscriptions).where(eq(subscriptions.id, inv.subscriptionId)).get())?.planId ?? "none") : "none";
  const metrics = paymentMetricStatements(db, { gateway: payment.gateway ?? "unknown", status: result.status, currency: payment.currency, plan: planLabel, amountMinor: payment.amount, latencyMs });
  const livemode = inv.testClockId ? false : undefined;
  if (result.status === "succeeded") {
    // The invoice's event goes first in the batch (and the stream): invoice.paid, then payment.succeeded.
    const settled = paymentSucceeded(db, payment, base, ctx, { livemode });
    const cs = merge(
      await invoicePaid(db, inv, payment, ctx),
      settled.change,
      ...(inv.subscriptionId ? [subscriptionAfterPayment(db, inv.subscriptionId, "succeeded", ctx)] : []),
      change({
        statements: metrics,
        audit: [{ action: "payment.processed", targetType: "payment", targetId: payment.id, after: { invoiceId: inv.id, amount: payment.amount, currency: payment.currency, gateway: payment.gateway, gatewayPaymentId: result.gatewayPaymentId, attempt: payment.attempt } }],
      }),
    );
    await commit(db, cs, ctx);
    return { outcome: "succeeded", payment: settled.after };
  }
  if (result.status === "pending") {
    // Still processing: its fields move, its status does not (no transition).
    await db.batch([db.update(payments).set(base).where(eq(payments.id, payment.id)), ...metrics] as [BatchItem<"sqlite">, ...BatchItem<"sqlite">[]]);
    return { outcome: "pending", payment: { ...payment, ...base, status: "processing" } };
  }
  // Failed: retry with backoff, or give up per the retry configuration.
  const plan = await planFailure(db, inv, payment, { code: result.failureCode, message: result.failureMessage, retryable: result.retryable }, ctx);
  const failed = paymentFailed(db, payment, { ...base, failureCode: result.failureCode, failureMessage: result.failureMessage, nextRetryAt: plan.nextRetryAt }, ctx, { livemode });
  // The payment's row and event first, then the invoice's and subscription's (planFailure), then the metrics.
  await commit(db, merge(failed.change, change({ statements: [...plan.statements, ...metrics], audit: plan.audit, events: plan.events })), ctx);
  await plan.scheduleRetry(env);
  return { outcome: "failed", payment: failed.after, retryScheduledAt: plan.nextRetryAt };
}

/** Latest attempt of an invoice (the next one is this + 1). */
export async function latestAttempt(db: Db, invoiceId: string): Promise<PaymentRow | undefined> {
  return db.select().from(payments).where(eq(payments.invoiceId, invoiceId)).orderBy(desc(payments.attempt)).limit(1).get();
}
