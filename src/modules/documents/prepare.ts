import { eq } from "drizzle-orm";
import type { Db } from "../../db/client";
import { invoices } from "../../db/schema";
import type { AuditContext } from "../../platform/audit";
import { ensureLink } from "./links";
import { documentsConfig, renderInvoicePdf } from "./store";

/**
 * The after-commit side of a finalization (jobs queue, never the money batch): the PDF of the invoice's current
 * state in R2, and a live hosted link for an open invoice. Idempotent: a redelivery re-renders the same document.
 */
export async function prepareInvoiceDocument(env: Env, db: Db, invoiceId: string, ctx: AuditContext): Promise<void> {
  const inv = await db.select().from(invoices).where(eq(invoices.id, invoiceId)).get();
  if (!inv || inv.status === "draft") return;
  await renderInvoicePdf(env, db, inv);
  if (inv.status === "open") {
    const config = await documentsConfig(db);
    await ensureLink(env, db, inv.id, config.hostedLinkDays, ctx, config.publicBaseUrl);
  }
}
