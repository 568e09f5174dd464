import { z } from "@hono/zod-openapi";
import type { Services } from "../../platform/services";
import { and, desc, isNotNull, sql, type SQL } from "drizzle-orm";
import type { Db } from "../../db/client";
import { auditLog, invoices, subscriptions } from "../../db/schema";
import { money, type Money } from "../../domain/money";
import { addIntervals } from "../../domain/periods";
import { mrrOf, ratio, trailingWindow } from "../../domain/revenue";
import { iso, DAY_MS } from "../../lib/time";
import { closedObject } from "../../lib/schema";
import { churnBetween } from "./churn";
import { mrrLines, realTimeSubscription } from "./mrr";
import { ChurnReport, Money as MoneySchema } from "./schemas";

// Runbook "High Churn Rate": what churned and why (churn analysis), and who may churn next (at-risk scoring).

const s = subscriptions;
const sumWhen = (cond: SQL) => sql<number>`coalesce(sum(case when ${cond} then 1 else 0 end), 0)`.mapWith(Number);
const day = (ms: number) => iso(ms).slice(0, 10);

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
  "Counts, rates and revenue churn as GET /analytics/churn (canceled = paying at the window's start and ended in it; newAndCanceled = started paying inside it and ended in it; trials that never converted are not churn). " +
  "byPlan, byTenure, byType and reasons cover every paying subscription that ended in the window (both kinds); they price them like MRR (per currency, never summed across currencies). " +
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

const lostMoney = async (db: Db, where: SQL, now: number): Promise<Money[]> => mrrOf(await mrrLines(db, where, now)).map((c) => money(c.mrrMinor, c.currency));

/** The churn analysis of the period ending at `now`: churn.ts's figures broken down by plan, tenure and churn type, with reasons on request. No writes. */
export async function buildChurnAnalysis(db: Db, period: ChurnAnalysisPeriod, includeReasons: boolean, now: number): Promise<Report> {
  const { from } = churnAnalysisWindow(now, period);
  const to = now + 1;
  const canceled = canceledIn(from, to);
  const [churn, counts, lostLines, tenureLost, [voluntaryLost, involuntaryLost, unclassifiedLost], feedback] = await Promise.all([
    churnBetween(db, from, to, now),
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
    mrrLines(db, canceled, now),
    Promise.all(tenureBuckets.map((b) => lostMoney(db, sql`${canceled} and ${b.cond}`, now))),
    Promise.all([
      lostMoney(db, sql`${canceled} and ${churnTypes.voluntary}`, now),
      lostMoney(db, sql`${canceled} and ${churnTypes.involuntary}`, now),
      lostMoney(db, sql`${canceled} and ${churnTypes.unclassified}`, now),
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
  // Reasons are those of every cancellation of the window, the ones that started inside it too.
  const canceledCount = churn.subscriptions.canceled + churn.subscriptions.newAndCanceled;
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
export async function churnAnalysis(s: Services, input: { period: ChurnAnalysisPeriod; includeReasons: boolean }): Promise<ChurnAnalysis> {
  const { env, db } = s;
  const now = s.clock.wall;
  const report = await buildChurnAnalysis(db, input.period, input.includeReasons, now);
  const key = churnAnalysisKey(input.period, day(now));
  await env.ARCHIVE.put(key, JSON.stringify(report, null, 2), {
    httpMetadata: { contentType: "application/json" },
    customMetadata: { kind: "churn_analysis", period: input.period, date: day(now) },
  });
  return { key, report };
}
