import { eq } from "drizzle-orm";
import type { Services } from "../../platform/services";
import { invoices } from "../../db/schema";
import { ensureLink } from "./links";
import { documentsConfig, renderInvoicePdf } from "./store";

/**
 * The after-commit side of a finalization (jobs queue, never the money batch): the PDF of the invoice's current
 * state in R2, and a live hosted link for an open invoice. Idempotent: a redelivery re-renders the same document.
 */
export async function prepareInvoiceDocument(s: Services, invoiceId: string): Promise<void> {
  const { db } = s;
  const inv = await db.select().from(invoices).where(eq(invoices.id, invoiceId)).get();
  if (!inv || inv.status === "draft") return;
  await renderInvoicePdf(s, inv);
  if (inv.status === "open") {
    const config = await documentsConfig(db);
    await ensureLink(s, inv.id, config.hostedLinkDays, config.publicBaseUrl);
  }
}
