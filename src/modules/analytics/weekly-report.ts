import type { AuditContext } from "../../platform/audit";
import type { Services } from "../../platform/services";
import { commitWithAudit } from "../../platform/audit";
import { isUniqueViolation } from "../../db/assert";
import type { Db } from "../../db/client";
import type { Actor } from "../../env";
import { money, type Money } from "../../domain/money";
import { newId } from "../../lib/ids";
import { iso, DAY_MS } from "../../lib/time";
import { notificationInserts, notificationsCommitted } from "../notifications/outbox";
import { churnBetween, type ChurnReport } from "./churn";
import { collectedBetween, FLOWS_BASIS, invoicedBetween, refundedBetween, type FlowRow } from "./flows";
import { currentMrr, type MrrReport } from "./mrr";
import { systemActor } from "../../platform/actor";
import { valueOrThrow } from "../../platform/failure";

export const WEEK_MS = 7 * DAY_MS;

export const ANALYTICS_ACTOR: Actor = systemActor("analytics");

export const weeklyReportKey = (date: string) => `reports/revenue/weekly-${date}.json`;

type Flow = Money & { count: number };
type PlanFlows = { planId: string | null; planName: string | null; invoiced: Flow; collected: Flow; refunded: Flow; net: Money };
export type WeeklyRevenueReport = {
  date: string;
  generatedAt: string;
  window: { from: string; to: string };
  basis: string;
  revenue: (Omit<PlanFlows, "planId" | "planName"> & { currency: string; byPlan: PlanFlows[] })[];
  mrr: MrrReport;
  churn: ChurnReport;
};
export type WeeklyRevenueResult = {
  key: string;
  report: WeeklyRevenueReport;
  notification: { id: string; email: string; status: "queued" | "already_queued" } | null;
};

const flow = (minor: number, count: number, currency: string): Flow => ({ ...money(minor, currency), count });

/** Invoiced, collected and refunded of the window per currency, each with its plans (largest invoiced first). */
function revenueByCurrency(invoiced: FlowRow[], collected: FlowRow[], refunded: FlowRow[]): WeeklyRevenueReport["revenue"] {
  type Acc = { planName: string | null; invoiced: [number, number]; collected: [number, number]; refunded: [number, number] };
  const byCurrency = new Map<string, Map<string | null, Acc>>();
  const add = (rows: FlowRow[], field: "invoiced" | "collected" | "refunded") => {
    for (const r of rows) {
      let plansOf = byCurrency.get(r.currency);
      if (!plansOf) byCurrency.set(r.currency, (plansOf = new Map()));
      let acc = plansOf.get(r.planId);
      if (!acc) plansOf.set(r.planId, (acc = { planName: r.planName, invoiced: [0, 0], collected: [0, 0], refunded: [0, 0] }));
      acc.planName ??= r.planName;
      acc[field][0] += r.amountMinor;
      acc[field][1] += r.count;
    }
  };
  add(invoiced, "invoiced");
  add(collected, "collected");
  add(refunded, "refunded");
  const shape = (a: Omit<Acc, "planName">, currency: string) => ({
    invoiced: flow(a.invoiced[0], a.invoiced[1], currency),
    collected: flow(a.collected[0], a.collected[1], currency),
    refunded: flow(a.refunded[0], a.refunded[1], currency),
    net: money(a.collected[0] - a.refunded[0], currency),
  });
  return [...byCurrency.keys()].sort().map((currency) => {
    const plansOf = [...byCurrency.get(currency)!.entries()];
    const total = plansOf.reduce<Omit<Acc, "planName">>(
      (t, [, a]) => ({
        invoiced: [t.invoiced[0] + a.invoiced[0], t.invoiced[1] + a.invoiced[1]],
        collected: [t.collected[0] + a.collected[0], t.collected[1] + a.collected[1]],
        refunded: [t.refunded[0] + a.refunded[0], t.refunded[1] + a.refunded[1]],
      }),
      { invoiced: [0, 0], collected: [0, 0], refunded: [0, 0] },
    );
    const byPlan = plansOf
      .map(([planId, a]) => ({ planId, planName: a.planName, ...shape(a, currency) }))
      .sort((a, b) => b.invoiced.amountMinor - a.invoiced.amountMinor || String(a.planId).localeCompare(String(b.planId)));
    return { currency, ...shape(total, currency), byPlan };
  });
}

/** Builds the report of the 7 days up to and including `now` ([now − 7 d, now]); no writes. */
export async function buildWeeklyRevenueReport(db: Db, now: number): Promise<WeeklyRevenueReport> {
  const from = now - WEEK_MS;
  const to = now + 1;
  const [invoiced, collected, refunded, mrr, churn] = await Promise.all([
    invoicedBetween(db, from, to),
    collectedBetween(db, from, to).then(valueOrThrow),
    refundedBetween(db, from, to),
    currentMrr(db, now),
    churnBetween(db, from, to, now),
  ]);
  return {
    date: iso(now).slice(0, 10),
    generatedAt: iso(now),
    window: { from: iso(from), to: iso(now) },
    basis: FLOWS_BASIS,
    revenue: revenueByCurrency(invoiced, collected, refunded),
    mrr,
    churn,
  };
}

/**
 * The weekly revenue report: the last 7 days' invoiced, collected and refunded money per currency and plan, MRR
 * now and churn of the week, stored in R2 at reports/revenue/weekly-<date>.json (a re-run that day replaces it).
 * With `email`, one `report.weekly_revenue` notification per date and address (deduplicated) is queued for the
 * notifier. Used by `POST /api/v1/reports/weekly-revenue` and the weekly cron.
 */
export async function weeklyRevenueReport(s: Services, email?: string | null, audit: Omit<AuditContext, "now"> = { actor: ANALYTICS_ACTOR }): Promise<WeeklyRevenueResult> {
  const { env, db } = s;
  const now = s.audit.now;
  const report = await buildWeeklyRevenueReport(db, now);
  const key = weeklyReportKey(report.date);
  await env.ARCHIVE.put(key, JSON.stringify(report, null, 2), { httpMetadata: { contentType: "application/json" }, customMetadata: { kind: "weekly_revenue", date: report.date } });
  if (!email) return { key, report, notification: null };

  const dedupeKey = `weekly_revenue:${report.date}:${email}`;
  const id = newId("ntf");
  const summary = report.revenue.map((r) => ({ currency: r.currency, invoiced: r.invoiced.amount, collected: r.collected.amount, refunded: r.refunded.amount, net: r.net.amount }));
  const outbox = notificationInserts(
    db,
    [
      {
        id,
        kind: "report.weekly_revenue",
        customerId: "system",
        invoiceId: null,
        template: "weekly_revenue",
        payload: { email, reportKey: key, date: report.date, window: report.window, revenue: summary, mrr: report.mrr.currencies.map((m) => ({ currency: m.currency, mrr: m.mrr.amount })) },
        dedupeKey,
        status: "queued",
        createdAt: now,
      },
    ],
    { now },
  );
  try {
    await commitWithAudit(
      db,
      outbox.statements,
      [{ action: "report.weekly_revenue_queued", targetType: "notification", targetId: id, after: { reportKey: key, template: "weekly_revenue", date: report.date } }],
      { ...audit, now },
    );
  } catch (e) {
    if (!isUniqueViolation(e, "notifications.dedupe_key")) throw e;
    const existing = await db.query.notifications.findFirst({ where: (n, { eq }) => eq(n.dedupeKey, dedupeKey) });
    return { key, report, notification: { id: existing?.id ?? id, email, status: "already_queued" } };
  }
  notificationsCommitted(outbox.eventIds);
  return { key, report, notification: { id, email, status: "queued" } };
}
