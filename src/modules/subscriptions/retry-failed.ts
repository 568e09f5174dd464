import { and, asc, eq, gt, isNotNull, isNull, lt, ne, or, sql } from "drizzle-orm";
import type { Services } from "../../platform/services";
import { commitWithAudit } from "../../platform/audit";
import { invoices, subscriptions } from "../../db/schema";
import { finalizeInvoice } from "../invoices/finalize";
import { runDue } from "./renewal";
import { logError, PAGE, pagesById } from "../invoices/service";

export type RetryFailedReport = {
  paymentRetries: { count: number; invoiceIds: string[] };
  finalized: { count: number; invoiceIds: string[] };
  regenerated: { count: number; subscriptionIds: string[]; invoiceIds: string[] };
  skipped: { count: number; invoiceIds: string[] };
  errors: { id: string; error: string }[];
};

/**
 * Picks up what failed in [start, end) (an invoice's date is its finalization, else its creation):
 * collection attempts below `maxRetries` are queued again, leftover drafts are finalized, and real-time
 * subscriptions whose period ended in the range without being renewed run their due steps.
 */
export async function retryFailed(s: Services, input: { start: number; end: number; maxRetries: number }): Promise<RetryFailedReport> {
  const { env, db, audit: ctx } = s;
  const r: RetryFailedReport = {
    paymentRetries: { count: 0, invoiceIds: [] },
    finalized: { count: 0, invoiceIds: [] },
    regenerated: { count: 0, subscriptionIds: [], invoiceIds: [] },
    skipped: { count: 0, invoiceIds: [] },
    errors: [],
  };
  const issuedAt = sql`coalesce(${invoices.finalizedAt}, ${invoices.createdAt})`;
  const inRange = and(sql`${issuedAt} >= ${input.start}`, sql`${issuedAt} < ${input.end}`);
  const after = (id: string | undefined) => (id ? gt(invoices.id, id) : undefined);

  // (a) Collection failed: queue the next attempt. Nothing on the invoice changes until the payment consumer runs.
  // A test clock's invoices are retried when their clock is advanced (invoices/dunning.ts), never in real time.
  const failed = (id: string | undefined) =>
    db
      .select({ id: invoices.id, attemptCount: invoices.attemptCount, lastError: invoices.lastError })
      .from(invoices)
      .where(and(eq(invoices.status, "open"), gt(invoices.amountDue, 0), or(gt(invoices.attemptCount, 0), isNotNull(invoices.lastError)), isNull(invoices.testClockId), inRange, after(id)))
      .orderBy(asc(invoices.id))
      .limit(PAGE)
      .all();
  for await (const page of pagesById(failed)) {
    const retry = page.filter((i) => i.attemptCount < input.maxRetries);
    for (const i of page) if (i.attemptCount >= input.maxRetries) r.skipped.invoiceIds.push(i.id);
    if (!retry.length) continue;
    await commitWithAudit(
      db,
      [],
      retry.map((i) => ({ action: "invoice.retry_requested", targetType: "invoice", targetId: i.id, before: { attemptCount: i.attemptCount, lastError: i.lastError }, after: { attempt: i.attemptCount + 1, maxRetries: input.maxRetries } })),
      ctx,
    );
    for (const i of retry) {
      try {
        await s.queues.payments.send({ type: "payment.attempt", invoiceId: i.id, attempt: i.attemptCount + 1 });
        r.paymentRetries.invoiceIds.push(i.id);
      } catch (e) {
        r.errors.push({ id: i.id, error: `payment enqueue failed: ${String(e)}` });
        logError("payment retry enqueue failed", { invoiceId: i.id, error: String(e) });
      }
    }
  }

  // (b) Drafts an interrupted run left behind (manual drafts are being edited; test-clock drafts move with their clock).
  const drafts = (id: string | undefined) =>
    db
      .select({ id: invoices.id })
      .from(invoices)
      .where(and(eq(invoices.status, "draft"), ne(invoices.billingReason, "manual"), isNull(invoices.testClockId), inRange, after(id)))
      .orderBy(asc(invoices.id))
      .limit(PAGE)
      .all();
  for await (const page of pagesById(drafts)) {
    for (const d of page) {
      try {
        if (await finalizeInvoice(s, d.id)) r.finalized.invoiceIds.push(d.id);
      } catch (e) {
        r.errors.push({ id: d.id, error: String(e) });
      }
    }
  }

  // (c) Generation failures: a real-time period that ended (in the range, in the past) and was never renewed.
  const stale = (id: string | undefined) =>
    db
      .select({ id: subscriptions.id })
      .from(subscriptions)
      .where(
        and(
          isNull(subscriptions.testClockId),
          ne(subscriptions.status, "canceled"),
          sql`${subscriptions.currentPeriodEnd} >= ${input.start}`,
          lt(subscriptions.currentPeriodEnd, Math.min(input.end, ctx.now)),
          id ? gt(subscriptions.id, id) : undefined,
        ),
      )
      .orderBy(asc(subscriptions.id))
      .limit(PAGE)
      .all();
  for await (const page of pagesById(stale)) {
    for (const sub of page) {
      try {
        const steps = await runDue(s, sub.id, ctx.now);
        if (!steps.length) continue; // still inside the late-usage grace window, or moved on concurrently
        r.regenerated.subscriptionIds.push(sub.id);
        for (const step of steps) if (step.invoiceId) r.regenerated.invoiceIds.push(step.invoiceId);
      } catch (e) {
        r.errors.push({ id: sub.id, error: String(e) });
      }
    }
  }

  r.paymentRetries.count = r.paymentRetries.invoiceIds.length;
  r.finalized.count = r.finalized.invoiceIds.length;
  r.regenerated.count = r.regenerated.subscriptionIds.length;
  r.skipped.count = r.skipped.invoiceIds.length;
  return r;
}
