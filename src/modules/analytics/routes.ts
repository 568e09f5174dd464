import { services } from "../../http/context";
import { createRoute, z } from "@hono/zod-openapi";
import { access, actorOf, requireRole } from "../../http/auth";
import { jsonResponse, optionalJsonBody, problems, router } from "../../http/openapi";
import { respond } from "../../http/problem";
import { dbOf } from "../../db/client";
import { trailingWindow } from "../../domain/revenue";
import { churnBetween } from "./churn";
import { currentMrr } from "./mrr";
import { mrrMovementReport } from "./mrr-movement";
import { revenueBreakdown, revenueToday } from "./revenue";
import { AtRiskCustomers, AtRiskQuery, atRiskCustomers, RISK_WEIGHTS } from "./at-risk";
import { CHURN_ANALYSIS_METHOD, ChurnAnalysis, ChurnAnalysisBody, churnAnalysis } from "./churn-analysis";
import { BreakdownQuery, Churn, ChurnQuery, MrrMovement, MrrReport, RevenueBreakdown, RevenueToday, WeeklyRevenue, WeeklyRevenueBody } from "./schemas";
import { weeklyRevenueReport } from "./weekly-report";

export { weeklyRevenueReport } from "./weekly-report";

const LENIENT = " The runbook sends this with `curl -d` and no Content-Type: the body is read as JSON whatever its type.";


// Revenue analytics (runbook "Revenue Monitoring"). Money is per currency, never summed across currencies.
// Collected money and breakdowns (per customer) are for finance; churn counts and reasons for every reader.

/** Mounted at /api/v1/analytics. */
export const analyticsRoutes = router()
  .openapi(
    createRoute({
      method: "get",
      path: "/revenue/today",
      operationId: "getRevenueToday",
      tags: ["Analytics"],
      summary: "Today's revenue",
      description: "Today's (UTC) revenue per currency: collected, refunded, net, and invoiced. Currencies are never summed together.",
      middleware: [requireRole(access.finance)] as const,
      responses: { 200: jsonResponse(RevenueToday, "Today's revenue"), ...problems(422) },
    }),
    async (c) => respond(c, await revenueToday(dbOf(c.env), services(c).clock.wall), 200),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/mrr",
      operationId: "getMrr",
      tags: ["Analytics"],
      summary: "Monthly recurring revenue",
      description: "MRR per currency and plan, with ARR, ARPA and recent usage revenue.",
      middleware: [requireRole(access.finance)] as const,
      responses: { 200: jsonResponse(MrrReport, "MRR") },
    }),
    async (c) => c.json(await currentMrr(dbOf(c.env), services(c).clock.wall), 200),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/mrr/movement",
      operationId: "getMrrMovement",
      tags: ["Analytics"],
      summary: "MRR movement per month: new, expansion, contraction, churn and net, per currency",
      description: "The last `months` UTC calendar months (the current one included), oldest first. The response's `method` says what each figure counts.",
      middleware: [requireRole(access.finance)] as const,
      request: { query: z.object({ months: z.coerce.number().int().min(1).max(36).default(12) }) },
      responses: { 200: jsonResponse(MrrMovement, "MRR movement") },
    }),
    async (c) => c.json(await mrrMovementReport(dbOf(c.env), services(c).clock.wall, c.req.valid("query").months), 200),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/revenue/breakdown",
      operationId: "getRevenueBreakdown",
      tags: ["Analytics"],
      summary: "Revenue breakdown",
      description: "Finalized invoice totals and collections of the period ending now, per group (`groupBy`) and currency.",
      middleware: [requireRole(access.finance)] as const,
      request: { query: BreakdownQuery },
      responses: { 200: jsonResponse(RevenueBreakdown, "Breakdown") },
    }),
    async (c) => {
      const q = c.req.valid("query");
      return c.json(await revenueBreakdown(dbOf(c.env), q.groupBy, q.period, services(c).clock.wall, q.limit), 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/churn",
      operationId: "getChurn",
      tags: ["Analytics"],
      summary: "Churn of the period",
      description: "Subscription, customer and revenue churn of the period ending now, with cancellation reasons and trial conversion.",
      middleware: [requireRole(access.read)] as const,
      request: { query: ChurnQuery },
      responses: { 200: jsonResponse(Churn, "Churn") },
    }),
    async (c) => {
      const { period } = c.req.valid("query");
      const now = services(c).clock.wall;
      const { from } = trailingWindow(now, period);
      return c.json({ period, ...(await churnBetween(dbOf(c.env), from, now + 1, now)) }, 200);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/churn-analysis",
      operationId: "createChurnAnalysis",
      tags: ["Analytics"],
      summary: "Run a churn analysis",
      description:
        "Churn of a period ending now: rates, revenue churn, by plan, tenure and voluntary/involuntary, reasons. " +
        "Stored at reports/churn/<period>-<date>.json; a re-run the same day replaces it. " +
        CHURN_ANALYSIS_METHOD +
        LENIENT,
      middleware: [requireRole(access.finance)] as const,
      request: optionalJsonBody(ChurnAnalysisBody),
      responses: { 200: jsonResponse(ChurnAnalysis, "The report and its R2 key") },
    }),
    async (c) => c.json(await churnAnalysis(services(c), c.req.valid("json")), 200),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/at-risk-customers",
      operationId: "listAtRiskCustomers",
      tags: ["Analytics"],
      summary: "List customers at risk of churning",
      description: `Customers most likely to churn, scored by explainable signals, with their MRR at risk per currency. Weights: ${Object.entries(RISK_WEIGHTS).map(([k, v]) => `${k} ${v}`).join(", ")}. The response's \`method\` explains every signal.`,
      middleware: [requireRole(access.finance)] as const,
      request: { query: AtRiskQuery },
      responses: { 200: jsonResponse(AtRiskCustomers, "At-risk customers, highest score first") },
    }),
    async (c) => c.json(await atRiskCustomers(dbOf(c.env), services(c).clock.wall, c.req.valid("query").limit), 200),
  );

/** Mounted at /api/v1/reports. */
export const weeklyRevenueRoutes = router().openapi(
  createRoute({
    method: "post",
    path: "/weekly-revenue",
    operationId: "createWeeklyRevenueReport",
    tags: ["Analytics"],
    summary: "Generate the weekly revenue report",
    description:
      "Revenue of the last 7 days, MRR and the week's churn, stored in R2 and emailed when `email` is given. One notification per date and address; a re-run the same day replaces the stored report." +
      LENIENT,
    middleware: [requireRole(access.finance)] as const,
    request: optionalJsonBody(WeeklyRevenueBody),
    responses: { 200: jsonResponse(WeeklyRevenue, "The report and its R2 key") },
  }),
  async (c) => {
    const { email } = c.req.valid("json");
    const result = await weeklyRevenueReport(services(c), email ?? null, { actor: actorOf(c), requestId: c.get("requestId") });
    return c.json(result, 200);
  },
);
