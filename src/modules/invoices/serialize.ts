import { z } from "@hono/zod-openapi";
import { invoiceLines, invoiceStatuses, invoices } from "../../db/schema";
import { formatMinor, money } from "../../domain/money";
import { creditableOf, type CreditedLine } from "../../domain/creditable";
import { iso } from "../../lib/time";

type InvoiceRow = typeof invoices.$inferSelect;
type LineRow = typeof invoiceLines.$inferSelect;

const MoneyOut = z.object({ amount: z.string(), amountMinor: z.number().int() });
const Money = z.object({ amount: z.string(), amountMinor: z.number().int(), currency: z.string() });
const mo = (minor: number, currency: string) => ({ amount: formatMinor(minor, currency), amountMinor: minor });

export const InvoiceLine = z
  .object({
    id: z.string(),
    kind: z.enum(["flat", "usage", "proration", "discount"]),
    description: z.string(),
    priceId: z.string().nullable(),
    meterId: z.string().nullable(),
    quantity: z.string(),
    unitAmount: z.string().nullable(),
    amount: MoneyOut,
    discount: MoneyOut,
    tax: MoneyOut,
    period: z.object({ start: z.string(), end: z.string() }),
    computation: z.string(),
    creditable: z
      .object({ amount: Money, tax: Money })
      .optional()
      .openapi({ description: "What a credit note can still take from this line: its pre-tax amount (what `lines[].amount` of POST /credit-notes gives) and its tax, after issued notes; 0 on a draft or void invoice. Absent only on lines read back from an archived document made before it existed" }),
  })
  .openapi("InvoiceLine");

export const Invoice = z
  .object({
    id: z.string(),
    number: z.string().nullable(),
    customerId: z.string(),
    subscriptionId: z.string().nullable(),
    status: z.enum(invoiceStatuses),
    billingReason: z.string(),
    currency: z.string(),
    period: z.object({ start: z.string(), end: z.string() }),
    subtotal: MoneyOut,
    discount: MoneyOut,
    tax: MoneyOut,
    total: MoneyOut,
    amountPaid: MoneyOut,
    creditApplied: MoneyOut,
    amountDue: MoneyOut,
    taxJurisdiction: z.string().nullable(),
    taxRate: z.string().nullable(),
    dueAt: z.string().nullable(),
    finalizedAt: z.string().nullable(),
    paidAt: z.string().nullable(),
    voidedAt: z.string().nullable(),
    voidReason: z.string().nullable(),
    attemptCount: z.number().int(),
    lastError: z.string().nullable(),
    archived: z.boolean(),
    createdAt: z.string(),
    pdfUrl: z.string().nullable().optional().openapi({ description: "GET this (authenticated) for the PDF; null for a draft" }),
    hostedUrl: z.string().nullable().optional().openapi({ description: "The invoice's hosted page (no login), root-relative: made when the invoice is finalized, the same in GET, lists and events; null for a draft or once its links are revoked. An expired link answers 404 until rotated (POST /api/v1/invoices/{id}/hosted-link)" }),
    creditable: z
      .object({ total: Money })
      .openapi({ description: "What credit notes can still credit on this invoice (amount + tax): its total less issued notes, at most the amount due while open; 0 on a draft or void invoice" }),
    lines: z.array(InvoiceLine).optional(),
    discounts: z
      .array(z.object({ discountId: z.string(), couponId: z.string(), promotionCodeId: z.string().nullable(), amount: MoneyOut }))
      .optional()
      .openapi({ description: "The coupon discounts this invoice got and what each took off (GET /invoices/:id)" }),
  })
  .openapi("Invoice");

export function toInvoiceLine(l: LineRow, currency: string, creditable?: { amount: number; tax: number }): z.infer<typeof InvoiceLine> {
  return {
    id: l.id,
    kind: l.kind,
    description: l.description,
    priceId: l.priceId,
    meterId: l.meterId,
    quantity: l.quantity,
    unitAmount: l.unitAmount,
    amount: mo(l.amount, currency),
    discount: mo(l.discountAmount, currency),
    tax: mo(l.taxAmount, currency),
    period: { start: iso(l.periodStart), end: iso(l.periodEnd) },
    computation: l.computation,
    ...(creditable ? { creditable: { amount: money(creditable.amount, currency), tax: money(creditable.tax, currency) } } : {}),
  };
}

/**
 * API shape of an invoice; `lines` only when given (lists leave them out). `credited`: the lines of its issued credit
 * notes (creditedLinesOf), from which `creditable` is computed as the credit-note service checks it.
 */
export function toInvoice(r: InvoiceRow, lines: LineRow[] | undefined, credited: readonly CreditedLine[]): z.infer<typeof Invoice> {
  const c = r.currency;
  const creditable = creditableOf(r, lines ?? [], credited);
  return {
    id: r.id,
    number: r.number,
    customerId: r.customerId,
    subscriptionId: r.subscriptionId,
    status: r.status,
    billingReason: r.billingReason,
    currency: c,
    period: { start: iso(r.periodStart), end: iso(r.periodEnd) },
    subtotal: mo(r.subtotal, c),
    discount: mo(r.discount, c),
    tax: mo(r.tax, c),
    total: mo(r.total, c),
    amountPaid: mo(r.amountPaid, c),
    creditApplied: mo(r.creditApplied, c),
    amountDue: mo(r.amountDue, c),
    taxJurisdiction: r.taxJurisdiction,
    taxRate: r.taxRate,
    dueAt: iso(r.dueAt),
    finalizedAt: iso(r.finalizedAt),
    paidAt: iso(r.paidAt),
    voidedAt: iso(r.voidedAt),
    voidReason: r.voidReason,
    attemptCount: r.attemptCount,
    lastError: r.lastError,
    archived: r.archiveKey !== null,
    createdAt: iso(r.createdAt),
    pdfUrl: r.status === "draft" ? null : `/api/v1/invoices/${r.id}/pdf`,
    hostedUrl: r.hostedToken ? `/i/${r.hostedToken}` : null,
    creditable: { total: money(creditable.total, c) },
    ...(lines ? { lines: [...lines].sort((a, b) => a.position - b.position).map((l) => toInvoiceLine(l, c, creditable.lines.get(l.id))) } : {}),
  };
}
