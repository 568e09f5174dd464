import { and, eq, inArray, sql } from "drizzle-orm";
import type { Db } from "../../db/client";
import { builtOnce } from "../../db/prepared";
import { creditNoteLines, creditNotes } from "../../db/schema";
import type { CreditedLine } from "../../domain/creditable";

export type NoteCreditedLine = CreditedLine & { creditNoteId: string };

/**
 * The lines of the issued credit notes of each invoice (by invoice id; void notes do not count): what the invoice
 * object's `creditable` and the credit-note service's limits are computed from. One query for up to 100 invoices.
 */
export async function creditedLinesOf(db: Db, invoiceIds: readonly string[]): Promise<Map<string, NoteCreditedLine[]>> {
  const out = new Map<string, NoteCreditedLine[]>();
  if (!invoiceIds.length) return out;
  const rows = await db
    .select({ invoiceId: creditNotes.invoiceId, creditNoteId: creditNotes.id, invoiceLineId: creditNoteLines.invoiceLineId, amount: creditNoteLines.amount, taxAmount: creditNoteLines.taxAmount })
    .from(creditNoteLines)
    .innerJoin(creditNotes, eq(creditNotes.id, creditNoteLines.creditNoteId))
    .where(and(inArray(creditNotes.invoiceId, [...invoiceIds]), eq(creditNotes.status, "issued")))
    .all();
  for (const r of rows) out.set(r.invoiceId, [...(out.get(r.invoiceId) ?? []), { creditNoteId: r.creditNoteId, invoiceLineId: r.invoiceLineId, amount: r.amount, taxAmount: r.taxAmount }]);
  return out;
}

/**
 * The issued credit notes' lines of one invoice (`invoiceId` bound by the caller's `builtOnce`): a query to put in a
 * caller's batched read, e.g. the charge's, which needs them for its invoice.paid event.
 */
export const creditedLinesQuery = (db: Db, invoiceId: ReturnType<typeof sql.placeholder>) =>
  db
    .select({ creditNoteId: creditNotes.id, invoiceLineId: creditNoteLines.invoiceLineId, amount: creditNoteLines.amount, taxAmount: creditNoteLines.taxAmount })
    .from(creditNoteLines)
    .innerJoin(creditNotes, eq(creditNotes.id, creditNoteLines.creditNoteId))
    .where(and(eq(creditNotes.invoiceId, invoiceId), eq(creditNotes.status, "issued")));

// The one-invoice query, built by drizzle once per isolate.
const ofOneInvoice = builtOnce((db: Db) => [creditedLinesQuery(db, sql.placeholder("invoiceId"))] as const);

/** The same for one invoice. */
export async function creditedLinesOfInvoice(db: Db, invoiceId: string): Promise<NoteCreditedLine[]> {
  const [rows] = await db.batch(ofOneInvoice(db, { invoiceId }));
  return rows.map((r) => ({ creditNoteId: r.creditNoteId, invoiceLineId: r.invoiceLineId, amount: r.amount, taxAmount: r.taxAmount }));
}
