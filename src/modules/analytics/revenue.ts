import type { Db } from "../../db/client";
import { money, type Money } from "../../domain/money";
import { trailingWindow, utcDay, type ReportPeriod } from "../../domain/revenue";
import { iso } from "../../lib/time";
import { ok, type Outcome } from "../../platform/failure";
import { collectedBetween, FLOWS_BASIS, invoiceBreakdown, invoicedBetween, invoiceTotals, refundedBetween, type BreakdownGroup, type FlowRow } from "./flows";

type Flow = Money & { count: number };

/** Rows of one kind summed per currency (plans folded together). */
function perCurrency(rows: FlowRow[]): Map<string, { amountMinor: number; count: number }> {
  const out = new Map<string, { amountMinor: number; count: number }>();
  for (const r of rows) {
    const t = out.get(r.currency) ?? { amountMinor: 0, count: 0 };
    out.set(r.currency, { amountMinor: t.amountMinor + r.amountMinor, count: t.count + r.count });
  }
  return out;
}

export type RevenueToday = {
  date: string;
  from: string;
  to: string;
  basis: string;
  currencies: { currency: string; collected: Flow; refunded: Flow; net: Money; invoiced: Flow }[];
};

/** Today's (UTC) money per currency, up to `now`: collected, refunded, net, and invoiced. */
export async function revenueToday(db: Db, now: number): Promise<Outcome<RevenueToday, "unprocessable">> {
  const day = utcDay(now);
  const to = now + 1;
  const [collectedRows, refundedRows, invoicedRows] = await Promise.all([collectedBetween(db, day.from, to), refundedBetween(db, day.from, to), invoicedBetween(db, day.from, to)]);
  if (!collectedRows.ok) return collectedRows;
  const [collected, refunded, invoiced] = [collectedRows.value, refundedRows, invoicedRows].map(perCurrency);
  const currencies = [...new Set([...collected!.keys(), ...refunded!.keys(), ...invoiced!.keys()])].sort();
  const zero = { amountMinor: 0, count: 0 };
  const flow = (t: { amountMinor: number; count: number } | undefined, currency: string): Flow => ({ ...money((t ?? zero).amountMinor, currency), count: (t ?? zero).count });
  return ok({
    date: day.date,
    from: iso(day.from),
    to: iso(now),
    basis: FLOWS_BASIS,
    currencies: currencies.map((currency) => {
      const c = collected!.get(currency);
      const r = refunded!.get(currency);
      return {
        currency,
        collected: flow(c, currency),
        refunded: flow(r, currency),
        net: money((c?.amountMinor ?? 0) - (r?.amountMinor ?? 0), currency),
        invoiced: flow(invoiced!.get(currency), currency),
      };
    }),
  });
}

export const BREAKDOWN_BASIS =
  "Invoices finalized in the window with status open, paid or uncollectible (draft and void left out), test clocks excluded. " +
  "invoiced: their totals (after discount and tax) less the credit notes issued against them; collected: what was paid on them. Never summed across currencies. " +
  "groupBy=plan uses the invoice's subscription's current plan (key null: invoices without a subscription).";

export type RevenueBreakdown = {
  groupBy: BreakdownGroup;
  period: ReportPeriod;
  from: string;
  to: string;
  basis: string;
  totals: { currency: string; invoiced: Money; collected: Money; invoices: number }[];
  groups: { key: string | null; label: string | null; currency: string; invoiced: Money; collected: Money; invoices: number }[];
  hasMore: boolean;
};

/** Finalized invoice totals and collections of the `period` ending at `now`, per group and currency. */
export async function revenueBreakdown(db: Db, groupBy: BreakdownGroup, period: ReportPeriod, now: number, limit: number): Promise<RevenueBreakdown> {
  const { from } = trailingWindow(now, period);
  const to = now + 1;
  const [rows, totals] = await Promise.all([invoiceBreakdown(db, groupBy, from, to, limit), invoiceTotals(db, from, to)]);
  return {
    groupBy,
    period,
    from: iso(from),
    to: iso(now),
    basis: BREAKDOWN_BASIS,
    totals: totals.map((t) => ({ currency: t.currency, invoiced: money(t.invoicedMinor, t.currency), collected: money(t.collectedMinor, t.currency), invoices: t.invoices })),
    groups: rows.slice(0, limit).map((r) => ({
      key: r.key,
      label: r.label,
      currency: r.currency,
      invoiced: money(r.invoicedMinor, r.currency),
      collected: money(r.collectedMinor, r.currency),
      invoices: r.invoices,
    })),
    hasMore: rows.length > limit,
  };
}
