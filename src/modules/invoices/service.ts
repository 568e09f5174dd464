import type { Services } from "../../platform/services";
import { invoiceDiscountsOf } from "../coupons/discounts";
import { money } from "../../domain/money";
import { eq } from "drizzle-orm";
import type { z } from "@hono/zod-openapi";
import type { Db } from "../../db/client";
import { isAssertionFailure } from "../../db/assert";
import { invoiceLines, invoices } from "../../db/schema";
import { commit } from "../../platform/change-set";
import { invoiceVoided, retainedLinesOf } from "./lifecycle";
import { isRetentionArchive } from "../../platform/archives";
import { conflict, failure, notFound, ok, UnexpectedFailure, type Outcome } from "../../platform/failure";
import { creditedLinesOfInvoice } from "./creditable";
import { Invoice, toInvoice } from "./serialize";

export type InvoiceRow = typeof invoices.$inferSelect;

export const PAGE = 100;

export const logError = (msg: string, fields: Record<string, unknown>) => console.log(JSON.stringify({ level: "error", msg, ...fields }));

/** Keyset pages by id, so rows the caller leaves unchanged (or fails on) are not fetched again. */
export async function* pagesById<R extends { id: string }>(fetch: (after: string | undefined) => Promise<R[]>, size = PAGE, from?: string): AsyncGenerator<R[]> {
  let after: string | undefined = from;
  for (;;) {
    const page = await fetch(after);
    if (page.length) yield page;
    if (page.length < size) return;
    after = page[page.length - 1]!.id;
  }
}

export async function getInvoice(db: Db, id: string): Promise<Outcome<InvoiceRow, "not_found">> {
  const row = await db.select().from(invoices).where(eq(invoices.id, id)).get();
  return row ? ok(row) : notFound("invoice", id);
}

/** The invoice with its lines: from D1, or, once archived, from its R2 document (same shape either way). */
export async function invoiceWithLines(s: Services, inv: InvoiceRow): Promise<z.infer<typeof Invoice>> {
  const { env, db } = s;
  if (inv.archiveKey === null || isRetentionArchive(inv.archiveKey)) {
    const discounts = (await invoiceDiscountsOf(db, inv.id)).map((d) => ({ discountId: d.discountId, couponId: d.couponId, promotionCodeId: d.promotionCodeId, amount: { amount: money(d.amount, inv.currency).amount, amountMinor: d.amount } }));
    const lines = inv.archiveKey === null ? await db.select().from(invoiceLines).where(eq(invoiceLines.invoiceId, inv.id)).all() : await retainedLinesOf(env.ARCHIVE, inv.id, inv.archiveKey);
    return { ...toInvoice(inv, lines, await creditedLinesOfInvoice(db, inv.id)), ...(discounts.length ? { discounts } : {}) };
  }
  const obj = await env.ARCHIVE.get(inv.archiveKey);
  // Data loss nobody can act on in a request: a 500 whose detail names the missing document.
  if (!obj) throw new UnexpectedFailure(failure("internal", `invoice ${inv.id} is archived but its document ${inv.archiveKey} is missing`));
  const doc = Invoice.parse(await obj.json());
  return { ...toInvoice(inv, undefined, await creditedLinesOfInvoice(db, inv.id)), lines: doc.lines ?? [] };
}

/**
 * draft | open | uncollectible → void, with the reason (the invoice owner's transition, invoices/lifecycle.ts); a
 * paid or void invoice is refused with 409 naming its state. Customer credit the invoice spent goes back to the
 * customer in the same batch, behind the same status guard, so it is returned exactly once however many voids race.
 */
export async function voidInvoice(s: Services, id: string, reason: string): Promise<Outcome<InvoiceRow, "not_found" | "conflict">> {
  const { db } = s;
  const found = await getInvoice(db, id);
  if (!found.ok) return found;
  const inv = found.value;
  // An invoice on a test clock is voided in the clock's time (voidedAt and its event), as its other moves are.
  const ctx = (await s.inClockOf(inv.testClockId)).audit;
  if (inv.status === "paid") return conflict(`invoice ${id} is paid: issue a refund (POST /api/v1/refunds) or a credit note (POST /api/v1/credit-notes) instead of voiding it`, [{ path: "status", message: "is paid" }]);
  const { change: cs, after } = await invoiceVoided(db, inv, reason, ctx);
  try {
    await commit(db, cs, ctx);
  } catch (e) {
    if (isAssertionFailure(e)) return conflict(`invoice ${id} changed state concurrently; reload it`);
    throw e;
  }
  return ok(after);
}
