import { createRoute, z } from "@hono/zod-openapi";
import { eq, gte, lt } from "drizzle-orm";
import { access, requireRole, requireScopeOrRole } from "../../http/auth";
import { jsonBody, jsonResponse, listOf, PaginationQuery, router, problems } from "../../http/openapi";
import { dbOf } from "../../db/client";
import { newestFirstPage } from "../../platform/pagination";
import { invoices, invoiceStatuses } from "../../db/schema";
import { services } from "../../http/context";
import { problem } from "../../http/problem";
import { generatePending } from "../subscriptions/billing-run";
import { Invoice, toInvoice } from "./serialize";
import { creditedLinesOf } from "./creditable";
import { getInvoice, invoiceWithLines, voidInvoice } from "./service";

const IdParam = z.object({ id: z.string().openapi({ param: { name: "id", in: "path" }, example: "inv_123" }) });

export const invoiceRoutes = router()
  .openapi(
    createRoute({
      method: "post",
      path: "/generate-pending",
      tags: ["Invoices"],
      operationId: "generatePendingInvoices",
      summary: "Generate pending invoices",
      description:
        "Queues the due work instead of running it inline, so the call costs the same at any number due: each due subscription goes to the jobs queue (its renewal and invoice follow within seconds), further pages and leftover drafts to the tasks queue. `queued` counts the subscriptions this call sent; `processed`, `invoiceIds` and `finalized` stay empty (the work is asynchronous). A send that keeps failing fails the call with 503.",
      middleware: [requireRole(access.finance)] as const,
      responses: {
        200: jsonResponse(
          z.object({ processed: z.number().int(), invoicesCreated: z.number().int(), invoiceIds: z.array(z.string()), finalized: z.array(z.string()), queued: z.number().int().openapi({ description: "Due subscriptions this call sent to the jobs queue (further pages follow through the tasks queue)" }), errors: z.array(z.object({ subscriptionId: z.string(), error: z.string() })) }),
          "What the run did",
        ),
        ...problems(503),
      },
    }),
    async (c) => {
      const run = await generatePending(services(c), services(c).clock.wall);
      if (!run.ok) return problem(c, run.error);
      const r = run.value;
      return c.json({ processed: 0, invoicesCreated: 0, invoiceIds: [], finalized: [], queued: r.queued, errors: [] }, 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/",
      tags: ["Invoices"],
      operationId: "listInvoices",
      summary: "List invoices",
      description: "Newest first, cursor-paginated, with filters.",
      middleware: [requireScopeOrRole("invoices:read", access.read)] as const,
      request: {
        query: PaginationQuery.extend({
          customerId: z.string().optional(),
          subscriptionId: z.string().optional(),
          status: z.enum(invoiceStatuses).optional(),
          createdFrom: z.iso.datetime({ offset: true }).optional(),
          createdTo: z.iso.datetime({ offset: true }).optional(),
        }),
      },
      responses: { 200: jsonResponse(listOf(Invoice), "A page of invoices") },
    }),
    async (c) => {
      const q = c.req.valid("query");
      const db = dbOf(c.env);
      const page = await newestFirstPage(
        db,
        { table: invoices, id: invoices.id, createdAt: invoices.createdAt },
        q,
        [
          q.customerId ? eq(invoices.customerId, q.customerId) : undefined,
          q.subscriptionId ? eq(invoices.subscriptionId, q.subscriptionId) : undefined,
          q.status ? eq(invoices.status, q.status) : undefined,
          q.createdFrom ? gte(invoices.createdAt, Date.parse(q.createdFrom)) : undefined,
          q.createdTo ? lt(invoices.createdAt, Date.parse(q.createdTo)) : undefined,
        ],
        (r) => r,
      );
      const credited = await creditedLinesOf(db, page.data.map((r) => r.id));
      return c.json({ ...page, data: page.data.map((r) => toInvoice(r, undefined, credited.get(r.id) ?? [])) }, 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{id}",
      tags: ["Invoices"],
      operationId: "getInvoice",
      summary: "Get an invoice",
      description: "The invoice with its lines (read from the R2 archive once archived).",
      middleware: [requireScopeOrRole("invoices:read", access.read)] as const,
      request: { params: IdParam },
      responses: { 200: jsonResponse(Invoice, "The invoice"), ...problems(404) },
    }),
    async (c) => {
      const s = services(c);
      const found = await getInvoice(s.db, c.req.valid("param").id);
      if (!found.ok) return problem(c, found.error);
      return c.json(await invoiceWithLines(s, found.value), 200);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/{id}/void",
      tags: ["Invoices"],
      operationId: "voidInvoice",
      summary: "Void an invoice",
      description: "Voids a draft or open invoice; a paid invoice needs a refund or a credit note instead (409).",
      middleware: [requireRole(access.finance)] as const,
      request: { params: IdParam, ...jsonBody(z.object({ reason: z.string().min(1).max(500) })) },
      responses: { 200: jsonResponse(Invoice, "The voided invoice"), ...problems(404, 409) },
    }),
    async (c) => {
      const voided = await voidInvoice(services(c), c.req.valid("param").id, c.req.valid("json").reason);
      return voided.ok ? c.json(toInvoice(voided.value, undefined, []), 200) : problem(c, voided.error);
    },
  );
