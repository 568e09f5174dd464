import type { creditNoteLines, creditNotes, customers, invoiceLines, invoices } from "../../db/schema";
import { displayDate, displayMoney, displayRate, displayUnitPrice } from "./format";

type InvoiceRow = typeof invoices.$inferSelect;
type LineRow = typeof invoiceLines.$inferSelect;
type CustomerRow = typeof customers.$inferSelect;
type CreditNoteRow = typeof creditNotes.$inferSelect;
type CreditNoteLineRow = typeof creditNoteLines.$inferSelect;

/** The seller block, from the `documents` setting (PUT /admin/config/documents). */
export type Seller = { legalName: string; address: string[]; taxId: string | null; email: string | null; logoUrl: string | null };

export type Party = { name: string; lines: string[] };
export type DocLine = { description: string; details: string[]; quantity: string; unitPrice: string; amount: string };
export type DocTotal = { label: string; value: string; strong?: boolean };

/** Everything a rendered document shows, already formatted: the PDF and the hosted page draw the same model. */
export type DocModel = {
  title: "Invoice" | "Credit note";
  number: string;
  status: string;
  /** A large stamp across the page: void and paid invoices, void credit notes. */
  mark: "PAID" | "VOID" | null;
  currency: string;
  seller: Party;
  buyer: Party;
  facts: [string, string][];
  lines: DocLine[];
  totals: DocTotal[];
  notes: string[];
};

const range = (start: number, end: number) => `${displayDate(start)} – ${displayDate(end)}`;

/** Customer name, its address and tax id (metadata keys `address_line1`, `address_line2`, `city`, `postal_code`, `tax_id`), and email. */
export function buyerOf(c: Pick<CustomerRow, "name" | "email" | "country" | "region" | "metadata"> | undefined): Party {
  if (!c) return { name: "Customer", lines: [] };
  const m = c.metadata ?? {};
  const cityLine = [m.postal_code, m.city, c.region].filter(Boolean).join(" ");
  const lines = [m.address_line1, m.address_line2, cityLine, c.country ?? undefined, m.tax_id ? `Tax ID: ${m.tax_id}` : undefined, c.email].filter((x): x is string => !!x);
  return { name: c.name ?? c.email, lines };
}

export function sellerParty(s: Seller): Party {
  return { name: s.legalName, lines: [...s.address, ...(s.taxId ? [`Tax ID: ${s.taxId}`] : []), ...(s.email ? [s.email] : [])] };
}

/** The tier lines of a graduated or volume usage line, from its stored computation ("graduated: 1500 units: 1000 × 0.01 + 500 × 0.005"). */
export function tierDetails(computation: string, currency: string): string[] {
  const m = /^(graduated|volume): ([^:]+): (.+)$/.exec(computation);
  if (!m) return [];
  const tiers = [...m[3]!.matchAll(/(\S+) × (\S+)(?: \+ (\S+) flat)?/g)];
  const head = m[1] === "graduated" ? `Graduated pricing, ${m[2]}` : `Volume pricing, ${m[2]}`;
  return [
    head,
    ...tiers.map((t, i) => `${m[1] === "graduated" ? `Tier ${i + 1}: ` : "All units: "}${t[1]} × ${displayUnitPrice(t[2]!, currency)}${t[3] ? ` + ${displayUnitPrice(t[3], currency)} flat` : ""}`),
  ];
}

/** A stored line description for print: ISO instants as dates, the billing period left to the detail line below it. */
export function readable(description: string): string {
  const dated = description.replace(/(\d{4}-\d{2}-\d{2})T[\d:.]+Z/g, (_, d: string) => displayDate(Date.parse(d)));
  const billed = /^(.*) \((advance|arrears), [^)]*\)$/.exec(dated);
  if (billed) return `${billed[1]}, billed in ${billed[2]}`;
  return dated.replace(/ \(\d{4}-\d{2}-\d{2} – \d{4}-\d{2}-\d{2}\)$/, "");
}

function lineOf(l: LineRow, currency: string): DocLine {
  const details: string[] = [];
  if (l.kind === "proration") details.push(`Prorated ${range(l.periodStart, l.periodEnd)}`);
  else details.push(range(l.periodStart, l.periodEnd));
  details.push(...tierDetails(l.computation, currency));
  if (l.discountAmount) details.push(`Discount ${displayMoney(-l.discountAmount, currency)}`);
  const unitPrice = l.unitAmount ? displayUnitPrice(l.unitAmount, currency) : "";
  return { description: readable(l.description), details, quantity: l.quantity, unitPrice, amount: displayMoney(l.amount, currency) };
}

const STATUS_MARK: Partial<Record<string, DocModel["mark"]>> = { paid: "PAID", void: "VOID" };

/** The invoice as its PDF and hosted page show it; `credited`: issued credit notes against it (number, total). */
export function invoiceModel(inv: InvoiceRow, lines: LineRow[], customer: Parameters<typeof buyerOf>[0], seller: Seller, credited: { number: string; total: number }[] = []): DocModel {
  const c = inv.currency;
  const money = (m: number) => displayMoney(m, c);
  const totals: DocTotal[] = [{ label: "Subtotal", value: money(inv.subtotal) }];
  if (inv.discount) totals.push({ label: "Discount", value: money(-inv.discount) });
  if (inv.taxJurisdiction || inv.tax) totals.push({ label: `Tax${inv.taxJurisdiction ? ` — ${inv.taxJurisdiction}` : ""}${inv.taxRate ? ` (${displayRate(inv.taxRate)})` : ""}`, value: money(inv.tax) });
  totals.push({ label: "Total", value: money(inv.total), strong: true });
  if (inv.creditApplied) totals.push({ label: "Credit applied", value: money(-inv.creditApplied) });
  for (const cn of credited) totals.push({ label: `Credit note ${cn.number}`, value: money(-cn.total) });
  if (inv.amountPaid) totals.push({ label: "Amount paid", value: money(-inv.amountPaid) });
  totals.push({ label: "Amount due", value: money(inv.amountDue), strong: true });
  const facts: [string, string][] = [
    ["Invoice number", inv.number ?? "Draft"],
    ["Date of issue", displayDate(inv.finalizedAt ?? inv.createdAt)],
  ];
  if (inv.dueAt && inv.status === "open") facts.push(["Date due", displayDate(inv.dueAt)]);
  if (inv.paidAt) facts.push(["Paid on", displayDate(inv.paidAt)]);
  if (inv.voidedAt) facts.push(["Voided on", displayDate(inv.voidedAt)]);
  facts.push(["Billing period", range(inv.periodStart, inv.periodEnd)]);
  const notes = inv.voidReason ? [`Voided: ${inv.voidReason}`] : [];
  return {
    title: "Invoice",
    number: inv.number ?? "Draft",
    status: inv.status,
    mark: STATUS_MARK[inv.status] ?? null,
    currency: c,
    seller: sellerParty(seller),
    buyer: buyerOf(customer),
    facts,
    lines: [...lines].sort((a, b) => a.position - b.position).map((l) => lineOf(l, c)),
    totals,
    notes,
  };
}

const REASONS: Record<CreditNoteRow["reason"], string> = {
  duplicate: "Duplicate charge",
  fraudulent: "Fraudulent charge",
  order_change: "Order change",
  product_unsatisfactory: "Product unsatisfactory",
};

/** A credit note as its PDF shows it. */
export function creditNoteModel(cn: CreditNoteRow, lines: CreditNoteLineRow[], invoiceNumber: string | null, customer: Parameters<typeof buyerOf>[0], seller: Seller): DocModel {
  const c = cn.currency;
  const money = (m: number) => displayMoney(m, c);
  const totals: DocTotal[] = [{ label: "Subtotal", value: money(cn.subtotal) }];
  if (cn.tax || cn.taxJurisdiction) totals.push({ label: `Tax${cn.taxJurisdiction ? ` — ${cn.taxJurisdiction}` : ""}${cn.taxRate ? ` (${displayRate(cn.taxRate)})` : ""}`, value: money(cn.tax) });
  totals.push({ label: "Total credited", value: money(cn.total), strong: true });
  if (cn.invoiceCreditAmount) totals.push({ label: "Taken off the amount due", value: money(cn.invoiceCreditAmount) });
  if (cn.refundAmount) totals.push({ label: "Refunded to the payment method", value: money(cn.refundAmount) });
  if (cn.creditBalanceAmount) totals.push({ label: "Added to the credit balance", value: money(cn.creditBalanceAmount) });
  return {
    title: "Credit note",
    number: cn.number,
    status: cn.status,
    mark: cn.status === "void" ? "VOID" : null,
    currency: c,
    seller: sellerParty(seller),
    buyer: buyerOf(customer),
    facts: [
      ["Credit note number", cn.number],
      ["Date of issue", displayDate(cn.createdAt)],
      ["Invoice", invoiceNumber ?? cn.invoiceId],
      ["Reason", REASONS[cn.reason]],
      ...(cn.voidedAt ? ([["Voided on", displayDate(cn.voidedAt)]] as [string, string][]) : []),
    ],
    lines: [...lines]
      .sort((a, b) => a.position - b.position)
      .map((l) => ({ description: l.description, details: l.taxAmount ? [`Tax credited ${money(l.taxAmount)}`] : [], quantity: l.quantity ?? "", unitPrice: "", amount: money(l.amount) })),
    totals,
    notes: cn.memo ? [cn.memo] : [],
  };
}
