import { and, eq, gt, sql } from "drizzle-orm";
import type { Services } from "../../platform/services";
import { isAssertionFailure } from "../../db/assert";
import { invoiceLines, invoices, settings } from "../../db/schema";
import { sendAll } from "../../platform/queue-send";
import { commit } from "../../platform/change-set";
import { finalizedRow, invoiceFinalized, invoiceLinesOf } from "./lifecycle";
import { DEFAULT_LINK_DAYS } from "./hosted-link";

export { PAYMENT_TERMS_MS } from "./lifecycle";

export const invoiceNumber = (year: number, n: number) => `INV-${year}-${String(n).padStart(6, "0")}`;

/**
 * draft → open (or paid when nothing is due), taking the next number of the finalization year: the invoice owner's
 * transition (invoices/lifecycle.ts, with its events), which allocates the number inside its own batch. Two D1 round
 * trips: the invoice with its lines, then the batch. Null when the invoice is not (or no longer) a draft.
 */
export async function finalizeInvoice(s: Services, invoiceId: string): Promise<typeof invoices.$inferSelect | null> {
  const { db, audit: ctx } = s;
  const [found, lines, documents] = await db.batch([
    db.select().from(invoices).where(eq(invoices.id, invoiceId)),
    db.select().from(invoiceLines).where(eq(invoiceLines.invoiceId, invoiceId)),
    // The hosted link's lifetime (the finalizing batch makes the link), in the same round trip.
    db.select().from(settings).where(eq(settings.key, "documents")),
  ]);
  const inv = found[0];
  if (!inv || inv.status !== "draft") return null;
  const linkDays = (documents[0]?.value as { hostedLinkDays?: number } | undefined)?.hostedLinkDays ?? DEFAULT_LINK_DAYS;
  const { change: cs } = invoiceFinalized(db, inv, inv.archiveKey === null ? lines : await invoiceLinesOf(db, inv), ctx, linkDays);
  let results: unknown[];
  try {
    ({ results } = await commit(db, cs, ctx));
  } catch (e) {
    if (isAssertionFailure(e)) return null; // finalized (or voided) concurrently: that run did the work
    throw e;
  }
  const after = finalizedRow(results, cs.statements.length);
  await afterFinalized(s, after);
  return after;
}

/**
 * What follows a finalization's commit: its document (PDF and hosted link) is rendered on the jobs queue (GET
 * …/pdf renders it on demand if this message is lost), and an open invoice is charged through the payments queue.
 */
export async function afterFinalized(s: Services, invoice: { id: string; status: string }): Promise<void> {
  await s.queues.jobs.send({ type: "invoice.document", invoiceId: invoice.id }).catch((e) =>
    s.log.error("document enqueue failed; GET /api/v1/invoices/:id/pdf renders it", { invoiceId: invoice.id, error: String(e) }),
  );
  if (invoice.status === "open") await enqueueCharge(s, invoice.id);
}

/** The invoice's first collection attempt, after the batch that opened it committed. */
export async function enqueueCharge(s: Services, invoiceId: string): Promise<void> {
  await s.queues.payments.send({ type: "payment.attempt", invoiceId, attempt: 1 }).catch((e) =>
    s.log.error("payment enqueue failed; retry-failed will pick it up", { invoiceId, error: String(e) }),
  );
}

/** Drafts left by an interrupted run (or made by generation) are finalized by the next run. */
export async function finalizeDrafts(s: Services, where: { subscriptionIds?: string[]; testClockId?: string | null } = {}) {
  const { db } = s;
  const rows = await db
    .select({ id: invoices.id })
    .from(invoices)
    .where(
      and(
        eq(invoices.status, "draft"),
        sql`${invoices.billingReason} != 'manual'`,
        where.testClockId === undefined ? undefined : where.testClockId === null ? sql`${invoices.testClockId} IS NULL` : eq(invoices.testClockId, where.testClockId),
      ),
    )
    .all();
  const done = [];
  for (const r of rows) {
    const f = await finalizeInvoice(s, r.id);
    if (f) done.push(f);
  }
  return done;
}

/** Drafts finalized per invocation: each takes about a dozen D1 queries and one queue send (docs/scale.md). */
export const FINALIZE_PAGE = 25;

/**
 * One page of leftover drafts (real time when `testClockId` is null, else one clock's), by id after the keyset cursor
 * `after`; `next` is the cursor of the following page (null: done), so no invocation selects an unbounded set.
 */
export async function finalizeDraftsPage(s: Services, testClockId: string | null, after: string | null, pageSize = FINALIZE_PAGE) {
  const { db } = s;
  const rows = await db
    .select({ id: invoices.id })
    .from(invoices)
    .where(
      and(
        eq(invoices.status, "draft"),
        sql`${invoices.billingReason} != 'manual'`,
        testClockId === null ? sql`${invoices.testClockId} IS NULL` : eq(invoices.testClockId, testClockId),
        after === null ? undefined : gt(invoices.id, after),
      ),
    )
    .orderBy(invoices.id)
    .limit(pageSize)
    .all();
  const done = [];
  for (const r of rows) {
    const f = await finalizeInvoice(s, r.id);
    if (f) done.push(f);
  }
  return { finalized: done.map((f) => f.id), next: rows.length === pageSize ? rows[rows.length - 1]!.id : null };
}

/** finalizeDraftsPage, then the next page as a fresh tasks-queue message (the cron's and generate-pending's drafts). */
export async function finalizeDraftsChained(s: Services, testClockId: string | null, after: string | null) {
  const r = await finalizeDraftsPage(s, testClockId, after);
  if (r.next) await s.queues.tasks.sendAll([{ type: "invoices.finalize_drafts", now: s.audit.now, after: r.next, testClockId }]);
  return r;
}
