import { and, eq, gte, isNull, like, or, sql, type SQL } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type { Db } from "../../db/client";
import { insertRow } from "../../db/prepared";
import { customers, invoiceLines, invoices, pendingItems, plans, subscriptions, taxRates, type StoredPrice } from "../../db/schema";
import { priceLines, type DraftLine, type PricedLine, type Price, type Span } from "../../domain/invoice";
import { jurisdictionOf, rateInForce, type TaxRate } from "../../domain/tax";
import { newId } from "../../lib/ids";
import { customerTaxExemption, taxRatesFor } from "../tax/service";
import { invoiceCreated } from "./lifecycle";
import type { AuditEntry } from "../../platform/audit";
import { applicableDiscount, billsPeriod, currentDiscount, discountUsedStatements, type CurrentDiscount } from "../coupons/discounts";
import { applyCredits, grantCredit } from "../credits/ledger";

type SubscriptionRow = typeof subscriptions.$inferSelect;
type CustomerRow = typeof customers.$inferSelect;
type InvoiceRow = typeof invoices.$inferSelect;
type PendingRow = typeof pendingItems.$inferSelect;
type LineRow = typeof invoiceLines.$inferSelect;

export const asPrices = (prices: StoredPrice[]): Price[] => prices as Price[];

export type InvoiceTax = { jurisdiction: string | null; rate: string | null };

/** Rate in force at `at` for the customer's region, falling back to the country; none when exempt. */
export async function taxFor(db: Db, customer: CustomerRow, at: number): Promise<InvoiceTax> {
  const jurisdiction = jurisdictionOf(customer.country, customer.region);
  if (!jurisdiction) return { jurisdiction: null, rate: null };
  const country = jurisdiction.split("-")[0]!;
  const rates = [...(await taxRatesFor(db, jurisdiction)), ...(country !== jurisdiction ? await taxRatesFor(db, country) : [])];
  return taxFromRates(customer, at, rates);
}

/** `taxFor` over rates already read (every rate of the customer's country and its regions, `countryTaxRates`). */
export function taxFromRates(customer: CustomerRow, at: number, rates: readonly TaxRate[]): InvoiceTax {
  const jurisdiction = jurisdictionOf(customer.country, customer.region);
  if (!jurisdiction) return { jurisdiction: null, rate: null };
  if (customerTaxExemption(customer, at).exempt) return { jurisdiction, rate: null };
  const regional = rateInForce(rates, jurisdiction, at);
  if (regional) return { jurisdiction, rate: regional.rate };
  const country = jurisdiction.split("-")[0]!;
  if (country !== jurisdiction) {
    const national = rateInForce(rates, country, at);
    if (national) return { jurisdiction: country, rate: national.rate };
  }
  return { jurisdiction, rate: null };
}

/** A query for every tax rate of the country of `customerId`'s customer and its regions (for a batched read). */
export function countryTaxRates(db: Db, customerId: SQL | string) {
  const country = sql`(SELECT upper(trim(${customers.country})) FROM ${customers} WHERE ${customers.id} = ${customerId})`;
  return db.select().from(taxRates).where(or(eq(taxRates.jurisdiction, country), like(taxRates.jurisdiction, sql`${country} || '-%'`)));
}

export const pendingToLine = (p: PendingRow): DraftLine => ({
  kind: p.kind === "usage" ? "usage" : "proration",
  description: p.description,
  priceId: null,
  meterId: null,
  quantity: "1",
  unitAmount: null,
  amount: p.amount,
  periodStart: p.periodStart,
  periodEnd: p.periodEnd,
  computation: p.computation,
});

export async function unbilledPending(db: Db, subscriptionId: string): Promise<PendingRow[]> {
  return db.select().from(pendingItems).where(and(eq(pendingItems.subscriptionId, subscriptionId), isNull(pendingItems.invoiceId))).all();
}

/** The subscription's (mirrored) percent discount for an invoice billed at `at`: none once its `discountUntil` has passed. */
export function discountAt(sub: Pick<SubscriptionRow, "discountPercent" | "discountUntil">, at: number): string | null {
  return sub.discountUntil !== null && at > sub.discountUntil ? null : sub.discountPercent;
}

/** `statements` include the invoice.created event's row; `eventIds` are for a caller that hands events to delivery. */
export type BuiltInvoice = { invoice: InvoiceRow; lines: PricedLine[]; lineRows: LineRow[]; statements: BatchItem<"sqlite">[]; eventIds: string[]; audit: AuditEntry[] };

/**
 * A draft invoice and the statements that write it (for the caller's batch): discount and tax per line, the
 * rate in force on the period end. Pending items included are marked as billed by the same batch.
 */
export async function buildDraftInvoice(
  db: Db,
  input: {
    sub: SubscriptionRow;
    customer: CustomerRow;
    lines: DraftLine[];
    pending: PendingRow[];
    period: Span;
    billingReason: InvoiceRow["billingReason"];
    generationKey: string;
    now: number;
    /** When the invoice bills: a renewal's period boundary (however late the run), else `now`. Decides the discount. */
    billedAt?: number;
    /** The request (or message) that builds it, for its invoice.created event. */
    requestId?: string;
    /** The tax already worked out (from rates read in the caller's batched read); else read here. */
    tax?: InvoiceTax;
    /** The subscription's discount when the caller's batch is writing it (a creation); read when omitted. */
    discount?: CurrentDiscount | null;
  },
): Promise<BuiltInvoice> {
  const { sub, customer, now } = input;
  const billedAt = input.billedAt ?? now;
  const tax = input.tax ?? (await taxFor(db, customer, input.period.end));
  // The subscription's coupon (given by a creation that is writing it in this batch, or read), if it applies now.
  const current = input.discount !== undefined ? input.discount : await currentDiscount(db, sub.id);
  const usable = applicableDiscount(current, sub, billedAt);
  const { lines, totals } = priceLines(input.lines, { discount: usable?.spec ?? null, taxRate: tax.rate });
  const invoiceId = newId("inv");
  // Credit grants pay (part of) a positive total before anything is charged; a negative total becomes a grant.
  // The customer's balance (kept in every batch that moves credit) says whether any grant could pay: none, no read.
  const credit = await applyCredits(
    db,
    { hasCredit: customer.creditBalance > 0, customerId: customer.id, currency: sub.currency, invoiceId, at: billedAt, total: totals.total, testClockId: sub.testClockId, lines: lines.map((l) => ({ meterId: l.kind === "usage" ? l.meterId : null, amount: l.amount - l.discountAmount + l.taxAmount })) },
    { now, requestId: input.requestId },
  );
  const creditApplied = credit.applied;
  const creditAdded = totals.total < 0 ? -totals.total : 0;
  const invoice: InvoiceRow = {
    id: invoiceId,
    number: null,
    customerId: sub.customerId,
    subscriptionId: sub.id,
    status: "draft",
    billingReason: input.billingReason,
    currency: sub.currency,
    periodStart: input.period.start,
    periodEnd: input.period.end,
    ...totals,
    amountDue: totals.amountDue - creditApplied,
    creditApplied,
    amountPaid: 0,
    taxJurisdiction: tax.jurisdiction,
    taxRate: tax.rate,
    dueAt: null,
    finalizedAt: null,
    paidAt: null,
    voidedAt: null,
    voidReason: null,
    attemptCount: 0,
    lastError: null,
    generationKey: input.generationKey,
    archiveKey: null,
    archivedAt: null,
    testClockId: sub.testClockId,
    hostedToken: null,
    createdAt: now,
    updatedAt: now,
  };
  const lineRows: LineRow[] = lines.map((l, i) => ({
    id: newId("il"),
    invoiceId: invoice.id,
    position: i,
    kind: l.kind,
    description: l.description,
    priceId: l.priceId,
    meterId: l.meterId,
    quantity: l.quantity,
    unitAmount: l.unitAmount,
    amount: l.amount,
    discountAmount: l.discountAmount,
    taxAmount: l.taxAmount,
    periodStart: l.periodStart,
    periodEnd: l.periodEnd,
    computation: l.computation,
  }));
  // The insert and its invoice.created event (the invoice owner's), in the caller's batch.
  const created = invoiceCreated(db, invoice, lineRows, { now, requestId: input.requestId });
  const statements: BatchItem<"sqlite">[] = [...created.statements];
  statements.push(...credit.statements);
  const eventIds = [...created.eventIds, ...credit.eventIds];
  const audit = [...credit.audit];
  if (creditAdded > 0) {
    const g = grantCredit(db, { customerId: customer.id, currency: sub.currency, amount: creditAdded, category: "paid", source: "invoice_balance", sourceId: invoice.id, name: `Credit from invoice ${invoice.id}`, testClockId: sub.testClockId }, { now, requestId: input.requestId });
    statements.push(...g.statements);
    eventIds.push(...g.eventIds);
    audit.push(...g.audit);
  }
  if (usable && totals.discount !== 0) statements.push(...discountUsedStatements(db, { invoiceId: invoice.id, d: usable.d, amount: totals.discount, countsPeriod: billsPeriod(input.billingReason), now }));
  // Rows per statement stay well under D1's 100 bound parameters. Prepared SQL (src/db/prepared.ts): the billing run's hot path.
  for (const row of lineRows) statements.push(insertRow(db, invoiceLines, row));
  for (const p of input.pending) {
    statements.push(db.update(pendingItems).set({ invoiceId: invoice.id }).where(and(eq(pendingItems.id, p.id), isNull(pendingItems.invoiceId))));
  }
  return { invoice, lines, lineRows, statements, eventIds, audit };
}

export async function planVersion(db: Db, id: string, version: number) {
  const row = await db.select().from(plans).where(and(eq(plans.id, id), eq(plans.version, version))).get();
  if (!row) throw new Error(`plan ${id} version ${version} is missing`);
  return row;
}

export const lastNumberOf = (db: Db, year: number) =>
  db.get<{ last_number: number } | undefined>(sql`SELECT last_number FROM invoice_number_sequences WHERE year = ${year}`);
