import { and, asc, eq, gt, isNotNull, isNull, lt, ne, or, sql } from "drizzle-orm";
import type { Services } from "../../platform/services";
import { commitWithAudit } from "../../platform/audit";
import { invoices, subscriptions } from "../../db/schema";
import { finalizeInvoice } from "../invoices/finalize";
import { runDueSteps } from "./renewal";
import { logError, PAGE } from "../invoices/service";
import { sendOnce, stepKey } from "../../platform/continuations";

export type RetryFailedReport = {
  paymentRetries: { count: number; invoiceIds: string[] };
  finalized: { count: number; invoiceIds: string[] };
  regenerated: { count: number; subscriptionIds: string[]; invoiceIds: string[] };
  skipped: { count: number; invoiceIds: string[] };
  errors: { id: string; error: string }[];
  /** The rest goes on in `invoices.retry_failed` messages on the tasks queue (their reports are logged). */
  continues: boolean;
};

export type RetryFailedInput = { start: number; end: number; maxRetries: number };
/** Where a run stands: the phase (failed collections, then drafts, then missed renewals) and the last id done. */
export type RetryFailedCursor = { phase: "payments" | "drafts" | "renewals"; after: string | null };

/**
 * Estimated D1 queries one invocation of a run may spend (Cloudflare allows 1,000): a failed collection costs one (its
 * audit row; the page read and the send aside), a draft's finalization about 12, a renewal step about 30.
 */
export const RETRY_BUDGET = 600;
const COST = { retry: 1, page: 1, draft: 12, step: 30 } as const;

/**
 * Picks up what failed in [start, end) (an invoice's date is its finalization, else its creation): collection
 * attempts below `maxRetries` are queued again, leftover drafts are finalized, and real-time subscriptions whose
 * period ended in the range without being renewed run their due steps. Each invocation spends at most `budget`
 * (estimated D1 queries); the rest continues from `from` in a tasks-queue message, so any number fits.
 */
export async function retryFailed(s: Services, input: RetryFailedInput, budget = RETRY_BUDGET, from: RetryFailedCursor = { phase: "payments", after: null }, step = 0): Promise<RetryFailedReport> {
  const { db, audit: ctx } = s;
  const r: RetryFailedReport = {
    paymentRetries: { count: 0, invoiceIds: [] },
    finalized: { count: 0, invoiceIds: [] },
    regenerated: { count: 0, subscriptionIds: [], invoiceIds: [] },
    skipped: { count: 0, invoiceIds: [] },
    errors: [],
    continues: false,
  };
  let left = budget;
  const issuedAt = sql`coalesce(${invoices.finalizedAt}, ${invoices.createdAt})`;
  const inRange = and(sql`${issuedAt} >= ${input.start}`, sql`${issuedAt} < ${input.end}`);
  const after = (id: string | null) => (id ? gt(invoices.id, id) : undefined);
  const stop = async (cursor: RetryFailedCursor) => {
    // Once per step, whatever a duplicate delivery of this one does (platform/continuations.ts).
    const next = { type: "invoices.retry_failed" as const, input, cursor, now: ctx.now, actor: ctx.actor, step: step + 1 };
    await sendOnce(s.db, stepKey(`invoices.retry_failed|${ctx.now}|${ctx.actor.id}|${JSON.stringify(input)}`, step + 1), s.clock.wall, () => s.queues.tasks.send(next));
    r.continues = true;
  };
  const phases = ["payments", "drafts", "renewals"] as const;
  const first = phases.indexOf(from.phase);

  // (a) Collection failed: queue the next attempt. Nothing on the invoice changes until the payment consumer runs.
  // A test clock's invoices are retried when their clock is advanced (invoices/dunning.ts), never in real time.
  if (first <= 0) {
    let cursor = from.phase === "payments" ? from.after : null;
    for (;;) {
      const size = Math.min(PAGE, Math.floor((left - COST.page) / COST.retry));
      if (size < 1) return (await stop({ phase: "payments", after: cursor }), finish(r));
      const page = await db
        .select({ id: invoices.id, attemptCount: invoices.attemptCount, lastError: invoices.lastError })
        .from(invoices)
        .where(and(eq(invoices.status, "open"), gt(invoices.amountDue, 0), or(gt(invoices.attemptCount, 0), isNotNull(invoices.lastError)), isNull(invoices.testClockId), inRange, after(cursor)))
        .orderBy(asc(invoices.id))
        .limit(size)
        .all();
      left -= COST.page + page.length * COST.retry;
      const retry = page.filter((i) => i.attemptCount < input.maxRetries);
      for (const i of page) if (i.attemptCount >= input.maxRetries) r.skipped.invoiceIds.push(i.id);
      if (retry.length) {
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
      if (page.length < size) break;
      cursor = page[page.length - 1]!.id;
    }
  }

  // (b) Drafts an interrupted run left behind (manual drafts are being edited; test-clock drafts move with their clock).
  if (first <= 1) {
    let cursor = from.phase === "drafts" ? from.after : null;
    for (;;) {
      const size = Math.min(PAGE, Math.floor((left - COST.page) / COST.draft));
      if (size < 1) return (await stop({ phase: "drafts", after: cursor }), finish(r));
      const page = await db
        .select({ id: invoices.id })
        .from(invoices)
        .where(and(eq(invoices.status, "draft"), ne(invoices.billingReason, "manual"), isNull(invoices.testClockId), inRange, after(cursor)))
        .orderBy(asc(invoices.id))
        .limit(size)
        .all();
      left -= COST.page;
      for (const d of page) {
        left -= COST.draft;
        try {
          if (await finalizeInvoice(s, d.id)) r.finalized.invoiceIds.push(d.id);
        } catch (e) {
          r.errors.push({ id: d.id, error: String(e) });
        }
      }
      if (page.length < size) break;
      cursor = page[page.length - 1]!.id;
    }
  }

  // (c) Generation failures: a real-time period that ended (in the range, in the past) and was never renewed.
  let cursor = from.phase === "renewals" ? from.after : null;
  for (;;) {
    const steps = Math.floor((left - COST.page) / COST.step);
    if (steps < 1) return (await stop({ phase: "renewals", after: cursor }), finish(r));
    const page = await db
      .select({ id: subscriptions.id })
      .from(subscriptions)
      .where(
        and(
          isNull(subscriptions.testClockId),
          ne(subscriptions.status, "canceled"),
          sql`${subscriptions.currentPeriodEnd} >= ${input.start}`,
          lt(subscriptions.currentPeriodEnd, Math.min(input.end, ctx.now)),
          cursor ? gt(subscriptions.id, cursor) : undefined,
        ),
      )
      .orderBy(asc(subscriptions.id))
      .limit(Math.min(PAGE, steps))
      .all();
    left -= COST.page;
    for (const sub of page) {
      const share = Math.floor(left / COST.step);
      // Out of budget before this one: it and the rest go on in the next message.
      if (share < 1) return (await stop({ phase: "renewals", after: cursor }), finish(r));
      try {
        const done = await runDueSteps(s, sub.id, ctx.now, share);
        left -= Math.max(1, done.steps.length) * COST.step;
        if (done.steps.length) {
          r.regenerated.subscriptionIds.push(sub.id);
          for (const step of done.steps) if (step.invoiceId) r.regenerated.invoiceIds.push(step.invoiceId);
        }
        // Still due after its share (far behind): the next message starts with it again.
        if (done.more) return (await stop({ phase: "renewals", after: cursor }), finish(r));
      } catch (e) {
        left -= COST.step;
        r.errors.push({ id: sub.id, error: String(e) });
      }
      cursor = sub.id;
    }
    if (page.length < Math.min(PAGE, steps)) break;
  }
  return finish(r);
}

function finish(r: RetryFailedReport): RetryFailedReport {
  r.paymentRetries.count = r.paymentRetries.invoiceIds.length;
  r.finalized.count = r.finalized.invoiceIds.length;
  r.regenerated.count = r.regenerated.subscriptionIds.length;
  r.skipped.count = r.skipped.invoiceIds.length;
  return r;
}
