import { z } from "@hono/zod-openapi";
import { and, desc, eq, gte, inArray, isNull, ne, sql } from "drizzle-orm";
import type { Db } from "../../db/client";
import { auditLog, customers, invoices, payments, plans, subscriptions, type StoredPrice } from "../../db/schema";
import { parseDecimal } from "../../domain/decimal";
import { formatMinor, money, type Money } from "../../domain/money";
import type { Interval } from "../../domain/periods";
import { subscriptionMrr } from "../../domain/revenue";
import { iso, DAY_MS } from "../../lib/time";
import { effectiveAmountOff, effectiveDiscount, realTimeSubscription } from "./mrr";
import { Money as MoneySchema } from "./schemas";

// Runbook "High Churn Rate": what churned and why (churn analysis), and who may churn next (at-risk scoring).

const s = subscriptions;
const day = (ms: number) => iso(ms).slice(0, 10);
const CHUNK = 90; // ids per `in (…)`: D1 allows 100 bound parameters per statement

function chunks<T>(items: readonly T[], size = CHUNK): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Points per signal; a customer's score is the sum over the signals it shows, each counted once whatever the number of subscriptions behind it. */
export const RISK_WEIGHTS = {
  cancel_at_period_end: 40, // already said they are leaving
  past_due: 30, // collection gave up on a subscription's invoice
  payment_failed: 25, // the latest attempt on an unpaid invoice failed (retries may still be due)
  trial_ending_without_payment_method: 20, // cannot convert without one
  downgrade: 15, // moved to a cheaper plan in the last 60 days
  usage_drop: 15, // latest closed usage period under half the one before
} as const;
export type RiskSignal = keyof typeof RISK_WEIGHTS;
const riskSignals = Object.keys(RISK_WEIGHTS) as [RiskSignal, ...RiskSignal[]];

const DOWNGRADE_WINDOW_MS = 60 * DAY_MS;
const TRIAL_HORIZON_MS = 7 * DAY_MS;
export const MRR_AT_RISK_STATUSES = ["active", "past_due", "trialing"] as const;

export const AT_RISK_METHOD =
  `Customers with at least one subscription that is not canceled (test clocks excluded), scored by the sum of the weights of the signals they show ` +
  `(${riskSignals.map((k) => `${k} ${RISK_WEIGHTS[k]}`).join(", ")}), each signal counted once per customer. ` +
  "past_due: a subscription is past_due. payment_failed: an open invoice whose latest collection attempt failed. cancel_at_period_end: a live subscription is set to cancel at period end. " +
  "downgrade: a plan change (audit subscription.plan_changed) in the last 60 days to a plan version whose monthly flat amount × quantity is lower (or, without the plan rows, a negative proration net). " +
  "usage_drop: a meter's latest closed usage rollup is less than half of the closed one before it. " +
  "trial_ending_without_payment_method: a trial ending within 7 days on a subscription without a payment method. " +
  "mrrAtRisk: per currency, the monthly recurring amount (as MRR: flat prices × quantity less discount, normalized to a month) of the customer's active, past_due and trialing subscriptions (a trial at the price it converts to). " +
  "Sorted by score, then customer id.";

export type ScoredCustomer = { customerId: string; score: number; signals: { name: RiskSignal; weight: number; detail: string }[] };

/** Monthly flat amount of one unit × quantity of a plan version, in minor units (no discount). */
const planMonthly = (p: { prices: StoredPrice[]; interval: Interval; intervalCount: number }, quantity: number) =>
  subscriptionMrr({ amountMinor: p.prices.reduce((t, x) => (x.type === "flat" ? t + x.amountMinor : t), 0), quantity, interval: p.interval, intervalCount: p.intervalCount, discountPercent: null });

type PlanVersionRow = { id: string; version: number; name: string; currency: string; interval: Interval; intervalCount: number; prices: StoredPrice[] };

async function planVersions(db: Db, ids: string[]): Promise<Map<string, PlanVersionRow>> {
  const out = new Map<string, PlanVersionRow>();
  for (const part of chunks([...new Set(ids)])) {
    const rows = await db
      .select({ id: plans.id, version: plans.version, name: plans.name, currency: plans.currency, interval: plans.interval, intervalCount: plans.intervalCount, prices: plans.prices })
      .from(plans)
      .where(inArray(plans.id, part))
      .all();
    for (const r of rows) out.set(`${r.id}@${r.version}`, r);
  }
  return out;
}

const parseJson = (text: string | null): Record<string, unknown> => {
  try {
    return text ? (JSON.parse(text) as Record<string, unknown>) : {};
  } catch {
    return {};
  }
};

/** Every customer showing at least one risk signal at `now`, scored and sorted (score desc, then id). Read-only. */
export async function scoreAtRiskCustomers(db: Db, now: number): Promise<ScoredCustomer[]> {
  const liveSub = and(realTimeSubscription, ne(s.status, "canceled"));
  const trialEndsSoon = sql`(${s.status} = 'trialing' and ${s.trialEnd} >= ${now} and ${s.trialEnd} < ${now + TRIAL_HORIZON_MS} and (${s.paymentMethod} is null or trim(${s.paymentMethod}) = ''))`;
  const laterAttempt = sql`exists (select 1 from ${payments} as later where later.invoice_id = ${payments.invoiceId} and later.attempt > ${payments.attempt})`;
  const customerIsLive = sql`exists (select 1 from ${s} where ${s.customerId} = ${invoices.customerId} and ${s.status} <> 'canceled' and ${s.testClockId} is null)`;

  const [subRows, failed, changes, usage] = await Promise.all([
    db
      .select({ id: s.id, customerId: s.customerId, status: s.status, cancelAtPeriodEnd: s.cancelAtPeriodEnd, currentPeriodEnd: s.currentPeriodEnd, trialEnd: s.trialEnd, cancelReason: s.cancelReason })
      .from(s)
      .where(and(liveSub, sql`(${s.status} = 'past_due' or ${s.cancelAtPeriodEnd} = 1 or ${trialEndsSoon})`))
      .all(),
    db
      .select({ customerId: invoices.customerId, invoiceId: invoices.id, number: invoices.number, attempt: payments.attempt, code: payments.failureCode, at: payments.updatedAt })
      .from(payments)
      .innerJoin(invoices, eq(invoices.id, payments.invoiceId))
      .where(and(eq(invoices.status, "open"), eq(payments.status, "failed"), isNull(invoices.testClockId), sql`not ${laterAttempt}`, customerIsLive))
      .all(),
    db
      .select({ subscriptionId: auditLog.targetId, at: auditLog.at, before: auditLog.before, after: auditLog.after, customerId: s.customerId })
      .from(auditLog)
      .innerJoin(s, eq(s.id, auditLog.targetId))
      .where(and(eq(auditLog.action, "subscription.plan_changed"), gte(auditLog.at, now - DOWNGRADE_WINDOW_MS), liveSub))
      .orderBy(desc(auditLog.at))
      .all(),
    // The two latest closed rollups of each meter of each live subscription.
    db.all<{ subscriptionId: string; customerId: string; meterId: string; latest: string; previous: string; periodEnd: number }>(sql`
      with ranked as (
        select u.subscription_id, u.meter_id, u.value, u.period_end, s.customer_id,
               row_number() over (partition by u.subscription_id, u.meter_id order by u.period_start desc) as rn
        from usage_rollups u join subscriptions s on s.id = u.subscription_id
        where u.closed = 1 and s.status <> 'canceled' and s.test_clock_id is null
      )
      select a.subscription_id as subscriptionId, a.customer_id as customerId, a.meter_id as meterId, a.value as latest, b.value as previous, a.period_end as periodEnd
      from ranked a join ranked b on b.subscription_id = a.subscription_id and b.meter_id = a.meter_id and b.rn = 2
      where a.rn = 1`),
  ]);

  const details = new Map<string, Map<RiskSignal, string[]>>();
  const add = (customerId: string, signal: RiskSignal, detail: string) => {
    let m = details.get(customerId);
    if (!m) details.set(customerId, (m = new Map()));
    m.set(signal, [...(m.get(signal) ?? []), detail]);
  };

  for (const r of subRows) {
    if (r.status === "past_due") add(r.customerId, "past_due", `subscription ${r.id} is past_due`);
    if (r.cancelAtPeriodEnd) add(r.customerId, "cancel_at_period_end", `subscription ${r.id} cancels on ${day(r.currentPeriodEnd)}${r.cancelReason ? ` (reason: ${r.cancelReason})` : ""}`);
    if (r.status === "trialing" && r.trialEnd !== null && r.trialEnd >= now && r.trialEnd < now + TRIAL_HORIZON_MS) {
      add(r.customerId, "trial_ending_without_payment_method", `trial of subscription ${r.id} ends on ${day(r.trialEnd)} and no payment method is set`);
    }
  }
  for (const f of failed) add(f.customerId, "payment_failed", `invoice ${f.number ?? f.invoiceId}: attempt ${f.attempt} failed${f.code ? ` (${f.code})` : ""} on ${day(f.at)}`);

  const versions = await planVersions(
    db,
    changes.flatMap((c) => [String(parseJson(c.before).planId ?? ""), String(parseJson(c.after).planId ?? "")]).filter(Boolean),
  );
  const seenDowngrade = new Set<string>();
  for (const c of changes) {
    if (seenDowngrade.has(c.subscriptionId)) continue; // newest change per subscription first
    const before = parseJson(c.before);
    const after = parseJson(c.after);
    const oldPlan = versions.get(`${String(before.planId)}@${String(before.planVersion)}`);
    const newPlan = versions.get(`${String(after.planId)}@${String(after.planVersion)}`);
    let detail: string | null = null;
    if (oldPlan && newPlan) {
      const was = planMonthly(oldPlan, Number(before.quantity ?? 1));
      const is = planMonthly(newPlan, Number(after.quantity ?? 1));
      if (is < was) detail = `subscription ${c.subscriptionId}: ${oldPlan.name} → ${newPlan.name} on ${day(c.at)}, ${formatMinor(was, newPlan.currency)} → ${formatMinor(is, newPlan.currency)} ${newPlan.currency} a month`;
    } else if (typeof after.prorationNet === "number" && after.prorationNet < 0) {
      detail = `subscription ${c.subscriptionId}: plan changed on ${day(c.at)} with a proration credit of ${-after.prorationNet} minor units`;
    }
    if (!detail) continue;
    seenDowngrade.add(c.subscriptionId);
    add(c.customerId, "downgrade", detail);
  }

  for (const u of usage) {
    const latest = parseDecimal(u.latest);
    const previous = parseDecimal(u.previous);
    if (!latest.ok || !previous.ok || latest.value * 2n >= previous.value) continue;
    add(u.customerId, "usage_drop", `subscription ${u.subscriptionId}, meter ${u.meterId}: ${u.latest} in the period ending ${day(u.periodEnd)}, ${u.previous} in the one before`);
  }

  return [...details.entries()]
    .map(([customerId, m]) => {
      const signals = riskSignals.filter((k) => m.has(k)).map((name) => ({ name, weight: RISK_WEIGHTS[name], detail: m.get(name)!.join("; ") }));
      return { customerId, score: signals.reduce((t, x) => t + x.weight, 0), signals };
    })
    .sort((a, b) => b.score - a.score || (a.customerId < b.customerId ? -1 : a.customerId > b.customerId ? 1 : 0));
}

/** Email and name of each customer. */
export async function customerContacts(db: Db, ids: readonly string[]): Promise<Map<string, { email: string; name: string | null }>> {
  const out = new Map<string, { email: string; name: string | null }>();
  for (const part of chunks(ids)) {
    for (const r of await db.select({ id: customers.id, email: customers.email, name: customers.name }).from(customers).where(inArray(customers.id, part)).all()) {
      out.set(r.id, { email: r.email, name: r.name });
    }
  }
  return out;
}

/** Per customer and currency, the monthly recurring amount of its active, past_due and trialing subscriptions (each rounded once, as MRR). */
export async function mrrAtRisk(db: Db, ids: readonly string[], now: number): Promise<Map<string, Money[]>> {
  const sums = new Map<string, Map<string, number>>();
  for (const part of chunks(ids)) {
    const rows = await db
      .select({ customerId: s.customerId, currency: s.currency, quantity: s.quantity, discountPercent: effectiveDiscount(now), amountOffMinor: effectiveAmountOff(now), interval: plans.interval, intervalCount: plans.intervalCount, prices: plans.prices })
      .from(s)
      .innerJoin(plans, and(eq(plans.id, s.planId), eq(plans.version, s.planVersion)))
      .where(and(realTimeSubscription, inArray(s.customerId, part), inArray(s.status, [...MRR_AT_RISK_STATUSES])))
      .all();
    for (const r of rows) {
      const amountMinor = r.prices.reduce((t, p) => (p.type === "flat" ? t + p.amountMinor : t), 0);
      const mrr = subscriptionMrr({ amountMinor, quantity: r.quantity, interval: r.interval, intervalCount: r.intervalCount, discountPercent: r.discountPercent, amountOffMinor: Number(r.amountOffMinor) });
      let byCurrency = sums.get(r.customerId);
      if (!byCurrency) sums.set(r.customerId, (byCurrency = new Map()));
      byCurrency.set(r.currency, (byCurrency.get(r.currency) ?? 0) + mrr);
    }
  }
  return new Map([...sums.entries()].map(([id, m]) => [id, [...m.keys()].sort().map((currency) => money(m.get(currency)!, currency))]));
}

export const AtRiskQuery = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(50).openapi({ description: "Customers returned, highest scores first (1-500)" }),
});
export const AtRiskCustomers = z
  .object({
    asOf: z.string(),
    method: z.string(),
    weights: z.record(z.enum(riskSignals), z.number().int()).openapi({ description: "Points per signal" }),
    total: z.number().int().openapi({ description: "Customers showing at least one signal" }),
    hasMore: z.boolean(),
    customers: z.array(
      z.object({
        customerId: z.string(),
        email: z.string().nullable(),
        name: z.string().nullable(),
        score: z.number().int(),
        signals: z.array(z.object({ name: z.enum(riskSignals), weight: z.number().int(), detail: z.string() })),
        mrrAtRisk: z.array(MoneySchema).openapi({ description: "Per currency, never summed across currencies" }),
      }),
    ),
  })
  .openapi("AtRiskCustomers");
export type AtRiskCustomers = z.infer<typeof AtRiskCustomers>;

/** The `limit` customers most at risk at `now`, with their signals, contact and MRR at risk. */
export async function atRiskCustomers(db: Db, now: number, limit: number): Promise<AtRiskCustomers> {
  const scored = await scoreAtRiskCustomers(db, now);
  const page = scored.slice(0, limit);
  const ids = page.map((c) => c.customerId);
  const [contacts, mrr] = await Promise.all([customerContacts(db, ids), mrrAtRisk(db, ids, now)]);
  return {
    asOf: iso(now),
    method: AT_RISK_METHOD,
    weights: { ...RISK_WEIGHTS },
    total: scored.length,
    hasMore: scored.length > page.length,
    customers: page.map((c) => ({
      customerId: c.customerId,
      email: contacts.get(c.customerId)?.email ?? null,
      name: contacts.get(c.customerId)?.name ?? null,
      score: c.score,
      signals: c.signals,
      mrrAtRisk: mrr.get(c.customerId) ?? [],
    })),
  };
}
