import { z } from "@hono/zod-openapi";
import { reportPeriods } from "../../domain/revenue";
import { breakdownGroups } from "./flows";

export const Money = z.object({ amount: z.string(), amountMinor: z.number().int(), currency: z.string() }).openapi("AnalyticsMoney");
const Flow = Money.extend({ count: z.number().int() });
const Rate = z.string().nullable().openapi({ description: "A fraction with 4 decimals (\"0.0500\" = 5 %); null when its base is 0", example: "0.0500" });

export const RevenueToday = z
  .object({
    date: z.string(),
    from: z.string(),
    to: z.string(),
    basis: z.string().openapi({ description: "Which records and timestamps put money into the day" }),
    currencies: z.array(z.object({ currency: z.string(), collected: Flow, refunded: Flow, net: Money, invoiced: Flow })).openapi({ description: "One entry per currency, never mixed" }),
  })
  .openapi("RevenueToday");

const PlanMrr = z.object({ planId: z.string(), planName: z.string().nullable(), subscriptions: z.number().int(), mrr: Money });
export const MrrReport = z
  .object({
    asOf: z.string(),
    method: z.string().openapi({ description: "What is counted and how it is normalized; metered usage is not MRR" }),
    currencies: z.array(
      z.object({
        currency: z.string(),
        mrr: Money,
        arr: Money,
        subscriptions: z.number().int(),
        customers: z.number().int(),
        arpa: Money.openapi({ description: "MRR ÷ customers with an MRR subscription" }),
        byPlan: z.array(PlanMrr),
        usageRevenueLast30Days: Money,
      }),
    ),
  })
  .openapi("Mrr");

export const BreakdownQuery = z.object({
  groupBy: z.enum(breakdownGroups).default("plan"),
  period: z.enum(reportPeriods).default("month").openapi({ description: "The period ending now" }),
  limit: z.coerce.number().int().min(1).max(1000).default(100).openapi({ description: "Groups returned, largest first within each currency" }),
});

export const RevenueBreakdown = z
  .object({
    groupBy: z.enum(breakdownGroups),
    period: z.enum(reportPeriods),
    from: z.string(),
    to: z.string(),
    basis: z.string(),
    totals: z.array(z.object({ currency: z.string(), invoiced: Money, collected: Money, invoices: z.number().int() })),
    groups: z.array(z.object({ key: z.string().nullable(), label: z.string().nullable(), currency: z.string(), invoiced: Money, collected: Money, invoices: z.number().int() })),
    hasMore: z.boolean(),
  })
  .openapi("RevenueBreakdown");

export const ChurnQuery = z.object({ period: z.enum(reportPeriods).default("month").openapi({ description: "The period ending now" }) });

export const ChurnReport = z.object({
  from: z.string(),
  to: z.string(),
  method: z.string(),
  subscriptions: z.object({
    activeAtStart: z.number().int().openapi({ description: "Paying (out of trial, not ended) at the start of the period: the base of every rate" }),
    new: z.number().int(),
    newWithTrial: z.number().int(),
    canceled: z.number().int().openapi({ description: "Of those active at the start, how many ended in the period" }),
    newAndCanceled: z.number().int().openapi({ description: "Started paying inside the period and ended in it too: not in the rate, whose base is the start" }),
    churnRate: Rate.openapi({ description: "canceled ÷ activeAtStart; null when nothing was active at the start" }),
  }),
  customers: z.object({ activeAtStart: z.number().int(), churned: z.number().int(), churnRate: Rate }),
  revenue: z.array(z.object({ currency: z.string(), mrrAtStart: Money, mrrLost: Money, churnRate: Rate })),
  cancellationReasons: z.array(z.object({ reason: z.string(), count: z.number().int() })),
  recentFeedback: z.array(z.object({ subscriptionId: z.string(), customerId: z.string(), reason: z.string().nullable(), feedback: z.string(), endedAt: z.string() })),
  trials: z.object({ converted: z.number().int(), canceledDuringTrial: z.number().int(), conversionRate: Rate }),
});
export const Churn = ChurnReport.extend({ period: z.enum(reportPeriods) }).openapi("Churn");

const PlanFlows = z.object({ planId: z.string().nullable(), planName: z.string().nullable(), invoiced: Flow, collected: Flow, refunded: Flow, net: Money });
export const WeeklyRevenueBody = z.object({ email: z.email().max(320).optional() });
export const WeeklyRevenue = z
  .object({
    key: z.string().openapi({ description: "R2 key of the stored report" }),
    report: z.object({
      date: z.string(),
      generatedAt: z.string(),
      window: z.object({ from: z.string(), to: z.string() }),
      basis: z.string(),
      revenue: z.array(PlanFlows.omit({ planId: true, planName: true }).extend({ currency: z.string(), byPlan: z.array(PlanFlows) })),
      mrr: MrrReport,
      churn: ChurnReport,
    }),
    notification: z.object({ id: z.string(), email: z.string(), status: z.enum(["queued", "already_queued"]) }).nullable(),
  })
  .openapi("WeeklyRevenueReport");

export const MrrMovement = z
  .object({
    asOf: z.string(),
    method: z.string(),
    months: z.array(z.string()).openapi({ description: "YYYY-MM, oldest first" }),
    currencies: z.array(
      z.object({
        currency: z.string(),
        movement: z.array(z.object({ month: z.string(), new: Money, expansion: Money, contraction: Money, churn: Money, net: Money })).openapi({ description: "One entry per month of `months`" }),
      }),
    ),
  })
  .openapi("MrrMovement");
