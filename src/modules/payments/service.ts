import { and, asc, eq, inArray, isNotNull, lte, sql } from "drizzle-orm";
import type { Db } from "../../db/client";
import { commitWithAudit, type AuditContext } from "../../db/audit";
import { invoices, payments, subscriptions } from "../../db/schema";
import { formatMinor } from "../../domain/money";
import { iso } from "../../lib/time";
import type { PaymentMessage } from "../../../queues/messages";
import { retryConfig } from "./config";

type PaymentRow = typeof payments.$inferSelect;

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

/** Latest attempt per open invoice, when that attempt failed: what "failed payments" means operationally. */
export async function failedLatestAttempts(db: Db): Promise<PaymentRow[]> {
  return db
    .select({ p: payments })
    .from(payments)
    .innerJoin(invoices, eq(invoices.id, payments.invoiceId))
    .where(
      and(
        eq(invoices.status, "open"),
        eq(payments.status, "failed"),
        sql`${payments.attempt} = (SELECT max(p2.attempt) FROM payments p2 WHERE p2.invoice_id = ${payments.invoiceId})`,
      ),
    )
    .orderBy(asc(payments.createdAt))
    .all()
    .then((rows) => rows.map((r) => r.p));
}

/** Sends the next attempt of each given failed payment to the payments queue. */
export async function requeue(env: Env, rows: PaymentRow[], ctx: AuditContext, db: Db): Promise<string[]> {
  if (!rows.length) return [];
  const messages = rows.map((p) => ({ body: { type: "payment.attempt", invoiceId: p.invoiceId, attempt: p.attempt + 1 } satisfies PaymentMessage }));
  for (let i = 0; i < messages.length; i += 100) await env.PAYMENT_QUEUE.sendBatch(messages.slice(i, i + 100));
  await commitWithAudit(db, [], rows.map((p) => ({ action: "payment.requeued", targetType: "invoice", targetId: p.invoiceId, after: { attempt: p.attempt + 1 } })), ctx);
  return rows.map((p) => p.invoiceId);
}

/** Hourly: retries whose delay was beyond what a queue message can carry (12 h) are sent when due. */
export async function sendDueRetries(env: Env, db: Db, now: number): Promise<number> {
  const config = await retryConfig(db);
  const due = (await failedLatestAttempts(db)).filter((p) => p.nextRetryAt !== null && p.nextRetryAt <= now && p.attempt < config.maxAttempts);
  if (!due.length) return 0;
  // Clear nextRetryAt first so the next run does not send them again; the attempt key makes a duplicate harmless anyway.
  await db.update(payments).set({ nextRetryAt: null }).where(inArray(payments.id, due.map((p) => p.id)));
  const messages = due.map((p) => ({ body: { type: "payment.attempt", invoiceId: p.invoiceId, attempt: p.attempt + 1 } satisfies PaymentMessage }));
  for (let i = 0; i < messages.length; i += 100) await env.PAYMENT_QUEUE.sendBatch(messages.slice(i, i + 100));
  return due.length;
}

/** Daily: invoices of past_due subscriptions still unpaid gracePeriodDays after collection gave up → uncollectible. */
export async function markUncollectible(db: Db, ctx: AuditContext): Promise<string[]> {
  const config = await retryConfig(db);
  const cutoff = ctx.now - config.gracePeriodDays * 86_400_000;
  const rows = await db
    .select({ id: invoices.id })
    .from(invoices)
    .innerJoin(subscriptions, eq(subscriptions.id, invoices.subscriptionId))
    .where(and(eq(invoices.status, "open"), eq(subscriptions.status, "past_due"), isNotNull(invoices.lastError), lte(invoices.updatedAt, cutoff)))
    .all();
  for (const r of rows) {
    await commitWithAudit(
      db,
      [db.update(invoices).set({ status: "uncollectible", updatedAt: ctx.now }).where(and(eq(invoices.id, r.id), eq(invoices.status, "open")))],
      [{ action: "invoice.marked_uncollectible", targetType: "invoice", targetId: r.id, reason: `unpaid ${config.gracePeriodDays} days after the last collection attempt` }],
      ctx,
    );
  }
  return rows.map((r) => r.id);
}

/** On resume: parked charges go back to the payments queue in the order they were parked. */
export async function releaseParked(env: Env, db: Db): Promise<number> {
  const parked = await db.select().from(payments).where(eq(payments.status, "parked")).orderBy(asc(payments.createdAt)).all();
  if (!parked.length) return 0;
  await db.update(payments).set({ status: "pending", updatedAt: Date.now() }).where(inArray(payments.id, parked.map((p) => p.id)));
  const messages = parked.map((p) => ({ body: { type: "payment.attempt", invoiceId: p.invoiceId, attempt: p.attempt } satisfies PaymentMessage }));
  for (let i = 0; i < messages.length; i += 100) await env.PAYMENT_QUEUE.sendBatch(messages.slice(i, i + 100));
  return parked.length;
}
