import { and, eq, ne } from "drizzle-orm";
import type { Services } from "../../platform/services";
import type { Db } from "../../db/client";
import { creditNoteLines, creditNotes, customers, invoiceLines, invoices } from "../../db/schema";
import { base64ToBytes } from "../../lib/crypto";
import { getSetting } from "../../platform/settings";
import { invoiceLineRows } from "../invoices/lifecycle";
import { creditNoteModel, invoiceModel, type DocModel, type Seller } from "./model";
import { renderPdf } from "./pdf";

type InvoiceRow = typeof invoices.$inferSelect;
type LineRow = typeof invoiceLines.$inferSelect;

export type DocumentsConfig = { seller: Seller & { logoBase64: string | null; logoType: "png" | "jpg" | null }; publicBaseUrl: string | null; hostedLinkDays: number };

/** The `documents` setting: the seller block, the public base URL of links, how long hosted links live. */
export const DOCUMENT_DEFAULTS: DocumentsConfig = {
  seller: { legalName: "Billing Engine Ltd", address: [], taxId: null, email: null, logoUrl: null, logoBase64: null, logoType: null },
  publicBaseUrl: null,
  hostedLinkDays: 90,
};

export const documentsConfig = async (db: Db): Promise<DocumentsConfig> => {
  const c = await getSetting(db, "documents", DOCUMENT_DEFAULTS);
  return { ...c, seller: { ...DOCUMENT_DEFAULTS.seller, ...c.seller } };
};

/**
 * R2 keys: one PDF per version of what the invoice prints: its state and last change, and the credit notes issued
 * against it (a note on a paid invoice does not touch the invoice row but prints on it).
 */
export const invoicePdfKey = (inv: Pick<InvoiceRow, "id" | "status" | "updatedAt">, notes: string[]) =>
  `documents/invoices/${inv.id}/${inv.status}-${inv.updatedAt}${notes.length ? `-${notes.length}-${notes.at(-1)}` : ""}.pdf`;
const issuedNoteIds = async (db: Db, invoiceId: string) =>
  (await db.select({ id: creditNotes.id }).from(creditNotes).where(and(eq(creditNotes.invoiceId, invoiceId), ne(creditNotes.status, "void"))).orderBy(creditNotes.createdAt).all()).map((n) => n.id);
export const creditNotePdfKey = (cn: { id: string; status: string }) => `documents/credit-notes/${cn.id}/${cn.status}.pdf`;

/** The invoice's document model (seller from settings, buyer from the customer, issued credit notes against it). */
export async function invoiceDocument(db: Db, inv: InvoiceRow): Promise<{ model: DocModel; config: DocumentsConfig }> {
  const [config, lines, customer, notes] = await Promise.all([
    documentsConfig(db),
    invoiceLineRows(db, inv),
    db.select().from(customers).where(eq(customers.id, inv.customerId)).get(),
    db
      .select({ number: creditNotes.number, total: creditNotes.total })
      .from(creditNotes)
      .where(and(eq(creditNotes.invoiceId, inv.id), ne(creditNotes.status, "void")))
      .orderBy(creditNotes.createdAt)
      .all(),
  ]);
  return { model: invoiceModel(inv, lines, customer, config.seller, notes), config };
}

const logoOf = (c: DocumentsConfig) => (c.seller.logoBase64 && c.seller.logoType ? { bytes: base64ToBytes(c.seller.logoBase64), type: c.seller.logoType } : null);

/** Renders the invoice's PDF for its current state and stores it in R2 (overwriting: a render is deterministic). */
export async function renderInvoicePdf(s: Services, inv: InvoiceRow): Promise<Uint8Array> {
  const { env, db } = s;
  const started = Date.now();
  const { model, config } = await invoiceDocument(db, inv);
  const bytes = await renderPdf(model, { logo: logoOf(config), now: inv.finalizedAt ?? inv.createdAt });
  await env.ARCHIVE.put(invoicePdfKey(inv, await issuedNoteIds(db, inv.id)), bytes, { httpMetadata: { contentType: "application/pdf" }, customMetadata: { invoiceId: inv.id, status: inv.status } });
  s.log.info("invoice pdf rendered", { invoiceId: inv.id, status: inv.status, lines: model.lines.length, bytes: bytes.length, ms: Date.now() - started });
  return bytes;
}

/** The stored PDF of the invoice's current state, rendered (once) when missing. Drafts have no document. */
export async function invoicePdf(s: Services, inv: InvoiceRow): Promise<ReadableStream | Uint8Array> {
  const { env, db } = s;
  const stored = await env.ARCHIVE.get(invoicePdfKey(inv, await issuedNoteIds(db, inv.id)));
  if (stored) return stored.body;
  return renderInvoicePdf(s, inv);
}

/** A credit note's PDF for its current state, from R2 or rendered once. */
export async function creditNotePdf(s: Services, id: string, opts: { body?: boolean } = {}): Promise<ReadableStream | Uint8Array | null> {
  const { env, db } = s;
  const cn = await db.select().from(creditNotes).where(eq(creditNotes.id, id)).get();
  if (!cn) return null;
  // The document job only needs the object to exist: a HEAD, not a body stream left unread.
  if (opts.body === false) {
    if (await env.ARCHIVE.head(creditNotePdfKey(cn))) return null;
  } else {
    const stored = await env.ARCHIVE.get(creditNotePdfKey(cn));
    if (stored) return stored.body;
  }
  const [config, lines, customer, inv] = await Promise.all([
    documentsConfig(db),
    db.select().from(creditNoteLines).where(eq(creditNoteLines.creditNoteId, id)).all(),
    db.select().from(customers).where(eq(customers.id, cn.customerId)).get(),
    db.select({ number: invoices.number }).from(invoices).where(eq(invoices.id, cn.invoiceId)).get(),
  ]);
  const bytes = await renderPdf(creditNoteModel(cn, lines, inv?.number ?? null, customer, config.seller), { logo: logoOf(config), now: cn.updatedAt });
  await env.ARCHIVE.put(creditNotePdfKey(cn), bytes, { httpMetadata: { contentType: "application/pdf" } });
  return bytes;
}
