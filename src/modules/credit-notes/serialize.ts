import { z } from "@hono/zod-openapi";
import { creditNoteLines, creditNotes, creditNoteStatuses } from "../../db/schema";
import { formatMinor } from "../../domain/money";
import { iso } from "../../lib/time";

type NoteRow = typeof creditNotes.$inferSelect;
type LineRow = typeof creditNoteLines.$inferSelect;

const MoneyOut = z.object({ amount: z.string(), amountMinor: z.number().int() });
const mo = (minor: number, currency: string) => ({ amount: formatMinor(minor, currency), amountMinor: minor });

export const creditNoteReasons = ["duplicate", "fraudulent", "order_change", "product_unsatisfactory"] as const;

export const CreditNoteLine = z
  .object({ id: z.string(), invoiceLineId: z.string(), description: z.string(), quantity: z.string().nullable(), amount: MoneyOut, tax: MoneyOut, total: MoneyOut })
  .openapi("CreditNoteLine");

export const CreditNote = z
  .object({
    id: z.string(),
    object: z.literal("credit_note"),
    number: z.string(),
    invoiceId: z.string(),
    customerId: z.string(),
    status: z.enum(creditNoteStatuses),
    currency: z.string(),
    reason: z.enum(creditNoteReasons),
    memo: z.string().nullable(),
    subtotal: MoneyOut.openapi({ description: "Pre-tax amount credited" }),
    tax: MoneyOut.openapi({ description: "Tax credited, proportional per line" }),
    total: MoneyOut,
    invoiceCredit: MoneyOut.openapi({ description: "Taken off the open invoice's amount due" }),
    refund: MoneyOut.extend({ refundId: z.string().nullable() }).openapi({ description: "Refunded through the payment's gateway" }),
    creditBalance: MoneyOut.openapi({ description: "Added to the customer's credit balance" }),
    taxJurisdiction: z.string().nullable(),
    taxRate: z.string().nullable(),
    pdfUrl: z.string(),
    voidedAt: z.string().nullable(),
    createdBy: z.string(),
    createdAt: z.string(),
    lines: z.array(CreditNoteLine).optional(),
  })
  .openapi("CreditNote");

export function toCreditNote(r: NoteRow, lines?: LineRow[]): z.infer<typeof CreditNote> {
  const c = r.currency;
  return {
    id: r.id,
    object: "credit_note",
    number: r.number,
    invoiceId: r.invoiceId,
    customerId: r.customerId,
    status: r.status,
    currency: c,
    reason: r.reason,
    memo: r.memo,
    subtotal: mo(r.subtotal, c),
    tax: mo(r.tax, c),
    total: mo(r.total, c),
    invoiceCredit: mo(r.invoiceCreditAmount, c),
    refund: { ...mo(r.refundAmount, c), refundId: r.refundId },
    creditBalance: mo(r.creditBalanceAmount, c),
    taxJurisdiction: r.taxJurisdiction,
    taxRate: r.taxRate,
    pdfUrl: `/api/v1/credit-notes/${r.id}/pdf`,
    voidedAt: iso(r.voidedAt),
    createdBy: r.createdBy,
    createdAt: iso(r.createdAt),
    ...(lines
      ? {
          lines: [...lines]
            .sort((a, b) => a.position - b.position)
            .map((l) => ({ id: l.id, invoiceLineId: l.invoiceLineId, description: l.description, quantity: l.quantity, amount: mo(l.amount, c), tax: mo(l.taxAmount, c), total: mo(l.amount + l.taxAmount, c) })),
        }
      : {}),
  };
}
