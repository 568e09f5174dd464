import { createRoute, z } from "@hono/zod-openapi";
import { services } from "../../http/context";
import { and, asc, count, eq, gte, isNotNull, isNull, lt, lte, ne, or, sql } from "drizzle-orm";
import { access, requireRole } from "../../http/auth";
import { jsonResponse, problems, router, DateOrInstant } from "../../http/openapi";
import { problem } from "../../http/problem";
import { dbOf } from "../../db/client";
import { invoices, plans, subscriptions, subscriptionStatuses, type SubscriptionStatus } from "../../db/schema";
import { formatMinor } from "../../domain/money";
import { iso, DAY_MS, startOf, endExclusiveOf } from "../../lib/time";

// Subscription monitoring routes (runbook "Subscription Monitoring"); mounted before /{id}.
// Every figure covers real-time subscriptions only: test-clock subscriptions live in simulated time.

const realTime = isNull(subscriptions.testClockId);
const notCanceled = ne(subscriptions.status, "canceled");
const num = (v: unknown) => Number(v ?? 0);
const sumWhen = (cond: ReturnType<typeof sql>) => sql<number>`coalesce(sum(case when ${cond} then 1 else 0 end), 0)`.mapWith(Number);

const StatusCounts = z.object(Object.fromEntries(subscriptionStatuses.map((s) => [s, z.number().int()])) as Record<SubscriptionStatus, z.ZodNumber>);
const emptyCounts = () => Object.fromEntries(subscriptionStatuses.map((s) => [s, 0])) as Record<SubscriptionStatus, number>;

/** n / d as a decimal string with 4 places, rounded half up; null when d is 0. */
export function ratio(n: number, d: number): string | null {
  if (d === 0) return null;
  const q = Math.floor((n * 20_000 + d) / (2 * d));
  return `${Math.floor(q / 10_000)}.${String(q % 10_000).padStart(4, "0")}`;
}


const ActiveStats = z.object({
  total: z.number().int(),
  byStatus: StatusCounts.omit({ canceled: true }),
  byPlan: z.array(z.object({ planId: z.string(), planName: z.string().nullable(), total: z.number().int(), byStatus: StatusCounts.omit({ canceled: true }) })),
});

const EndingSoon = z.object({
  days: z.number().int(),
  count: z.number().int(),
  hasMore: z.boolean(),
  data: z.array(
    z.object({
      id: z.string(),
      customerId: z.string(),
      planId: z.string(),
      status: z.enum(subscriptionStatuses),
      endsAt: z.string(),
      reason: z.enum(["cancel_at_period_end", "trial_ending"]),
    }),
  ),
});

const TrialCounts = z.object({
  started: z.number().int(),
  converted: z.number().int(),
  canceledDuringTrial: z.number().int(),
  stillTrialing: z.number().int(),
  other: z.number().int().openapi({ description: "Neither converted, canceled nor trialing (e.g. paused during the trial)" }),
  conversionRate: z.string().nullable().openapi({ description: "converted / (converted + canceledDuringTrial), 4 decimals; null before any trial ended", example: "0.6667" }),
});
const TrialConversion = TrialCounts.extend({
  from: z.string().nullable(),
  to: z.string(),
  byPlan: z.array(TrialCounts.extend({ planId: z.string() })),
});

const Health = z.object({
  checkedAt: z.string(),
  byStatus: StatusCounts,
  pastDue: z.object({
    subscriptions: z.number().int(),
    amountsDue: z.array(z.object({ currency: z.string(), amount: z.string(), amountMinor: z.number().int(), invoices: z.number().int() })).openapi({ description: "Open invoices of past-due subscriptions, one entry per currency" }),
  }),
  renewalBacklog: z.object({ count: z.number().int(), oldestPeriodEnd: z.string().nullable() }).openapi({ description: "Periods that ended without being renewed" }),
  draftsPendingFinalization: z.number().int(),
});

const PendingRenewals = z.object({
  count: z.number().int().openapi({ description: "overdue + dueWithin24h" }),
  overdue: z.number().int().openapi({ description: "Period already ended, not yet processed" }),
  dueWithin24h: z.number().int(),
});

export const subscriptionStatsRoutes = router()
  .openapi(
    createRoute({
      method: "get",
      path: "/stats/active",
      tags: ["Subscription monitoring"],
      operationId: "getActiveSubscriptionStats",
      summary: "Active subscription counts",
      description: "Non-canceled subscriptions by status and by plan.",
      middleware: [requireRole(access.read)] as const,
      responses: { 200: jsonResponse(ActiveStats, "Counts") },
    }),
    async (c) => {
      const rows = await dbOf(c.env)
        .select({ planId: subscriptions.planId, planName: plans.name, status: subscriptions.status, n: count() })
        .from(subscriptions)
        .leftJoin(plans, and(eq(plans.id, subscriptions.planId), eq(plans.isLatest, true)))
        .where(and(realTime, notCanceled))
        .groupBy(subscriptions.planId, plans.name, subscriptions.status)
        .all();
      const { canceled: _, ...byStatus } = emptyCounts();
      const byPlan = new Map<string, z.infer<typeof ActiveStats>["byPlan"][number]>();
      for (const r of rows) {
        if (r.status === "canceled") continue;
        byStatus[r.status] += r.n;
        let p = byPlan.get(r.planId);
        if (!p) {
          const { canceled: __, ...counts } = emptyCounts();
          p = { planId: r.planId, planName: r.planName, total: 0, byStatus: counts };
          byPlan.set(r.planId, p);
        }
        p.total += r.n;
        p.byStatus[r.status] += r.n;
      }
      const plansOut = [...byPlan.values()].sort((a, b) => b.total - a.total || a.planId.localeCompare(b.planId));
      return c.json({ total: plansOut.reduce((s, p) => s + p.total, 0), byStatus, byPlan: plansOut }, 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/ending-soon",
      tags: ["Subscription monitoring"],
      operationId: "listSubscriptionsEndingSoon",
      summary: "List subscriptions ending soon",
      description: "Subscriptions that end (cancel at period end) or leave their trial within `days`, soonest first.",
      middleware: [requireRole(access.read)] as const,
      request: {
        query: z.object({
          days: z.coerce.number().int().min(1).max(365).default(30),
          limit: z.coerce.number().int().min(1).max(500).default(100),
        }),
      },
      responses: { 200: jsonResponse(EndingSoon, "Subscriptions ending soon") },
    }),
    async (c) => {
      const { days, limit } = c.req.valid("query");
      const now = services(c).clock.wall;
      const until = now + days * DAY_MS;
      const canceling = and(eq(subscriptions.cancelAtPeriodEnd, true), gte(subscriptions.currentPeriodEnd, now), lte(subscriptions.currentPeriodEnd, until));
      const trialEnding = and(eq(subscriptions.status, "trialing"), gte(subscriptions.trialEnd, now), lte(subscriptions.trialEnd, until));
      const where = and(realTime, notCanceled, or(canceling, trialEnding));
      const db = dbOf(c.env);
      const endsAt = sql<number>`case when ${subscriptions.cancelAtPeriodEnd} = 1 then ${subscriptions.currentPeriodEnd} else ${subscriptions.trialEnd} end`.mapWith(Number);
      const [rows, total] = await Promise.all([
        db
          .select({ id: subscriptions.id, customerId: subscriptions.customerId, planId: subscriptions.planId, status: subscriptions.status, cancelAtPeriodEnd: subscriptions.cancelAtPeriodEnd, endsAt })
          .from(subscriptions)
          .where(where)
          .orderBy(asc(endsAt), asc(subscriptions.id))
          .limit(limit)
          .all(),
        db.select({ n: count() }).from(subscriptions).where(where).get(),
      ]);
      const data = rows.map((r) => ({
        id: r.id,
        customerId: r.customerId,
        planId: r.planId,
        status: r.status,
        endsAt: iso(r.endsAt),
        // A trial that is set to cancel ends rather than converts.
        reason: r.cancelAtPeriodEnd ? ("cancel_at_period_end" as const) : ("trial_ending" as const),
      }));
      return c.json({ days, count: num(total?.n), hasMore: num(total?.n) > data.length, data }, 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/stats/trial-conversion",
      tags: ["Subscription monitoring"],
      operationId: "getTrialConversion",
      summary: "Trial conversion",
      description: "Trials started in [from, to] and what became of them, overall and by plan. A date as `to` includes that whole UTC day. Without `from` every trial up to `to` counts.",
      middleware: [requireRole(access.read)] as const,
      request: { query: z.object({ from: DateOrInstant.optional(), to: DateOrInstant.optional() }) },
      responses: { 200: jsonResponse(TrialConversion, "Trial conversion"), ...problems(422) },
    }),
    async (c) => {
      const q = c.req.valid("query");
      const from = q.from ? startOf(q.from) : null;
      const to = q.to ? endExclusiveOf(q.to) : services(c).clock.wall + 1;
      if (from !== null && to <= from) return problem(c, { kind: "unprocessable", detail: "to: must not be before from", errors: [{ path: "to", message: "must not be before from" }] });
      const s = subscriptions;
      // A trial canceled at its end is stamped as converted by the period-end step; its end date tells them apart.
      const canceledAtTrialEnd = sql`${s.status} = 'canceled' and ${s.endedAt} is not null and ${s.endedAt} <= ${s.trialConvertedAt}`;
      const rows = await dbOf(c.env)
        .select({
          planId: s.planId,
          started: count(),
          converted: sumWhen(sql`${s.trialConvertedAt} is not null and not (${canceledAtTrialEnd})`),
          canceledDuringTrial: sumWhen(sql`${s.status} = 'canceled' and (${s.trialConvertedAt} is null or (${canceledAtTrialEnd}))`),
          stillTrialing: sumWhen(sql`${s.trialConvertedAt} is null and ${s.status} = 'trialing'`),
        })
        .from(s)
        .where(and(realTime, isNotNull(s.trialEnd), from === null ? undefined : gte(s.createdAt, from), lt(s.createdAt, to)))
        .groupBy(s.planId)
        .orderBy(asc(s.planId))
        .all();
      const shape = (r: { started: number; converted: number; canceledDuringTrial: number; stillTrialing: number }) => ({
        started: r.started,
        converted: r.converted,
        canceledDuringTrial: r.canceledDuringTrial,
        stillTrialing: r.stillTrialing,
        other: r.started - r.converted - r.canceledDuringTrial - r.stillTrialing,
        conversionRate: ratio(r.converted, r.converted + r.canceledDuringTrial),
      });
      const total = rows.reduce(
        (t, r) => ({ started: t.started + r.started, converted: t.converted + r.converted, canceledDuringTrial: t.canceledDuringTrial + r.canceledDuringTrial, stillTrialing: t.stillTrialing + r.stillTrialing }),
        { started: 0, converted: 0, canceledDuringTrial: 0, stillTrialing: 0 },
      );
      return c.json({ from: iso(from), to: iso(to - 1), ...shape(total), byPlan: rows.map((r) => ({ planId: r.planId, ...shape(r) })) }, 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/health",
      tags: ["Subscription monitoring"],
      operationId: "getSubscriptionHealth",
      summary: "Subscription health",
      description: "Counts by status, amounts due on past-due subscriptions (per currency), renewal backlog and drafts awaiting finalization.",
      middleware: [requireRole(access.read)] as const,
      responses: { 200: jsonResponse(Health, "Subscription health") },
    }),
    async (c) => {
      const db = dbOf(c.env);
      const now = services(c).clock.wall;
      const [statusRows, dueRows, backlog, drafts] = await Promise.all([
        db.select({ status: subscriptions.status, n: count() }).from(subscriptions).where(realTime).groupBy(subscriptions.status).all(),
        db
          .select({ currency: invoices.currency, amountMinor: sql<number>`coalesce(sum(${invoices.amountDue}), 0)`.mapWith(Number), invoices: count() })
          .from(invoices)
          .innerJoin(subscriptions, eq(subscriptions.id, invoices.subscriptionId))
          .where(and(realTime, eq(subscriptions.status, "past_due"), eq(invoices.status, "open")))
          .groupBy(invoices.currency)
          .orderBy(asc(invoices.currency))
          .all(),
        db
          .select({ n: count(), oldest: sql<number | null>`min(${subscriptions.currentPeriodEnd})` })
          .from(subscriptions)
          .where(and(realTime, notCanceled, lte(subscriptions.currentPeriodEnd, now)))
          .get(),
        // What the next billing run finalizes (manual drafts wait for their author).
        db
          .select({ n: count() })
          .from(invoices)
          .where(and(eq(invoices.status, "draft"), ne(invoices.billingReason, "manual"), isNull(invoices.testClockId)))
          .get(),
      ]);
      const byStatus = emptyCounts();
      for (const r of statusRows) byStatus[r.status] = r.n;
      return c.json(
        {
          checkedAt: iso(now),
          byStatus,
          pastDue: {
            subscriptions: byStatus.past_due,
            amountsDue: dueRows.map((r) => ({ currency: r.currency, amount: formatMinor(r.amountMinor, r.currency), amountMinor: r.amountMinor, invoices: r.invoices })),
          },
          renewalBacklog: { count: num(backlog?.n), oldestPeriodEnd: backlog?.oldest == null ? null : iso(Number(backlog.oldest)) },
          draftsPendingFinalization: num(drafts?.n),
        },
        200,
      );
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/pending-renewals/count",
      tags: ["Subscription monitoring"],
      operationId: "countPendingRenewals",
      summary: "Count pending renewals",
      description: "Period ends the billing run has to process: overdue and due within 24 hours.",
      middleware: [requireRole(access.read)] as const,
      responses: { 200: jsonResponse(PendingRenewals, "Pending renewals") },
    }),
    async (c) => {
      const now = services(c).clock.wall;
      const row = await dbOf(c.env)
        .select({ overdue: sumWhen(sql`${subscriptions.currentPeriodEnd} <= ${now}`), dueWithin24h: sumWhen(sql`${subscriptions.currentPeriodEnd} > ${now}`) })
        .from(subscriptions)
        .where(and(realTime, notCanceled, lte(subscriptions.currentPeriodEnd, now + DAY_MS)))
        .get();
      const overdue = num(row?.overdue);
      const dueWithin24h = num(row?.dueWithin24h);
      return c.json({ count: overdue + dueWithin24h, overdue, dueWithin24h }, 200);
    },
  );
