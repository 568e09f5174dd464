import { and, asc, count, eq, gt, inArray, isNull, lte, sql } from "drizzle-orm";
import type { Services } from "../../platform/services";
import type { z } from "@hono/zod-openapi";
import type { Db } from "../../db/client";
import { commitWithAudit } from "../../platform/audit";
import { creditNotes, invoices, type InvoiceStatus } from "../../db/schema";
import { formatMinor } from "../../domain/money";
import { iso } from "../../lib/time";
import type { TaxReport, TaxReportRequest, TaxReportRow } from "./schemas";

/** Finalized invoices: drafts are not issued yet and void ones never happened for tax. */
export const REPORTABLE_STATUSES: readonly InvoiceStatus[] = ["open", "paid", "uncollectible"];

function startOf(year: number, month: number): number {
  const d = new Date(0);
  // setUTCFullYear, unlike Date.UTC, does not map years below 100 to 19xx.
  d.setUTCFullYear(year, month, 1);
  return d.getTime();
}

/** UTC bounds of "Q2-2024", "2024-06" or "2024" (already validated and uppercased): [from, to). */
export function periodBounds(period: string): { from: number; to: number } {
  const quarter = /^Q([1-4])-(\d{4})$/.exec(period);
  if (quarter) {
    const q = Number(quarter[1]);
    const y = Number(quarter[2]);
    return { from: startOf(y, (q - 1) * 3), to: startOf(y, q * 3) };
  }
  const month = /^(\d{4})-(\d{2})$/.exec(period);
  if (month) {
    const y = Number(month[1]);
    const m = Number(month[2]) - 1;
    return { from: startOf(y, m), to: startOf(y, m + 1) };
  }
  const y = Number(period);
  return { from: startOf(y, 0), to: startOf(y + 1, 0) };
}

const mo = (minor: number, currency: string) => ({ amount: formatMinor(minor, currency), amountMinor: minor });

/**
 * Sums finalized invoices per jurisdiction and currency (never across currencies). An invoice belongs to
 * the period its billing period ends in; billing periods are half-open, so that is from < periodEnd ≤ to
 * (a June invoice ending 07-01T00:00 is Q2). Credit notes issued in the period are netted out of their jurisdiction
 * (taxable amount and tax). Test-clock invoices (and their notes) are simulations and are left out.
 */
export async function taxReportRows(db: Db, from: number, to: number, jurisdiction: string | null): Promise<z.infer<typeof TaxReportRow>[]> {
  const rows = await db
    .select({
      jurisdiction: invoices.taxJurisdiction,
      currency: invoices.currency,
      invoiceCount: count(),
      taxable: sql<number>`coalesce(sum(${invoices.subtotal} - ${invoices.discount}), 0)`,
      tax: sql<number>`coalesce(sum(${invoices.tax}), 0)`,
      rates: sql<string | null>`group_concat(distinct ${invoices.taxRate})`,
    })
    .from(invoices)
    .where(
      and(
        inArray(invoices.status, [...REPORTABLE_STATUSES]),
        gt(invoices.periodEnd, from),
        lte(invoices.periodEnd, to),
        isNull(invoices.testClockId),
        jurisdiction ? eq(invoices.taxJurisdiction, jurisdiction) : undefined,
      ),
    )
    .groupBy(invoices.taxJurisdiction, invoices.currency)
    .orderBy(asc(invoices.taxJurisdiction), asc(invoices.currency))
    .all();
  // Credit notes issued in the period (not void) take their pre-tax amount and tax back out of their jurisdiction,
  // in the period they were issued (a filed period is not rewritten); invoices stay counted where they were.
  const credited = await db
    .select({ jurisdiction: creditNotes.taxJurisdiction, currency: creditNotes.currency, taxable: sql<number>`coalesce(sum(${creditNotes.subtotal}), 0)`, tax: sql<number>`coalesce(sum(${creditNotes.tax}), 0)`, rates: sql<string | null>`group_concat(distinct ${creditNotes.taxRate})` })
    .from(creditNotes)
    .innerJoin(invoices, eq(invoices.id, creditNotes.invoiceId))
    .where(and(eq(creditNotes.status, "issued"), gt(creditNotes.createdAt, from - 1), lte(creditNotes.createdAt, to - 1), isNull(invoices.testClockId), jurisdiction ? eq(creditNotes.taxJurisdiction, jurisdiction) : undefined))
    .groupBy(creditNotes.taxJurisdiction, creditNotes.currency)
    .all();
  for (const c of credited) {
    const row = rows.find((r) => r.jurisdiction === c.jurisdiction && r.currency === c.currency);
    if (row) {
      row.taxable -= c.taxable;
      row.tax -= c.tax;
    } else rows.push({ jurisdiction: c.jurisdiction, currency: c.currency, invoiceCount: 0, taxable: -c.taxable, tax: -c.tax, rates: c.rates });
  }
  if (credited.length) rows.sort((a, b) => (a.jurisdiction ?? "").localeCompare(b.jurisdiction ?? "") || a.currency.localeCompare(b.currency));
  return rows.map((r) => ({
    jurisdiction: r.jurisdiction,
    currency: r.currency,
    invoiceCount: r.invoiceCount,
    taxableAmount: mo(r.taxable, r.currency),
    tax: mo(r.tax, r.currency),
    taxRates: r.rates ? r.rates.split(",").sort() : [],
  }));
}

const CSV_HEADER = ["period", "jurisdiction", "currency", "invoice_count", "taxable_amount", "taxable_amount_minor", "tax", "tax_minor", "tax_rates"];

function csvField(v: string | number | null): string {
  const s = v === null ? "" : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** RFC 4180 CSV with a header row and CRLF line ends. */
export function taxReportCsv(report: Pick<z.infer<typeof TaxReport>, "period" | "rows">): string {
  const lines = report.rows.map((r) =>
    [report.period, r.jurisdiction, r.currency, r.invoiceCount, r.taxableAmount.amount, r.taxableAmount.amountMinor, r.tax.amount, r.tax.amountMinor, r.taxRates.join(";")]
      .map(csvField)
      .join(","),
  );
  return [CSV_HEADER.join(","), ...lines].join("\r\n") + "\r\n";
}

export type GeneratedReport = { report: z.infer<typeof TaxReport>; body: string; contentType: string };

/** Builds the report, stores it in R2 under reports/tax/<period>-<jurisdiction|ALL>.<format> (replacing an older run), and audits it. */
export async function generateTaxReport(s: Services, input: z.infer<typeof TaxReportRequest>): Promise<GeneratedReport> {
  const { db, audit: ctx } = s;
  const archive = s.env.ARCHIVE;
  const { from, to } = periodBounds(input.period);
  const jurisdiction = input.jurisdiction ?? null;
  const reportKey = `reports/tax/${input.period}-${jurisdiction ?? "ALL"}.${input.format}`;
  const rows = await taxReportRows(db, from, to, jurisdiction);
  const report = { period: input.period, from: iso(from), to: iso(to), jurisdiction, generatedAt: iso(ctx.now), rows, reportKey };
  const [body, contentType] =
    input.format === "csv" ? [taxReportCsv(report), "text/csv; charset=utf-8"] : [JSON.stringify(report, null, 2), "application/json"];
  await archive.put(reportKey, body, {
    httpMetadata: { contentType },
    customMetadata: { period: input.period, jurisdiction: jurisdiction ?? "ALL", generatedAt: report.generatedAt, generatedBy: ctx.actor.id },
  });
  const invoiceCount = rows.reduce((n, r) => n + r.invoiceCount, 0);
  await commitWithAudit(
    db,
    [],
    [
      {
        action: "tax.report_generated",
        targetType: "tax_report",
        targetId: reportKey,
        after: { period: input.period, from: report.from, to: report.to, jurisdiction, format: input.format, rows: rows.length, invoiceCount },
      },
    ],
    ctx,
  );
  return { report, body, contentType };
}
