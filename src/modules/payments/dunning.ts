import { and, asc, eq, gt, inArray, isNotNull, isNull, lt, lte, sql, type SQL } from "drizzle-orm";
import type { Services } from "../../platform/services";
import type { Db } from "../../db/client";
import type { AuditContext } from "../../platform/audit";
import { isAssertionFailure } from "../../db/assert";
import { commit } from "../../platform/change-set";
import { invoiceMarkedUncollectible } from "../invoices/lifecycle";
import { invoices, payments, subscriptions } from "../../db/schema";
import type { PaymentMessage } from "../../../queues/messages";
import { retryConfig } from "./config";
import { logError } from "../invoices/service";

/**
 * Whose invoices a dunning run moves: the live ones (`testClockId: null`, the cron, with the real time) or one test
 * clock's (on its advance, with the clock's time). A clock's invoices never move in real time, nor live ones on an advance.
 */
export type ClockScope = { testClockId: string | null };

const inScope = (scope: ClockScope): SQL => (scope.testClockId === null ? isNull(invoices.testClockId) : eq(invoices.testClockId, scope.testClockId));

// Rows per page: the clearing update binds every id, under D1's 100 bound parameters. Pages per run keep one
// invocation well inside its subrequest budget; what is left is picked up by the next run.
const PAGE = 50;
const MAX_PAGES = 20;

/**
 * Retries whose delay was beyond what a queue message can carry (12 h), and every retry of a test clock's invoice,
 * are sent when `now` reaches their `nextRetryAt`. Each is claimed by clearing `nextRetryAt` (guarded), so concurrent
 * runs send it once; the attempt key makes a duplicate message harmless anyway. Returns how many were sent.
 */
export async function sendDueRetries(s: Services, now: number, scope: ClockScope): Promise<number> {
  const { db } = s;
  const config = await retryConfig(db);
  let sentCount = 0;
  let after: string | undefined;
  for (let page = 0; page < MAX_PAGES; page++) {
    const due = await db
      .select({ id: payments.id })
      .from(payments)
      .innerJoin(invoices, eq(invoices.id, payments.invoiceId))
      .where(
        and(
          eq(payments.status, "failed"),
          isNotNull(payments.nextRetryAt),
          lte(payments.nextRetryAt, now),
          lt(payments.attempt, config.maxAttempts),
          eq(invoices.status, "open"),
          inScope(scope),
          // Only the invoice's latest attempt: an older failure's retry already happened.
          sql`${payments.attempt} = (SELECT max(p2.attempt) FROM payments p2 WHERE p2.invoice_id = ${payments.invoiceId})`,
          after ? gt(payments.id, after) : undefined,
        ),
      )
      .orderBy(asc(payments.id))
      .limit(PAGE)
      .all();
    if (!due.length) break;
    after = due[due.length - 1]!.id;
    const claimed = await db
      .update(payments)
      .set({ nextRetryAt: null })
      .where(and(inArray(payments.id, due.map((p) => p.id)), isNotNull(payments.nextRetryAt)))
      .returning({ invoiceId: payments.invoiceId, attempt: payments.attempt });
    const messages = claimed.map((p) => ({ type: "payment.attempt", invoiceId: p.invoiceId, attempt: p.attempt + 1 }) satisfies PaymentMessage);
    await s.queues.payments.sendAll(messages);
    sentCount += messages.length;
    if (due.length < PAGE) break;
  }
  return sentCount;
}

/** Invoices one invocation of the daily task marks (each a read and an audited transition, ~7 queries). */
export const UNCOLLECTIBLE_PER_INVOCATION = 100;

/**
 * Invoices of past_due subscriptions still unpaid `gracePeriodDays` after the last collection attempt (the invoice's
 * last change, in its scope's time) become uncollectible, one audited guarded transition each. Returns their ids and,
 * when `paging.max` stopped the run, the cursor to go on from (`next`; null when every due invoice was seen).
 */
export async function markUncollectible(db: Db, ctx: AuditContext, scope: ClockScope, paging: { after?: string | null; max?: number } = {}): Promise<{ marked: string[]; next: string | null }> {
  const config = await retryConfig(db);
  const cutoff = ctx.now - config.gracePeriodDays * 86_400_000;
  const marked: string[] = [];
  const failed: string[] = [];
  let after: string | undefined = paging.after ?? undefined;
  let seen = 0;
  let next: string | null = null;
  for (let page = 0; page < MAX_PAGES; page++) {
    if (paging.max !== undefined && seen >= paging.max) {
      next = after ?? null;
      break;
    }
    const rows = await db
      .select({ id: invoices.id })
      .from(invoices)
      .innerJoin(subscriptions, eq(subscriptions.id, invoices.subscriptionId))
      .where(
        and(
          eq(invoices.status, "open"),
          eq(subscriptions.status, "past_due"),
          isNotNull(invoices.lastError),
          lte(invoices.updatedAt, cutoff),
          inScope(scope),
          after ? gt(invoices.id, after) : undefined,
        ),
      )
      .orderBy(asc(invoices.id))
      .limit(paging.max === undefined ? PAGE : Math.min(PAGE, paging.max - seen))
      .all();
    seen += rows.length;
    for (const r of rows) {
      try {
        // The row as read now: the page's query is a moment old (paid or voided meanwhile is skipped).
        const inv = await db.select().from(invoices).where(eq(invoices.id, r.id)).get();
        if (inv?.status !== "open") continue;
        await commit(db, await invoiceMarkedUncollectible(db, inv, `unpaid ${config.gracePeriodDays} days after the last collection attempt`, ctx), ctx);
        marked.push(r.id);
      } catch (e) {
        if (isAssertionFailure(e)) continue; // paid or voided meanwhile
        failed.push(r.id);
        logError("marking an invoice uncollectible failed", { invoiceId: r.id, error: String(e) });
      }
    }
    if (rows.length < (paging.max === undefined ? PAGE : Math.min(PAGE, paging.max - seen + rows.length))) break;
    after = rows[rows.length - 1]!.id;
  }
  // The others are marked; these are left for the next run, and the run is reported as failed.
  if (failed.length) throw new Error(`${failed.length} invoices could not be marked uncollectible (first: ${failed[0]})`);
  return { marked, next };
}
