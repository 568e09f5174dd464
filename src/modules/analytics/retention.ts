import { z } from "@hono/zod-openapi";
import { and, desc, eq, gte, inArray, isNotNull, isNull, ne, sql, type SQL } from "drizzle-orm";
import type { Db } from "../../db/client";
import { auditLog, customers, invoices, payments, plans, subscriptions, type StoredPrice } from "../../db/schema";
import { parseDecimal } from "../../domain/decimal";
import { formatMinor, money, type Money } from "../../domain/money";
import { addIntervals, type Interval } from "../../domain/periods";
import { mrrOf, ratio, subscriptionMrr, trailingWindow } from "../../domain/revenue";
import { iso } from "../../lib/time";
import { closedObject } from "../admin/config";
import { churnBetween } from "./churn";
import { mrrLines, realTimeSubscription } from "./mrr";
import { ChurnReport, Money as MoneySchema } from "./schemas";

// Runbook "High Churn Rate": what churned and why (churn analysis), and who may churn next (at-risk scoring).

const DAY_MS = 86_400_000;
const s = subscriptions;
const sumWhen = (cond: SQL) => sql<number>`coalesce(sum(case when ${cond} then 1 else 0 end), 0)`.mapWith(Number);
const day = (ms: number) => iso(ms).slice(0, 10);
const CHUNK = 90; // ids per `in (…)`: D1 allows 100 bound parameters per statement

function chunks<T>(items: readonly T[], size = CHUNK): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Churn analysis
// ---------------------------------------------------------------------------------------------------------------

export const churnAnalysisPeriods = ["last_30_days", "last_90_days", "last_12_months", "month", "quarter"] as const;
export type ChurnAnalysisPeriod = (typeof churnAnalysisPeriods)[number];

/** The window ending now, half-open [from, now): fixed day counts, 12 calendar months back, or the same month/quarter as GET /analytics/churn. */
export function churnAnalysisWindow(now: number, period: ChurnAnalysisPeriod): { from: number; to: number } {
  switch (period) {
    case "last_30_days":
      return { from: now - 30 * DAY_MS, to: now };
    case "last_90_days":
      return { from: now - 90 * DAY_MS, to: now };
    case "last_12_months":
      return { from: addIntervals(now, "month", 12, -1), to: now };
    case "month":
    case "quarter":
      return trailingWindow(now, period);
  }
}

export const churnAnalysisKey = (period: ChurnAnalysisPeriod, date: string) => `reports/churn/${period}-${date}.json`;

// Same predicates as churn.ts (which does not export them): paying subscriptions that ended in the window.
const endedInTrial = sql`(${s.endedAt} is not null and ${s.trialEnd} is not null and ${s.endedAt} <= ${s.trialEnd})`;
const canceledIn = (from: number, to: number): SQL =>
  sql`(${s.status} = 'canceled' and ${s.endedAt} >= ${from} and ${s.endedAt} < ${to} and not ${endedInTrial})`;

/** Ended after failing to pay: canceled while past_due (the audit row keeps the status it left), or with an unpaid invoice issued before the end whose collection failed. */
const involuntary = sql`(exists (select 1 from ${auditLog} where ${auditLog.targetId} = ${s.id} and ${auditLog.action} = 'subscription.canceled' and json_extract(${auditLog.before}, '$.status') = 'past_due')
  or exists (select 1 from ${invoices} where ${invoices.subscriptionId} = ${s.id} and ${invoices.status} in ('open', 'uncollectible') and ${invoices.lastError} is not null and ${invoices.createdAt} < ${s.endedAt}))`;
const hasReason = sql`(${s.cancelReason} is not null and trim(${s.cancelReason}) <> '')`;
const churnTypes = {
  voluntary: sql`(not ${involuntary} and ${hasReason})`,
  involuntary,
  unclassified: sql`(not ${involuntary} and not ${hasReason})`,
} as const;

const tenure = sql`(${s.endedAt} - ${s.createdAt})`;
const tenureBuckets = [
  { bucket: "<1 month", cond: sql`(${tenure} < ${30 * DAY_MS})` },
  { bucket: "1-3 months", cond: sql`(${tenure} >= ${30 * DAY_MS} and ${tenure} < ${90 * DAY_MS})` },
  { bucket: "3-12 months", cond: sql`(${tenure} >= ${90 * DAY_MS} and ${tenure} < ${365 * DAY_MS})` },
  { bucket: ">12 months", cond: sql`(${tenure} >= ${365 * DAY_MS})` },
] as const;

const FEEDBACK_SAMPLES = 10;

export const CHURN_ANALYSIS_METHOD =
  "Counts, rates and revenue churn as GET /analytics/churn (canceled = paying subscriptions that ended in the window; trials that never converted are not churn). " +
  "byPlan and byTenure price the canceled subscriptions like MRR (per currency, never summed across currencies). " +
  "Tenure = endedAt − createdAt of the subscription, a month being 30 days: <30 d, 30-89 d, 90-364 d, ≥365 d. " +
  "involuntary: canceled while past_due, or with an unpaid (open or uncollectible) invoice issued before it ended whose collection failed; " +
  "voluntary: the others with a cancellation reason; unclassified: the others without one. " +
  "Reasons (with includeReasons) are ranked by count, then name; share = count ÷ canceled; feedback is the 10 most recent non-empty texts.";

const Rate = z.string().nullable();
const Slice = z.object({ subscriptions: z.number().int(), mrrLost: z.array(MoneySchema) });
export const ChurnAnalysisBody = closedObject({
  period: z.enum(churnAnalysisPeriods).default("last_30_days"),
  includeReasons: z.boolean().default(false),
});
export const ChurnAnalysis = z
  .object({
    key: z.string().openapi({ description: "R2 key of the stored report" }),
    report: z.object({
      period: z.enum(churnAnalysisPeriods),
      generatedAt: z.string(),
      window: z.object({ from: z.string(), to: z.string() }),
      method: z.string(),
      subscriptions: ChurnReport.shape.subscriptions,
      customers: ChurnReport.shape.customers,
      revenue: ChurnReport.shape.revenue,
      trials: ChurnReport.shape.trials,
      byPlan: z.array(z.object({ currency: z.string(), planId: z.string(), planName: z.string().nullable(), subscriptions: z.number().int(), mrrLost: MoneySchema })),
      byTenure: z.array(Slice.extend({ bucket: z.enum(tenureBuckets.map((b) => b.bucket) as ["<1 month", "1-3 months", "3-12 months", ">12 months"]) })),
      byType: z.object({ voluntary: Slice, involuntary: Slice, unclassified: Slice }),
      reasons: z
        .object({
          ranked: z.array(z.object({ reason: z.string(), count: z.number().int(), share: Rate })),
          recentFeedback: z.array(z.object({ subscriptionId: z.string(), customerId: z.string(), reason: z.string().nullable(), feedback: z.string(), endedAt: z.string() })),
        })
        .nullable()
        .openapi({ description: "Only with includeReasons" }),
    }),
  })
  .openapi("ChurnAnalysis");
export type ChurnAnalysis = z.infer<typeof ChurnAnalysis>;
type Report = ChurnAnalysis["report"];

const lostMoney = async (db: Db, where: SQL): Promise<Money[]> => mrrOf(await mrrLines(db, where)).map((c) => money(c.mrrMinor, c.currency));

/** The churn analysis of the period ending at `now`: churn.ts's figures broken down by plan, tenure and churn type, with reasons on request. No writes. */
export async function buildChurnAnalysis(db: Db, period: ChurnAnalysisPeriod, includeReasons: boolean, now: number): Promise<Report> {
  const { from } = churnAnalysisWindow(now, period);
  const to = now + 1;
  const canceled = canceledIn(from, to);
  const [churn, counts, lostLines, tenureLost, [voluntaryLost, involuntaryLost, unclassifiedLost], feedback] = await Promise.all([
    churnBetween(db, from, to),
    db
      .select({
        t0: sumWhen(tenureBuckets[0].cond),
        t1: sumWhen(tenureBuckets[1].cond),
        t2: sumWhen(tenureBuckets[2].cond),
        t3: sumWhen(tenureBuckets[3].cond),
        voluntary: sumWhen(churnTypes.voluntary),
        involuntary: sumWhen(churnTypes.involuntary),
        unclassified: sumWhen(churnTypes.unclassified),
      })
      .from(s)
      .where(and(realTimeSubscription, canceled))
      .get(),
    mrrLines(db, canceled),
    Promise.all(tenureBuckets.map((b) => lostMoney(db, sql`${canceled} and ${b.cond}`))),
    Promise.all([
      lostMoney(db, sql`${canceled} and ${churnTypes.voluntary}`),
      lostMoney(db, sql`${canceled} and ${churnTypes.involuntary}`),
      lostMoney(db, sql`${canceled} and ${churnTypes.unclassified}`),
    ] as const),
    includeReasons
      ? db
          .select({ subscriptionId: s.id, customerId: s.customerId, reason: s.cancelReason, feedback: s.cancelFeedback, endedAt: s.endedAt })
          .from(s)
          .where(and(realTimeSubscription, canceled, isNotNull(s.cancelFeedback), sql`trim(${s.cancelFeedback}) <> ''`))
          .orderBy(desc(s.endedAt), desc(s.id))
          .limit(FEEDBACK_SAMPLES)
          .all()
      : Promise.resolve([]),
  ]);
  const c = counts ?? { t0: 0, t1: 0, t2: 0, t3: 0, voluntary: 0, involuntary: 0, unclassified: 0 };
  const tenureCounts = [c.t0, c.t1, c.t2, c.t3];
  const canceledCount = churn.subscriptions.canceled;
  return {
    period,
    generatedAt: iso(now),
    window: { from: churn.from, to: churn.to },
    method: CHURN_ANALYSIS_METHOD,
    subscriptions: churn.subscriptions,
    customers: churn.customers,
    revenue: churn.revenue,
    trials: churn.trials,
    byPlan: mrrOf(lostLines).flatMap((cur) =>
      cur.byPlan.map((p) => ({ currency: cur.currency, planId: p.planId, planName: p.planName, subscriptions: p.subscriptions, mrrLost: money(p.mrrMinor, cur.currency) })),
    ),
    byTenure: tenureBuckets.map((b, i) => ({ bucket: b.bucket, subscriptions: tenureCounts[i]!, mrrLost: tenureLost[i]! })),
    byType: {
      voluntary: { subscriptions: c.voluntary, mrrLost: voluntaryLost },
      involuntary: { subscriptions: c.involuntary, mrrLost: involuntaryLost },
      unclassified: { subscriptions: c.unclassified, mrrLost: unclassifiedLost },
    },
    reasons: includeReasons
      ? {
          ranked: churn.cancellationReasons.map((r) => ({ ...r, share: ratio(r.count, canceledCount) })),
          recentFeedback: feedback.map((f) => ({ subscriptionId: f.subscriptionId, customerId: f.customerId, reason: f.reason, feedback: f.feedback!, endedAt: iso(f.endedAt!) })),
        }
      : null,
  };
}

/** Builds the analysis and stores it in R2 at reports/churn/<period>-<date>.json (a re-run the same day replaces it). */
export async function churnAnalysis(env: Env, db: Db, input: { period: ChurnAnalysisPeriod; includeReasons: boolean }, now: number): Promise<ChurnAnalysis> {
  const report = await buildChurnAnalysis(db, input.period, input.includeReasons, now);
  const key = churnAnalysisKey(input.period, day(now));
  await env.ARCHIVE.put(key, JSON.stringify(report, null, 2), {
    httpMetadata: { contentType: "application/json" },
    customMetadata: { kind: "churn_analysis", period: input.period, date: day(now) },
  });
  return { key, report };
}

// ---------------------------------------------------------------------------------------------------------------
// At-risk customers
// ---------------------------------------------------------------------------------------------------------------

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
export async function mrrAtRisk(db: Db, ids: readonly string[]): Promise<Map<string, Money[]>> {
  const sums = new Map<string, Map<string, number>>();
  for (const part of chunks(ids)) {
    const rows = await db
      .select({ customerId: s.customerId, currency: s.currency, quantity: s.quantity, discountPercent: s.discountPercent, interval: plans.interval, intervalCount: plans.intervalCount, prices: plans.prices })
      .from(s)
      .innerJoin(plans, and(eq(plans.id, s.planId), eq(plans.version, s.planVersion)))
      .where(and(realTimeSubscription, inArray(s.customerId, part), inArray(s.status, [...MRR_AT_RISK_STATUSES])))
      .all();
    for (const r of rows) {
      const amountMinor = r.prices.reduce((t, p) => (p.type === "flat" ? t + p.amountMinor : t), 0);
      const mrr = subscriptionMrr({ amountMinor, quantity: r.quantity, interval: r.interval, intervalCount: r.intervalCount, discountPercent: r.discountPercent });
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
  const [contacts, mrr] = await Promise.all([customerContacts(db, ids), mrrAtRisk(db, ids)]);
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
