/** What issued credit notes took from one invoice line: pre-tax amount and tax, in minor units. */
export type CreditedLine = { invoiceLineId: string; amount: number; taxAmount: number };

export type Creditable = { total: number; lines: Map<string, { amount: number; tax: number }> };

/**
 * What is left to credit on an invoice (Stripe's credit-note limits), in minor units. A line: its net amount (amount
 * − discount) and its tax, less what issued notes credited of each (never below 0; a credit or zero line has none).
 * The invoice: its total less every issued note's total (amount + tax), never below 0; on an open or uncollectible
 * invoice at most its amount due (a note comes off it); nothing on a draft or a void invoice.
 */
export function creditableOf(
  inv: { status: string; total: number; amountDue: number },
  lines: readonly { id: string; amount: number; discountAmount: number; taxAmount: number }[],
  credited: readonly CreditedLine[],
): Creditable {
  const byLine = new Map<string, { amount: number; tax: number }>();
  for (const c of credited) {
    const sum = byLine.get(c.invoiceLineId) ?? { amount: 0, tax: 0 };
    byLine.set(c.invoiceLineId, { amount: sum.amount + c.amount, tax: sum.tax + c.taxAmount });
  }
  const creditable = inv.status === "open" || inv.status === "uncollectible" || inv.status === "paid";
  const out = new Map<string, { amount: number; tax: number }>();
  for (const l of lines) {
    const net = l.amount - l.discountAmount;
    const took = byLine.get(l.id) ?? { amount: 0, tax: 0 };
    out.set(l.id, creditable && net > 0 ? { amount: Math.max(0, net - took.amount), tax: Math.max(0, l.taxAmount - took.tax) } : { amount: 0, tax: 0 });
  }
  const left = Math.max(0, inv.total - credited.reduce((s, c) => s + c.amount + c.taxAmount, 0));
  const total = !creditable ? 0 : inv.status === "paid" ? left : Math.min(left, Math.max(0, inv.amountDue));
  return { total, lines: out };
}
