import { and, eq, gte, isNull, like, or, sql, type SQL } from "drizzle-orm";
import { assertChanged } from "../../db/assert";
import type { BatchItem } from "drizzle-orm/batch";
import type { Db } from "../../db/client";
import { customers, invoiceLines, invoices, pendingItems, plans, subscriptions, taxRates, type StoredPrice } from "../../db/schema";
import { priceLines, type DraftLine, type PricedLine, type Price, type Span } from "../../domain/invoice";
import { jurisdictionOf, rateInForce, type TaxRate } from "../../domain/tax";
import { newId } from "../../lib/ids";
import { customerTaxExemption, taxRatesFor } from "../tax/service";
import { invoiceCreated } from "./lifecycle";

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

/** The subscription's discount for an invoice billed at `at`: none once its `discountUntil` has passed. */
export function discountAt(sub: Pick<SubscriptionRow, "discountPercent" | "discountUntil">, at: number): string | null {
  return sub.discountUntil !== null && at > sub.discountUntil ? null : sub.discountPercent;
}

/** `statements` include the invoice.created event's row; `eventIds` are for a caller that hands events to delivery. */
export type BuiltInvoice = { invoice: InvoiceRow; lines: PricedLine[]; lineRows: LineRow[]; statements: BatchItem<"sqlite">[]; eventIds: string[] };

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
  },
): Promise<BuiltInvoice> {
  const { sub, customer, now } = input;
  const tax = input.tax ?? (await taxFor(db, customer, input.period.end));
  const { lines, totals } = priceLines(input.lines, { discountPercent: discountAt(sub, input.billedAt ?? now), taxRate: tax.rate });
  // A negative total becomes customer credit; credit already held pays (part of) a positive total.
  const creditApplied = totals.total > 0 ? Math.min(customer.creditBalance, totals.total) : 0;
  const creditAdded = totals.total < 0 ? -totals.total : 0;
  const invoice: InvoiceRow = {
    id: newId("inv"),
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
  if (creditApplied > 0) {
    // Guarded: two invoices racing for the same credit cannot both spend it (the loser's batch fails and is retried).
    statements.push(
      db.update(customers).set({ creditBalance: sql`${customers.creditBalance} - ${creditApplied}` }).where(and(eq(customers.id, customer.id), gte(customers.creditBalance, creditApplied))),
      assertChanged(db),
    );
  }
  if (creditAdded > 0) statements.push(db.update(customers).set({ creditBalance: sql`${customers.creditBalance} + ${creditAdded}` }).where(eq(customers.id, customer.id)));
  // Rows per statement stay well under D1's 100 bound parameters.
  for (const row of lineRows) statements.push(db.insert(invoiceLines).values(row));
  for (const p of input.pending) {
    statements.push(db.update(pendingItems).set({ invoiceId: invoice.id }).where(and(eq(pendingItems.id, p.id), isNull(pendingItems.invoiceId))));
  }
  return { invoice, lines, lineRows, statements, eventIds: created.eventIds };
}

export async function planVersion(db: Db, id: string, version: number) {
  const row = await db.select().from(plans).where(and(eq(plans.id, id), eq(plans.version, version))).get();
  if (!row) throw new Error(`plan ${id} version ${version} is missing`);
  return row;
}

export const lastNumberOf = (db: Db, year: number) =>
  db.get<{ last_number: number } | undefined>(sql`SELECT last_number FROM invoice_number_sequences WHERE year = ${year}`);
