import { and, asc, count, desc, eq, gte, inArray, isNull, lt, sql, type SQLWrapper } from "drizzle-orm";
import { alias } from "drizzle-orm/sqlite-core";
import type { Db } from "../../db/client";
import { auditLog, creditNotes, customers, invoices, payments, plans, refunds, subscriptions } from "../../db/schema";
import { retained } from "../retention/run";
import { ok, type Outcome } from "../../platform/failure";

// Money that moved in a window: invoiced, collected, refunded. Per currency (and plan), never mixed.
// Test-clock invoices live in simulated time and are left out, with their payments and refunds.

/**
 * Audit actions that record a payment's success. Their time is when the money was collected: a payment's
 * `updatedAt` moves again when it is refunded, so it would put an old payment into the day of its refund.
 */
export const PAYMENT_SUCCESS_ACTIONS = ["payment.processed", "payment.reconciled_by_webhook"];

export const FINALIZED_STATUSES = ["open", "paid", "uncollectible"] as const;

export const FLOWS_BASIS =
  "invoiced: invoices finalized in the window and not void (total, after discount and tax, less the credit notes issued against them); " +
  "collected: succeeded payments whose success was recorded in the window (audit time of payment.processed / payment.reconciled_by_webhook); " +
  "refunded: succeeded refunds last updated in the window; net = collected − refunded. Plans are the invoice's subscription's current plan. Test-clock invoices are excluded.";

export type FlowRow = { currency: string; planId: string | null; planName: string | null; amountMinor: number; count: number };

const latestPlan = alias(plans, "latest_plan");
/** An invoice's total less its issued (not void) credit notes: a credited amount is not revenue. */
export const netOfCredit = sql`(${invoices.total} - coalesce((select sum(${creditNotes.total}) from ${creditNotes} where ${creditNotes.invoiceId} = ${invoices.id} and ${creditNotes.status} = 'issued'), 0))`;
const realInvoice = isNull(invoices.testClockId);
export const sumOf = (col: SQLWrapper) => sql<number>`coalesce(sum(${col}), 0)`.mapWith(Number);

/** Succeeded payments whose success was recorded in [from, to), by currency and plan. */
export async function collectedBetween(db: Db, from: number, to: number): Promise<Outcome<FlowRow[], "unprocessable">> {
  // It reads payment rows and their success audit rows: both may have moved to R2 (refunded payments never do).
  const kept = await retained(db, ["payment_attempts", "audit"], from, "Collected revenue");
  if (!kept.ok) return kept;
  const succeeded = db
    .selectDistinct({ paymentId: auditLog.targetId })
    .from(auditLog)
    .where(and(inArray(auditLog.action, PAYMENT_SUCCESS_ACTIONS), gte(auditLog.at, from), lt(auditLog.at, to)))
    .as("succeeded");
  const rows = await db
    .select({ currency: payments.currency, planId: subscriptions.planId, planName: latestPlan.name, amountMinor: sumOf(payments.amount), count: count() })
    .from(payments)
    .innerJoin(succeeded, eq(succeeded.paymentId, payments.id))
    .innerJoin(invoices, eq(invoices.id, payments.invoiceId))
    .leftJoin(subscriptions, eq(subscriptions.id, invoices.subscriptionId))
    .leftJoin(latestPlan, and(eq(latestPlan.id, subscriptions.planId), eq(latestPlan.isLatest, true)))
    .where(and(eq(payments.status, "succeeded"), realInvoice))
    .groupBy(payments.currency, subscriptions.planId, latestPlan.name)
    .all();
  return ok(rows);
}

/** Succeeded refunds last updated in [from, to), by currency and the plan of the refunded invoice. */
export async function refundedBetween(db: Db, from: number, to: number): Promise<FlowRow[]> {
  return db
    .select({ currency: refunds.currency, planId: subscriptions.planId, planName: latestPlan.name, amountMinor: sumOf(refunds.amount), count: count() })
    .from(refunds)
    .innerJoin(payments, eq(payments.id, refunds.paymentId))
    .innerJoin(invoices, eq(invoices.id, payments.invoiceId))
    .leftJoin(subscriptions, eq(subscriptions.id, invoices.subscriptionId))
    .leftJoin(latestPlan, and(eq(latestPlan.id, subscriptions.planId), eq(latestPlan.isLatest, true)))
    .where(and(eq(refunds.status, "succeeded"), gte(refunds.updatedAt, from), lt(refunds.updatedAt, to), realInvoice))
    .groupBy(refunds.currency, subscriptions.planId, latestPlan.name)
    .all();
}

const finalizedBetween = (from: number, to: number) =>
  and(inArray(invoices.status, [...FINALIZED_STATUSES]), gte(invoices.finalizedAt, from), lt(invoices.finalizedAt, to), realInvoice);

/** Invoices finalized in [from, to) and not void: their totals by currency and plan. */
export async function invoicedBetween(db: Db, from: number, to: number): Promise<FlowRow[]> {
  return db
    .select({ currency: invoices.currency, planId: subscriptions.planId, planName: latestPlan.name, amountMinor: sumOf(netOfCredit), count: count() })
    .from(invoices)
    .leftJoin(subscriptions, eq(subscriptions.id, invoices.subscriptionId))
    .leftJoin(latestPlan, and(eq(latestPlan.id, subscriptions.planId), eq(latestPlan.isLatest, true)))
    .where(finalizedBetween(from, to))
    .groupBy(invoices.currency, subscriptions.planId, latestPlan.name)
    .all();
}

export const breakdownGroups = ["plan", "customer", "currency", "billing_reason"] as const;
export type BreakdownGroup = (typeof breakdownGroups)[number];

export type BreakdownRow = { key: string | null; label: string | null; currency: string; invoicedMinor: number; collectedMinor: number; invoices: number };

function groupKey(groupBy: BreakdownGroup) {
  switch (groupBy) {
    case "plan":
      return { key: sql<string | null>`${subscriptions.planId}`, label: sql<string | null>`${latestPlan.name}` };
    case "customer":
      return { key: sql<string | null>`${invoices.customerId}`, label: sql<string | null>`coalesce(${customers.name}, ${customers.email})` };
    case "currency":
      return { key: sql<string | null>`${invoices.currency}`, label: sql<string | null>`${invoices.currency}` };
    case "billing_reason":
      return { key: sql<string | null>`${invoices.billingReason}`, label: sql<string | null>`${invoices.billingReason}` };
  }
}

/**
 * Finalized invoices (open, paid, uncollectible) of [from, to) per group and currency: their totals and what was
 * paid on them; largest first within each currency. `limit + 1` rows are read so the caller can tell `hasMore`.
 */
export async function invoiceBreakdown(db: Db, groupBy: BreakdownGroup, from: number, to: number, limit: number): Promise<BreakdownRow[]> {
  const { key, label } = groupKey(groupBy);
  const invoiced = sumOf(netOfCredit);
  return db
    .select({ key, label, currency: invoices.currency, invoicedMinor: invoiced, collectedMinor: sumOf(invoices.amountPaid), invoices: count() })
    .from(invoices)
    .leftJoin(subscriptions, eq(subscriptions.id, invoices.subscriptionId))
    .leftJoin(latestPlan, and(eq(latestPlan.id, subscriptions.planId), eq(latestPlan.isLatest, true)))
    .leftJoin(customers, eq(customers.id, invoices.customerId))
    .where(finalizedBetween(from, to))
    .groupBy(key, label, invoices.currency)
    .orderBy(asc(invoices.currency), desc(invoiced), asc(key))
    .limit(limit + 1)
    .all();
}

/** Totals of the same invoices per currency, whatever the grouping or page size. */
export async function invoiceTotals(db: Db, from: number, to: number): Promise<Omit<BreakdownRow, "key" | "label">[]> {
  return db
    .select({ currency: invoices.currency, invoicedMinor: sumOf(netOfCredit), collectedMinor: sumOf(invoices.amountPaid), invoices: count() })
    .from(invoices)
    .where(finalizedBetween(from, to))
    .groupBy(invoices.currency)
    .orderBy(asc(invoices.currency))
    .all();
}
