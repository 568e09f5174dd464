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
import { getReconciliationRun, listReconciliationRuns, startReconciliationRun, toRunView } from "./run";

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
const CreditNotesOfDay = z
  .record(z.string(), z.object({ issued: z.number().int(), refunded: Money, nonCash: Money, unmatchedRefundIds: z.array(z.string()) }))
  .openapi({ description: "Credit notes issued in the day, per currency: refunds through this gateway (unmatched ones listed) and the part that moved no money" });
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
    creditNotes: CreditNotesOfDay,
    reconciledAt: z.string(),
  })
  .openapi("Reconciliation");

const RunStatus = z.enum(["running", "complete", "failed"]);
const ReconciliationRun = z
  .object({
    id: z.string().openapi({ example: "rcr_4f9c2b7d1e0a3c5b8d6f" }),
    object: z.literal("reconciliation_run"),
    date: z.string(),
    gateway: z.string(),
    status: RunStatus,
    phase: z.enum(["gateway", "local", "finish"]).openapi({ description: "gateway: paging the gateway's balance transactions; local: the day's payments and refunds the listing did not cover; finish: resolving, totals, audit" }),
    step: z.number().int().openapi({ description: "Steps done so far (one tasks-queue message each)" }),
    progress: z.object({
      transactions: z.number().int().openapi({ description: "Balance transactions read (the day before to the day after)" }),
      localChecked: z.number().int().openapi({ description: "Local payments and refunds the listing did not cover, checked one by one" }),
      retrieved: z.number().int().openapi({ description: "Payments asked from the gateway one by one" }),
      matched: z.number().int(),
      discrepancies: z.number().int(),
    }),
    error: z.string().nullable().openapi({ description: "The last step's failure (a running run retries it); why a failed run stopped" }),
    basis: z.string(),
    window: z.object({ from: z.string(), to: z.string() }),
    totals: z.record(z.string(), z.object({ local: Side, gateway: Side, difference: Money })).optional().openapi({ description: "Once complete: per currency, never mixed" }),
    matched: z.number().int().optional(),
    crossDayMatched: z.number().int().optional(),
    discrepancyCounts: z.record(Kinds, z.number().int()).optional(),
    resolved: z.number().int().optional().openapi({ description: "Open discrepancies of this day that no longer appear and were marked resolved" }),
    creditNotes: CreditNotesOfDay.optional(),
    createdBy: z.string(),
    createdAt: z.string(),
    updatedAt: z.string(),
    finishedAt: z.string().nullable(),
  })
  .openapi("ReconciliationRun");

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
      description:
        "Compares one UTC day of our payments and refunds with the gateway's balance transactions (stripe when configured, else the sandbox), in this request. Records each finding as an open discrepancy (re-running never duplicates) and resolves the day's earlier ones that no longer appear. A day larger than one request holds (more than 10,000 payments and refunds, 10,000 balance transactions, or 400 payments to look up one by one) is answered 422 naming `date`: reconcile it with a run (POST /api/v1/reconciliation/runs), which pages through any size of day in the background and finds the same.",
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
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/runs",
      tags: ["Reconciliation"],
      operationId: "createReconciliationRun",
      summary: "Start a reconciliation run of a day",
      description:
        "Reconciles one UTC day against the gateway in the background, a bounded share per invocation through the tasks queue, so a day of any size can be reconciled (GET /stripe/{date} refuses days past one request's caps). Finds what GET /stripe/{date} finds: the discrepancies are recorded (and listed by GET /discrepancies?date=), the day's earlier ones that no longer appear are resolved. Answers 202 with the run; GET /runs/{id} shows its progress, and its totals once complete. A run of the same day and gateway still going is answered instead of starting a second one.",
      middleware: [requireRole(access.finance)] as const,
      request: {
        ...jsonBody(
          z.object({
            date: DateString.openapi({ example: "2024-06-24" }),
            gateway: z.enum(["stripe", "sandbox"]).optional().openapi({ description: "Defaults to stripe when configured, else sandbox" }),
          }),
        ),
      },
      responses: { 202: jsonResponse(ReconciliationRun, "The run, started (or the one of this day and gateway already going)"), ...problems(400, 422) },
    }),
    async (c) => {
      const { date, gateway } = c.req.valid("json");
      const bounds = dayBounds(date);
      if (!bounds.ok) return problem(c, bounds.error);
      const choice = chooseGateway(c.env, gateway);
      if (!choice.ok) return problem(c, choice.error);
      const r = await startReconciliationRun(services(c), date, choice.value);
      if (!r.ok) return problem(c, r.error);
      c.header("location", `/api/v1/reconciliation/runs/${r.value.run.id}`);
      return c.json(toRunView(r.value.run), 202);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/runs",
      tags: ["Reconciliation"],
      operationId: "listReconciliationRuns",
      summary: "List reconciliation runs",
      description: "Reconciliation runs, newest first, optionally of one day, gateway or status.",
      middleware: [requireRole(access.finance)] as const,
      request: { query: PaginationQuery.extend({ date: DateString.optional(), gateway: z.enum(["stripe", "sandbox"]).optional(), status: RunStatus.optional() }) },
      responses: { 200: jsonResponse(listOf(ReconciliationRun), "Runs"), ...problems(400) },
    }),
    async (c) => c.json(await listReconciliationRuns(dbOf(c.env), c.req.valid("query")), 200),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/runs/{id}",
      tags: ["Reconciliation"],
      operationId: "getReconciliationRun",
      summary: "Get a reconciliation run",
      description: "Where a run stands (phase, progress counts, the last step's error) and, once complete, the day's totals per currency, matched counts, discrepancy counts and credit notes, as GET /stripe/{date} reports them. The discrepancies themselves: GET /discrepancies?date=&gateway=.",
      middleware: [requireRole(access.finance)] as const,
      request: { params: z.object({ id: z.string().openapi({ param: { name: "id", in: "path" }, example: "rcr_4f9c2b7d1e0a3c5b8d6f" }) }) },
      responses: { 200: jsonResponse(ReconciliationRun, "The run"), ...problems(404) },
    }),
    async (c) => respond(c, await getReconciliationRun(dbOf(c.env), c.req.valid("param").id), 200),
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
