import { and, asc, count, desc, eq, isNotNull, isNull, lte, or } from "drizzle-orm";
import type { Services } from "../../platform/services";
import type { z } from "@hono/zod-openapi";
import type { Db } from "../../db/client";
import { commitWithAudit } from "../../platform/audit";
import { customers, taxRates } from "../../db/schema";
import { assertChanged, isAssertionFailure, isUniqueViolation } from "../../db/assert";
import { formatDecimal, formatScaled, ONE, parseDecimal, SCALE } from "../../domain/decimal";
import { err, ok, type Result } from "../../domain/result";
import { rateInForce, type TaxRate } from "../../domain/tax";
import { conflict, invalid, type Outcome } from "../../platform/failure";
import { newId } from "../../lib/ids";
import { iso, DAY_MS } from "../../lib/time";
import { JURISDICTION, type ExemptionIssue, type TaxRateEntry, type TaxRateHistory } from "./schemas";

type RateRow = typeof taxRates.$inferSelect;
type CustomerRow = typeof customers.$inferSelect;

export const MAX_RATE_DECIMALS = 8;

/** Canonical decimal string of a tax rate: a fraction 0 ≤ rate < 1 with at most 8 decimals, parsed exactly. */
export function parseTaxRate(input: string | number): Result<string> {
  const parsed = parseDecimal(typeof input === "string" ? input.trim() : input, MAX_RATE_DECIMALS);
  if (!parsed.ok) return parsed;
  if (parsed.value < 0n) return err("must not be negative");
  if (parsed.value >= ONE) return err("must be a fraction below 1 (8.875 % is 0.08875)");
  return ok(formatDecimal(parsed.value));
}

// "0.08875" → "8.875"; the rate was validated on the way in.
function percentOf(rate: string): string {
  const parsed = parseDecimal(rate);
  return parsed.ok ? formatScaled(parsed.value * 100n, SCALE) : rate;
}

function toEntry(r: RateRow): z.infer<typeof TaxRateEntry> {
  return { jurisdiction: r.jurisdiction, rate: r.rate, percent: percentOf(r.rate), effectiveFrom: iso(r.effectiveFrom), createdBy: r.createdBy, createdAt: iso(r.createdAt) };
}

async function rateRows(db: Db, jurisdiction: string): Promise<RateRow[]> {
  return db.select().from(taxRates).where(eq(taxRates.jurisdiction, jurisdiction)).orderBy(desc(taxRates.effectiveFrom)).all();
}

/** Every rate the jurisdiction ever had (its whole history), for `rateInForce`. */
export async function taxRatesFor(db: Db, jurisdiction: string): Promise<TaxRate[]> {
  const rows = await rateRows(db, jurisdiction);
  return rows.map((r) => ({ jurisdiction: r.jurisdiction, rate: r.rate, effectiveFrom: r.effectiveFrom }));
}

/** The jurisdiction's history, newest first, and the rate in force at `at` (epoch ms). */
export async function taxRateHistory(db: Db, jurisdiction: string, at: number): Promise<z.infer<typeof TaxRateHistory>> {
  const rows = await rateRows(db, jurisdiction);
  const current = rateInForce(rows, jurisdiction, at) as RateRow | undefined;
  return { jurisdiction, at: iso(at), inForce: current ? toEntry(current) : null, history: rows.map(toEntry) };
}

export type TaxRateInput = { jurisdiction: string; rate: string | number; effectiveFrom: number };
export type TaxRateChange = { outcome: "created" | "replaced" | "unchanged"; rate: string; previousRate: string | null; effectiveFrom: number };

const summary = (jurisdiction: string, rate: string, effectiveFrom: number) => ({ jurisdiction, rate, effectiveFrom: iso(effectiveFrom) });
const MAX_ATTEMPTS = 3;

/**
 * Sets the rate of `jurisdiction` from `effectiveFrom` on: a new date adds to the history, the same date
 * replaces that entry (the audit row keeps the old rate). Setting the rate it already has writes nothing.
 */
export async function upsertTaxRate(s: Services, input: TaxRateInput): Promise<Outcome<TaxRateChange, "conflict" | "unprocessable">> {
  const { db, audit: ctx } = s;
  const rate = parseTaxRate(input.rate);
  if (!rate.ok) return invalid([{ path: "rate", message: rate.error }]);
  if (!JURISDICTION.test(input.jurisdiction)) return invalid([{ path: "jurisdiction", message: "must look like US-NY, DE or GB" }]);
  const { jurisdiction, effectiveFrom } = input;
  const after = summary(jurisdiction, rate.value, effectiveFrom);
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    const before = await db
      .select()
      .from(taxRates)
      .where(and(eq(taxRates.jurisdiction, jurisdiction), eq(taxRates.effectiveFrom, effectiveFrom)))
      .get();
    if (before?.rate === rate.value) return ok({ outcome: "unchanged", rate: rate.value, previousRate: before.rate, effectiveFrom });
    const audit = {
      action: "tax.rate_updated",
      targetType: "tax_rate",
      targetId: jurisdiction,
      ...(before && { before: summary(jurisdiction, before.rate, effectiveFrom) }),
      after,
    };
    const set = { rate: rate.value, createdBy: ctx.actor.id, createdAt: ctx.now };
    try {
      if (before) {
        // Guarded on the old rate: a concurrent replacement makes this batch fail instead of auditing a wrong `before`.
        const update = db.update(taxRates).set(set).where(and(eq(taxRates.id, before.id), eq(taxRates.rate, before.rate)));
        await commitWithAudit(db, [update, assertChanged(db)], [audit], ctx);
        return ok({ outcome: "replaced", rate: rate.value, previousRate: before.rate, effectiveFrom });
      }
      await commitWithAudit(db, [db.insert(taxRates).values({ id: newId("txr"), jurisdiction, effectiveFrom, ...set })], [audit], ctx);
      return ok({ outcome: "created", rate: rate.value, previousRate: null, effectiveFrom });
    } catch (e) {
      // Someone else wrote the same (jurisdiction, date) between our read and our batch: read again.
      if (!isAssertionFailure(e) && !isUniqueViolation(e, "tax_rates.")) throw e;
    }
  }
  return conflict(`the ${jurisdiction} rate from ${iso(effectiveFrom)} is being changed concurrently; retry`);
}

// Midnight UTC reads better as a bare date ("2027-01-01").
function dateText(ms: number): string {
  const s = iso(ms);
  return s.endsWith("T00:00:00.000Z") ? s.slice(0, 10) : s;
}

/** Whether `customer` is exempt at `at` (epoch ms): the flag, a certificate, and no expiry at or before `at`. */
export function customerTaxExemption(customer: CustomerRow, at: number): { exempt: boolean; reason: string } {
  if (!customer.taxExempt) return { exempt: false, reason: "no exemption" };
  const cert = customer.taxCertificateId;
  if (!cert) return { exempt: false, reason: "tax-exempt flag without a certificate" };
  const expiresAt = customer.taxCertificateExpiresAt;
  if (expiresAt === null) return { exempt: true, reason: `certificate ${cert} valid, no expiry` };
  if (expiresAt <= at) return { exempt: false, reason: `certificate ${cert} expired ${dateText(expiresAt)}` };
  return { exempt: true, reason: `certificate ${cert} valid until ${dateText(expiresAt)}` };
}

/** Tax-exempt customers whose exemption would not hold now or within `days`: missing, expired, expiring soon. */
export async function validateExemptions(db: Db, now: number, days: number) {
  const horizon = now + days * DAY_MS;
  const [rows, totals] = await Promise.all([
    db
      .select()
      .from(customers)
      .where(
        and(
          eq(customers.taxExempt, true),
          or(isNull(customers.taxCertificateId), and(isNotNull(customers.taxCertificateExpiresAt), lte(customers.taxCertificateExpiresAt, horizon))),
        ),
      )
      // Missing certificates first, then by expiry, longest expired first.
      .orderBy(asc(customers.taxCertificateExpiresAt), asc(customers.id))
      .all(),
    db.select({ n: count() }).from(customers).where(eq(customers.taxExempt, true)).get(),
  ]);
  const data: z.infer<typeof ExemptionIssue>[] = rows.map((r) => {
    const expiresAt = r.taxCertificateExpiresAt;
    const certificate = r.taxCertificateId ? { id: r.taxCertificateId, expiresAt: iso(expiresAt) } : null;
    if (!certificate || expiresAt === null) return { customerId: r.id, email: r.email, certificate, problem: "missing_certificate", daysLeft: null };
    // `|| 0` turns -0 (expired within the last day) into 0.
    const daysLeft = Math.ceil((expiresAt - now) / DAY_MS) || 0;
    return { customerId: r.id, email: r.email, certificate, problem: expiresAt <= now ? "expired" : "expiring_soon", daysLeft };
  });
  const countOf = (p: (typeof data)[number]["problem"]) => data.filter((d) => d.problem === p).length;
  const taxExempt = totals?.n ?? 0;
  return {
    checkedAt: iso(now),
    days,
    counts: {
      taxExempt,
      valid: taxExempt - data.length,
      missingCertificate: countOf("missing_certificate"),
      expired: countOf("expired"),
      expiringSoon: countOf("expiring_soon"),
    },
    data,
  };
}
