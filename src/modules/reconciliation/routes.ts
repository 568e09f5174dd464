import { createRoute, z } from "@hono/zod-openapi";
import { and, eq } from "drizzle-orm";
import { access, requireRole } from "../../http/auth";
import { jsonBody, jsonResponse, listOf, PaginationQuery, router, problems } from "../../http/openapi";
import { services } from "../../http/context";
import { problem, respond } from "../../http/problem";
import { dbOf } from "../../db/client";
import { newestFirstPage } from "../../platform/pagination";
import { discrepancies } from "../../db/schema";
import { writeReconciliationReport } from "./report";
import { chooseGateway, dayBounds, reconcileDay, toDiscrepancy } from "./service";

export { runDailyReconciliation } from "./report";

const DateString = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, "expected YYYY-MM-DD");
const Money = z.object({ amount: z.string(), amountMinor: z.number().int() });
const Side = z.object({ charges: Money, refunds: Money, net: Money, count: z.number().int() });
const Kinds = z.enum(["missing_at_gateway", "missing_locally", "amount_mismatch", "status_mismatch"]);
const Discrepancy = z
  .object({
    id: z.string(),
    date: z.string(),
    gateway: z.string(),
    kind: Kinds,
    objectType: z.enum(["payment", "refund"]),
    localId: z.string().nullable(),
    gatewayId: z.string().nullable(),
    localAmount: Money.nullable(),
    gatewayAmount: Money.nullable(),
    currency: z.string().nullable(),
    detail: z.string(),
    status: z.enum(["open", "resolved"]),
    createdAt: z.string(),
    resolvedAt: z.string().nullable(),
  })
  .openapi("Discrepancy");
const Reconciliation = z
  .object({
    date: z.string(),
    gateway: z.string(),
    gatewaySelection: z.enum(["requested", "default"]),
    note: z.string().openapi({ description: "Which gateway was reconciled and why" }),
    basis: z.string().openapi({ description: "Which timestamps put an item in the day, and how items are matched" }),
    window: z.object({ from: z.string(), to: z.string() }),
    totals: z.record(z.string(), z.object({ local: Side, gateway: Side, difference: Money })).openapi({ description: "Per currency, never mixed" }),
    matched: z.number().int(),
    crossDayMatched: z.number().int(),
    discrepancyCounts: z.record(Kinds, z.number().int()),
    resolved: z.number().int().openapi({ description: "Open discrepancies of this day that no longer appear and were marked resolved" }),
    discrepancies: z.array(Discrepancy),
    creditNotes: z
      .record(z.string(), z.object({ issued: z.number().int(), refunded: Money, nonCash: Money, unmatchedRefundIds: z.array(z.string()) }))
      .openapi({ description: "Credit notes issued in the day, per currency: refunds through this gateway (unmatched ones listed) and the part that moved no money" }),
    reconciledAt: z.string(),
  })
  .openapi("Reconciliation");

/** Mounted at /api/v1/reconciliation. */
export const reconciliationRoutes = router()
  .openapi(
    createRoute({
      method: "get",
      path: "/discrepancies",
      tags: ["Reconciliation"],
      operationId: "listDiscrepancies",
      summary: "List reconciliation discrepancies",
      description: "Discrepancies found by reconciliation, newest first.",
      middleware: [requireRole(access.finance)] as const,
      request: { query: PaginationQuery.extend({ status: z.enum(["open", "resolved"]).optional(), date: DateString.optional(), gateway: z.string().optional(), kind: Kinds.optional() }) },
      responses: { 200: jsonResponse(listOf(Discrepancy), "Discrepancies"), ...problems(400) },
    }),
    async (c) => {
      const q = c.req.valid("query");
      const bounds = q.date ? dayBounds(q.date) : null;
      if (bounds && !bounds.ok) return problem(c, bounds.error);
      const db = dbOf(c.env);
      const page = await newestFirstPage(
        db,
        { table: discrepancies, id: discrepancies.id, createdAt: discrepancies.createdAt },
        q,
        [
          q.status ? eq(discrepancies.status, q.status) : undefined,
          q.date ? eq(discrepancies.date, q.date) : undefined,
          q.gateway ? eq(discrepancies.gateway, q.gateway) : undefined,
          q.kind ? eq(discrepancies.kind, q.kind) : undefined,
        ],
        toDiscrepancy,
      );
      return c.json(page, 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/stripe/{date}",
      tags: ["Reconciliation"],
      operationId: "reconcileDay",
      summary: "Reconcile a day against the gateway",
      description: "Compares one UTC day of our payments and refunds with the gateway's balance transactions (stripe when configured, else the sandbox). Records each finding as an open discrepancy (re-running never duplicates) and resolves the day's earlier ones that no longer appear.",
      middleware: [requireRole(access.finance)] as const,
      request: {
        params: z.object({ date: DateString.openapi({ param: { name: "date", in: "path" }, example: "2024-06-24" }) }),
        query: z.object({ gateway: z.enum(["stripe", "sandbox"]).optional().openapi({ description: "Defaults to stripe when configured, else sandbox" }) }),
      },
      responses: { 200: jsonResponse(Reconciliation, "The day reconciled"), ...problems(400, 422, 503) },
    }),
    async (c) => {
      const { date } = c.req.valid("param");
      const choice = chooseGateway(c.env, c.req.valid("query").gateway);
      if (!choice.ok) return problem(c, choice.error);
      const r = await reconcileDay(services(c), date, choice.value);
      if (!r.ok) return problem(c, r.error);
      const { matchedItems: _m, ...result } = r.value;
      return c.json(result, 200);
    },
  );

/** Mounted at /api/v1/reports. */
export const reportRoutes = router().openapi(
  createRoute({
    method: "post",
    path: "/reconciliation",
    tags: ["Reconciliation"],
    operationId: "createReconciliationReport",
    summary: "Store a reconciliation report",
    description: "Reconciles a day for every configured gateway and stores the report in R2 (reports/reconciliation/<date>.json).",
    middleware: [requireRole(access.finance)] as const,
    request: { ...jsonBody(z.object({ date: DateString, includeDetails: z.boolean().default(false).openapi({ description: "Each discrepancy and each matched pair" }) })) },
    responses: { 201: jsonResponse(z.object({ key: z.string(), report: z.record(z.string(), z.unknown()) }), "Stored report"), ...problems(400, 503) },
  }),
  async (c) => {
    const { date, includeDetails } = c.req.valid("json");
    return respond(c, await writeReconciliationReport(services(c), date, includeDetails), 201);
  },
);
