import { and, asc, eq, gt, inArray, isNotNull, isNull, lt, or } from "drizzle-orm";
import type { Services } from "../../platform/services";
import { commitWithAudit } from "../../platform/audit";
import { assertChanged, isAssertionFailure } from "../../db/assert";
import { invoiceLines, invoices, type InvoiceStatus } from "../../db/schema";
import { creditedLinesOfInvoice } from "./creditable";
import { toInvoice } from "./serialize";
import { logError, PAGE, type InvoiceRow } from "./service";

type LineRow = typeof invoiceLines.$inferSelect;

export const ARCHIVABLE_STATUSES: readonly InvoiceStatus[] = ["paid", "void", "uncollectible"];
/** Per call, so one run stays well inside a Worker's subrequest budget (about four per invoice). */
/** Invoices one call archives: each is an R2 put and about six D1 statements (its credit notes, the guarded batch). */
export const ARCHIVE_MAX_PER_RUN = 100;

/** `invoices/<finalization year>/<id>.json`. */
export const archiveKeyOf = (inv: InvoiceRow) => `invoices/${new Date(inv.finalizedAt ?? inv.createdAt).getUTCFullYear()}/${inv.id}.json`;

export type ArchiveReport = { archived: number; invoiceIds: string[]; hasMore: boolean; errors: { id: string; error: string }[]; next?: string };

/**
 * Moves finalized invoices in a final state created before `olderThan` to R2: the document (the invoice
 * with its lines, as the API shows it) is written first, then one batch marks the invoice archived, deletes
 * its lines and audits it. A crash between the two leaves the invoice unarchived; the next run rewrites the
 * same document.
 */
export async function archiveInvoices(s: Services, olderThan: number, max = ARCHIVE_MAX_PER_RUN, from?: string | null): Promise<ArchiveReport> {
  const { db, audit: ctx } = s;
  const report: ArchiveReport = { archived: 0, invoiceIds: [], hasMore: false, errors: [] };
  // `from` (a previous call's `next`) skips past what that call tried, including invoices whose archiving failed.
  const [fromAt, fromId] = from ? [Number(from.slice(0, from.indexOf(":"))), from.slice(from.indexOf(":") + 1)] : [];
  let cursor: { createdAt: number; id: string } | undefined = fromId !== undefined && Number.isFinite(fromAt) ? { createdAt: fromAt!, id: fromId } : undefined;
  const candidates = (limit: number) =>
    db
      .select()
      .from(invoices)
      .where(
        and(
          inArray(invoices.status, [...ARCHIVABLE_STATUSES]),
          isNotNull(invoices.finalizedAt),
          isNull(invoices.archiveKey),
          lt(invoices.createdAt, olderThan),
          cursor ? or(gt(invoices.createdAt, cursor.createdAt), and(eq(invoices.createdAt, cursor.createdAt), gt(invoices.id, cursor.id))) : undefined,
        ),
      )
      .orderBy(asc(invoices.createdAt), asc(invoices.id))
      .limit(limit)
      .all();

  let seen = 0;
  for (;;) {
    if (seen >= max) {
      report.hasMore = (await candidates(1)).length > 0;
      if (report.hasMore && cursor) report.next = `${cursor.createdAt}:${cursor.id}`;
      break;
    }
    const limit = Math.min(PAGE, max - seen);
    const page = await candidates(limit);
    if (!page.length) break;
    seen += page.length;
    const lines = await db.select().from(invoiceLines).where(inArray(invoiceLines.invoiceId, page.map((i) => i.id))).all();
    for (const inv of page) {
      try {
        if (await archiveOne(s, inv, lines.filter((l) => l.invoiceId === inv.id))) report.invoiceIds.push(inv.id);
      } catch (e) {
        report.errors.push({ id: inv.id, error: String(e) });
        logError("invoice archive failed", { invoiceId: inv.id, error: String(e) });
      }
    }
    const last = page[page.length - 1]!;
    cursor = { createdAt: last.createdAt, id: last.id };
    if (page.length < limit) break;
  }
  report.archived = report.invoiceIds.length;
  return report;
}

async function archiveOne(s: Services, inv: InvoiceRow, lines: LineRow[]): Promise<boolean> {
  const { env, db, audit: ctx } = s;
  const key = archiveKeyOf(inv);
  const archived: InvoiceRow = { ...inv, archiveKey: key, archivedAt: ctx.now, updatedAt: ctx.now };
  await env.ARCHIVE.put(key, JSON.stringify(toInvoice(archived, lines, await creditedLinesOfInvoice(db, inv.id))), {
    httpMetadata: { contentType: "application/json" },
    customMetadata: { invoiceId: inv.id, lines: String(lines.length) },
  });
  try {
    await commitWithAudit(
      db,
      [
        db
          .update(invoices)
          .set({ archiveKey: key, archivedAt: ctx.now, updatedAt: ctx.now })
          .where(and(eq(invoices.id, inv.id), isNull(invoices.archiveKey), inArray(invoices.status, [...ARCHIVABLE_STATUSES]))),
        assertChanged(db),
        db.delete(invoiceLines).where(eq(invoiceLines.invoiceId, inv.id)),
      ],
      [{ action: "invoice.archived", targetType: "invoice", targetId: inv.id, before: { status: inv.status, lines: lines.length }, after: { archiveKey: key } }],
      ctx,
    );
    return true;
  } catch (e) {
    if (isAssertionFailure(e)) return false; // archived by a concurrent run, or its state changed
    throw e;
  }
}
