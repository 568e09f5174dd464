import { createRoute, z } from "@hono/zod-openapi";
import { eq, gte, lt } from "drizzle-orm";
import { access, actorOf, requireRole } from "../../http/auth";
import { errorResponses, jsonBody, jsonResponse, listOf, PaginationQuery, router } from "../../http/openapi";
import { dbOf } from "../../db/client";
import { newestFirstPage } from "../../platform/pagination";
import { invoices, invoiceStatuses } from "../../db/schema";
import { auditCtx } from "../../http/context";
import { generatePending } from "../subscriptions/billing-run";
import { Invoice, toInvoice } from "./serialize";
import { getInvoice, invoiceWithLines, voidInvoice } from "./service";
import { activeLink } from "../documents/links";
import { documentsConfig } from "../documents/store";

const IdParam = z.object({ id: z.string().openapi({ param: { name: "id", in: "path" }, example: "inv_123" }) });

export const invoiceRoutes = router()
  .openapi(
    createRoute({
      method: "post",
      path: "/generate-pending",
      tags: ["Invoices"],
      summary: "Invoice every subscription whose period has ended (idempotent; the hourly cron runs it too)",
      middleware: [requireRole(access.finance)] as const,
      responses: {
        200: jsonResponse(
          z.object({ processed: z.number().int(), invoicesCreated: z.number().int(), invoiceIds: z.array(z.string()), finalized: z.array(z.string()), queued: z.number().int().openapi({ description: "Due subscriptions beyond this call's batch, sent to the jobs queue" }), errors: z.array(z.object({ subscriptionId: z.string(), error: z.string() })) }),
          "What the run did",
        ),
        ...errorResponses,
      },
    }),
    async (c) => {
      const r = await generatePending(c.env, dbOf(c.env), Date.now(), actorOf(c), c.get("requestId"));
      return c.json({ processed: r.processed, invoicesCreated: r.invoiceIds.length, invoiceIds: r.invoiceIds, finalized: r.finalized, queued: r.queued, errors: r.errors }, 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/",
      tags: ["Invoices"],
      summary: "List invoices, newest first",
      middleware: [requireRole(access.read)] as const,
      request: {
        query: PaginationQuery.extend({
          customerId: z.string().optional(),
          subscriptionId: z.string().optional(),
          status: z.enum(invoiceStatuses).optional(),
          createdFrom: z.iso.datetime({ offset: true }).optional(),
          createdTo: z.iso.datetime({ offset: true }).optional(),
        }),
      },
      responses: { 200: jsonResponse(listOf(Invoice), "A page of invoices"), ...errorResponses },
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
        (r) => toInvoice(r),
      );
      return c.json(page, 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{id}",
      tags: ["Invoices"],
      summary: "Get an invoice with its lines (read from the archive once archived)",
      middleware: [requireRole(access.read)] as const,
      request: { params: IdParam },
      responses: { 200: jsonResponse(Invoice, "The invoice"), ...errorResponses },
    }),
    async (c) => {
      const db = dbOf(c.env);
      const inv = await getInvoice(db, c.req.valid("param").id);
      const link = await activeLink(c.env, db, inv.id, Date.now(), (await documentsConfig(db)).publicBaseUrl);
      return c.json({ ...(await invoiceWithLines(c.env, db, inv)), hostedUrl: link?.url ?? null }, 200);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/{id}/void",
      tags: ["Invoices"],
      summary: "Void a draft or open invoice (paid invoices need a refund or credit note)",
      middleware: [requireRole(access.finance)] as const,
      request: { params: IdParam, ...jsonBody(z.object({ reason: z.string().min(1).max(500) })) },
      responses: { 200: jsonResponse(Invoice, "The voided invoice"), ...errorResponses },
    }),
    async (c) => c.json(toInvoice(await voidInvoice(dbOf(c.env), c.req.valid("param").id, c.req.valid("json").reason, auditCtx(c))), 200),
  );
