import { DAY_MS } from "../../lib/time";
import { createRoute, z } from "@hono/zod-openapi";
import { eq } from "drizzle-orm";
import { access, requireRole, requireScopeOrRole } from "../../http/auth";
import { jsonBody, jsonResponse, listOf, router, problems } from "../../http/openapi";
import { dbOf } from "../../db/client";
import { newestFirstPage } from "../../platform/pagination";
import { refunds } from "../../db/schema";
import { services } from "../../http/context";
import { problem } from "../../http/problem";
import { invalid, notFound, ok } from "../../platform/failure";
import { paymentById, refundById } from "./ledger";
import { bulkResults, requestBulkRefund } from "./bulk";
import { refundReport } from "./report";
import { createRefund, toRefund, withRemaining } from "./service";
import { BulkRefundAccepted, BulkRefundRequest, BulkRefundStatus, CreateRefund, ListRefundsQuery, Refund, RefundReport, RefundWithRemaining, ReportQuery } from "./schemas";

const IdParam = z.object({ id: z.string().openapi({ param: { name: "id", in: "path" }, example: "re_123" }) });
const BulkIdParam = z.object({ bulkId: z.string().openapi({ param: { name: "bulkId", in: "path" }, example: "rfb_123" }) });

// Literal paths (/report, /bulk) are declared before /{id} so they are not taken for an id.
export const refundRoutes = router()
  .openapi(
    createRoute({
      method: "get",
      path: "/report",
      tags: ["Refunds"],
      operationId: "getRefundReport",
      summary: "Refund report",
      description: "Refunds created between two dates (inclusive), per currency: by status, reason and gateway, and the refund rate.",
      middleware: [requireRole(access.finance)] as const,
      request: { query: ReportQuery },
      responses: { 200: jsonResponse(RefundReport, "The report"), ...problems(422) },
    }),
    async (c) => {
      const q = c.req.valid("query");
      const endDate = q.endDate ?? new Date().toISOString().slice(0, 10);
      const from = Date.parse(`${q.startDate}T00:00:00Z`);
      const to = Date.parse(`${endDate}T00:00:00Z`) + DAY_MS;
      const range = to > from ? ok({ from, to }) : invalid([{ path: "endDate", message: "must not be before startDate" }]);
      if (!range.ok) return problem(c, range.error);
      return c.json({ startDate: q.startDate, endDate, currencies: await refundReport(dbOf(c.env), from, to) }, 200);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/bulk",
      tags: ["Refunds"],
      operationId: "createBulkRefund",
      summary: "Refund payments in bulk",
      description: "Refunds up to 1,000 payments in full through the payments queue. Each payment is refunded for everything still refundable on it; a payment that cannot be refunded gets a failed result. Poll GET /bulk/{bulkId}.",
      middleware: [requireRole(access.finance)] as const,
      request: jsonBody(BulkRefundRequest),
      responses: { 202: jsonResponse(BulkRefundAccepted, "Queued") },
    }),
    async (c) => c.json(await requestBulkRefund(services(c), c.req.valid("json")), 202),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/bulk/{bulkId}",
      tags: ["Refunds"],
      operationId: "getBulkRefund",
      summary: "Get a bulk refund",
      description: "Per-payment results of a bulk refund.",
      middleware: [requireRole(access.read)] as const,
      request: { params: BulkIdParam },
      responses: { 200: jsonResponse(BulkRefundStatus, "Results"), ...problems(404) },
    }),
    async (c) => {
      const { bulkId } = c.req.valid("param");
      const r = await bulkResults(dbOf(c.env), bulkId);
      const found = r ? ok(r) : notFound("bulk refund", bulkId);
      return found.ok ? c.json(found.value, 200) : problem(c, found.error);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/",
      tags: ["Refunds"],
      operationId: "createRefund",
      summary: "Refund a payment",
      description:
        "Refunds a succeeded payment in part or in full. Never more than captured minus earlier refunds (422 naming `amount` with what remains). 423 while payments are frozen or in queue mode. A gateway decline is a 422 with the gateway's message.",
      middleware: [requireRole(access.finance)] as const,
      request: jsonBody(CreateRefund),
      responses: { 201: jsonResponse(RefundWithRemaining, "The refund"), 202: jsonResponse(RefundWithRemaining, "Pending: the gateway did not answer; the amount stays reserved and the hourly sweep settles it"), ...problems(400, 404, 422, 423) },
    }),
    async (c) => {
      const created = await createRefund(services(c), c.req.valid("json"));
      if (!created.ok) return problem(c, created.error);
      const { refund, payment } = created.value;
      // 202: the gateway did not answer; the refund stays pending (amount reserved) until the hourly sweep settles it.
      return refund.status === "pending" && !refund.gatewayRefundId ? c.json(withRemaining(refund, payment), 202) : c.json(withRemaining(refund, payment), 201);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/",
      tags: ["Refunds"],
      operationId: "listRefunds",
      summary: "List refunds",
      description: "Newest first, cursor-paginated.",
      middleware: [requireScopeOrRole("refunds:read", access.read)] as const,
      request: { query: ListRefundsQuery },
      responses: { 200: jsonResponse(listOf(Refund), "A page of refunds") },
    }),
    async (c) => {
      const q = c.req.valid("query");
      const db = dbOf(c.env);
      const page = await newestFirstPage(
        db,
        { table: refunds, id: refunds.id, createdAt: refunds.createdAt },
        q,
        [q.paymentId ? eq(refunds.paymentId, q.paymentId) : undefined, q.status ? eq(refunds.status, q.status) : undefined, q.bulkId ? eq(refunds.bulkId, q.bulkId) : undefined],
        toRefund,
      );
      return c.json(page, 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{id}",
      tags: ["Refunds"],
      operationId: "getRefund",
      summary: "Get a refund",
      description: "The refund with what remains refundable on its payment.",
      middleware: [requireScopeOrRole("refunds:read", access.read)] as const,
      request: { params: IdParam },
      responses: { 200: jsonResponse(RefundWithRemaining, "The refund"), ...problems(404) },
    }),
    async (c) => {
      const db = dbOf(c.env);
      const { id } = c.req.valid("param");
      const row = await refundById(db, id);
      const found = row ? ok(row) : notFound("refund", id);
      if (!found.ok) return problem(c, found.error);
      return c.json(withRemaining(found.value, await paymentById(db, found.value.paymentId)), 200);
    },
  );
