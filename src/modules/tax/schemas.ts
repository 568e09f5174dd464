import { z } from "@hono/zod-openapi";

/** ISO 3166-1 alpha-2 country, optionally an ISO 3166-2 subdivision: "US-NY", "DE", "GB". */
export const JURISDICTION = /^[A-Z]{2}(-[A-Z0-9]{1,3})?$/;

export const Jurisdiction = z
  .string()
  .transform((s) => s.trim().toUpperCase())
  .refine((s) => JURISDICTION.test(s), { message: "must be an ISO country code, optionally with a subdivision: US-NY, DE, GB" })
  .openapi({ type: "string", example: "US-NY" });

/** A bare date is midnight UTC; a date-time needs its offset. */
export const DateOrTime = z
  .union([z.iso.datetime({ offset: true }), z.iso.date()], { error: "must be an ISO-8601 date (2024-07-01) or date-time with offset" })
  .openapi({ type: "string", example: "2024-07-01" });

export const UpsertTaxRate = z
  .object({
    jurisdiction: Jurisdiction,
    // Range and precision are checked exactly in the service (422), like every decimal in the API.
    rate: z
      .union([z.string(), z.number()], { error: "must be a decimal fraction such as 0.08875" })
      .openapi({ type: "string", example: "0.08875", description: "Fraction 0 ≤ rate < 1, at most 8 decimals (number or decimal string)" }),
    effectiveDate: DateOrTime,
  })
  .openapi("UpsertTaxRate");

export const RatesQuery = z.object({
  jurisdiction: Jurisdiction,
  at: DateOrTime.optional().openapi({ description: "Instant to resolve the rate in force at; default now" }),
});

export const TaxRateEntry = z
  .object({
    jurisdiction: z.string(),
    rate: z.string().openapi({ example: "0.08875" }),
    percent: z.string().openapi({ example: "8.875" }),
    effectiveFrom: z.string(),
    createdBy: z.string(),
    createdAt: z.string(),
  })
  .openapi("TaxRateEntry");

export const TaxRateHistory = z
  .object({
    jurisdiction: z.string(),
    at: z.string().openapi({ description: "The instant inForce was resolved for" }),
    inForce: TaxRateEntry.nullable(),
    history: z.array(TaxRateEntry).openapi({ description: "Every rate of the jurisdiction, newest effectiveFrom first" }),
  })
  .openapi("TaxRateHistory");

export const TaxRateUpdated = TaxRateHistory.extend({
  change: z.object({
    effectiveFrom: z.string(),
    rate: z.string(),
    previousRate: z.string().nullable().openapi({ description: "The rate this PUT replaced at the same effective date, if any" }),
    outcome: z.enum(["created", "replaced", "unchanged"]),
  }),
}).openapi("TaxRateUpdated");

export const ExemptionsQuery = z.object({
  days: z.coerce.number().int().min(0).max(3650).default(30).openapi({ description: "Warn about certificates expiring within this many days" }),
});

export const exemptionProblems = ["missing_certificate", "expired", "expiring_soon"] as const;

export const ExemptionIssue = z
  .object({
    customerId: z.string(),
    email: z.string(),
    certificate: z.object({ id: z.string(), expiresAt: z.string().nullable() }).nullable(),
    problem: z.enum(exemptionProblems),
    daysLeft: z.number().int().nullable().openapi({ description: "Whole days until expiry (rounded up); ≤ 0 once expired; null without a certificate" }),
  })
  .openapi("ExemptionIssue");

export const ExemptionReport = z
  .object({
    checkedAt: z.string(),
    days: z.number().int(),
    counts: z.object({
      taxExempt: z.number().int(),
      valid: z.number().int(),
      missingCertificate: z.number().int(),
      expired: z.number().int(),
      expiringSoon: z.number().int(),
    }),
    data: z.array(ExemptionIssue),
  })
  .openapi("ExemptionReport");

/** Q2-2024, 2024-06 or 2024 (UTC). */
export const PERIOD = /^(?:Q[1-4]-\d{4}|\d{4}-(?:0[1-9]|1[0-2])|\d{4})$/;

export const TaxReportRequest = z
  .object({
    period: z
      .string()
      .transform((s) => s.trim().toUpperCase())
      .refine((s) => PERIOD.test(s), { message: "must be a quarter (Q2-2024), a month (2024-06) or a year (2024)" })
      .openapi({ type: "string", example: "Q2-2024" }),
    jurisdiction: Jurisdiction.optional(),
    format: z.enum(["csv", "json"]).default("json"),
  })
  .openapi("TaxReportRequest");

const MoneyOut = z.object({ amount: z.string(), amountMinor: z.number().int() });

export const TaxReportRow = z
  .object({
    jurisdiction: z.string().nullable().openapi({ description: "null for invoices without a tax jurisdiction (customer without country)" }),
    currency: z.string(),
    invoiceCount: z.number().int(),
    taxableAmount: MoneyOut.openapi({ description: "Σ (subtotal − discount)" }),
    tax: MoneyOut,
    taxRates: z.array(z.string()).openapi({ description: "Distinct rates applied on these invoices" }),
  })
  .openapi("TaxReportRow");

export const TaxReport = z
  .object({
    period: z.string(),
    from: z.string().openapi({ description: "Start of the period (UTC)" }),
    to: z.string().openapi({ description: "End of the period (UTC); invoices count when from < periodEnd ≤ to, as billing periods are half-open" }),
    jurisdiction: z.string().nullable().openapi({ description: "null when the report covers every jurisdiction" }),
    generatedAt: z.string(),
    rows: z.array(TaxReportRow),
    reportKey: z.string(),
  })
  .openapi("TaxReport");
