import { and, eq, inArray } from "drizzle-orm";
import type { Db } from "../../db/client";
import { commitWithAudit, type AuditContext } from "../../db/audit";
import { assertChanged, isAssertionFailure } from "../../db/assert";
import { invoices } from "../../db/schema";
import { ApiError, notFound } from "../../http/problem";

type InvoiceRow = typeof invoices.$inferSelect;

export async function getInvoice(db: Db, id: string): Promise<InvoiceRow> {
  const row = await db.select().from(invoices).where(eq(invoices.id, id)).get();
  if (!row) throw notFound("invoice", id);
  return row;
}

/** draft | open → void, with the reason; paid, uncollectible and void invoices are refused with 409. */
export async function voidInvoice(db: Db, id: string, reason: string, ctx: AuditContext): Promise<InvoiceRow> {
  const inv = await getInvoice(db, id);
  if (inv.status === "paid") throw new ApiError("conflict", `invoice ${id} is paid: issue a refund or a credit note instead of voiding it`);
  if (inv.status === "void") throw new ApiError("conflict", `invoice ${id} is already void`);
  if (inv.status === "uncollectible") throw new ApiError("conflict", `invoice ${id} is uncollectible; it can no longer be voided`);
  const after: InvoiceRow = { ...inv, status: "void", voidedAt: ctx.now, voidReason: reason, amountDue: 0, updatedAt: ctx.now };
  try {
    await commitWithAudit(
      db,
      [
        db
          .update(invoices)
          .set({ status: "void", voidedAt: ctx.now, voidReason: reason, amountDue: 0, updatedAt: ctx.now })
          .where(and(eq(invoices.id, id), inArray(invoices.status, ["draft", "open"]))),
        assertChanged(db),
      ],
      [{ action: "invoice.voided", targetType: "invoice", targetId: id, before: { status: inv.status, amountDue: inv.amountDue }, after: { status: "void" }, reason }],
      ctx,
    );
  } catch (e) {
    if (isAssertionFailure(e)) throw new ApiError("conflict", `invoice ${id} changed state concurrently; reload it`);
    throw e;
  }
  return after;
}
