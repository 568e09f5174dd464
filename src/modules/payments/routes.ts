import { createRoute, z } from "@hono/zod-openapi";
import { desc, eq } from "drizzle-orm";
import { access, requireRole, requireScopeOrRole } from "../../http/auth";
import { jsonBody, jsonResponse, listOf, PaginationQuery, router, problems } from "../../http/openapi";
import { dbOf } from "../../db/client";
import { newestFirstPage, resolveCursor } from "../../platform/pagination";
import { deadLetters, payments, paymentStatuses } from "../../db/schema";
import { auditCtx, services } from "../../http/context";
import { problem } from "../../http/problem";
import { formatMinor } from "../../domain/money";
import { iso } from "../../lib/time";
import { putSetting } from "../../platform/settings";
import { RETRY_CONFIG_KEY, RetryConfig, retryConfig } from "./config";
import { failedLatestAttempts, failedPaymentTotals, getPayment, requeueFailed, retryPayment, toPayment } from "./service";

const Payment = z
  .object({
    id: z.string(),
    invoiceId: z.string(),
    customerId: z.string(),
    attempt: z.number().int(),
    amount: z.string(),
    amountMinor: z.number().int(),
    currency: z.string(),
    status: z.enum(paymentStatuses),
    gateway: z.string().nullable(),
    gatewayPaymentId: z.string().nullable(),
    paymentMethod: z.string().nullable(),
    failureCode: z.string().nullable(),
    failureMessage: z.string().nullable(),
    amountRefunded: z.string(),
    amountRefundedMinor: z.number().int(),
    nextRetryAt: z.string().nullable(),
    latencyMs: z.number().nullable(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi("Payment");
const IdParam = z.object({ id: z.string().openapi({ param: { name: "id", in: "path" }, example: "pay_123" }) });

export const paymentRoutes = router()
  .openapi(
    createRoute({
      method: "get",
      path: "/retry-queue",
      tags: ["Payments"],
      operationId: "listPaymentRetryQueue",
      summary: "List payments waiting for a retry",
      description:
        "Failed payments (the latest attempt of an open invoice) with attempts left, oldest failure first, a page at a time: `startingAfter` is the last payment id of the previous page (`nextCursor`).",
      middleware: [requireRole(access.read)] as const,
      request: { query: z.object({ limit: z.coerce.number().int().min(1).max(200).default(50), startingAfter: z.string().optional().openapi({ description: "Payment id: the page after it" }) }) },
      responses: {
        200: jsonResponse(
          listOf(Payment.extend({ nextAttempt: z.number().int(), attemptsLeft: z.number().int() })).extend({ maxAttempts: z.number().int() }),
          "The retry queue",
        ),
      },
    }),
    async (c) => {
      const db = dbOf(c.env);
      const { limit, startingAfter } = c.req.valid("query");
      const after = await resolveCursor(startingAfter, async (id) => db.select({ createdAt: payments.createdAt, id: payments.id }).from(payments).where(eq(payments.id, id)).get());
      const config = await retryConfig(db);
      const { rows, next } = await failedLatestAttempts(db, { after: after ?? null, limit, maxAttempt: config.maxAttempts });
      const data = rows.map((p) => ({ ...toPayment(p), nextAttempt: p.attempt + 1, attemptsLeft: config.maxAttempts - p.attempt }));
      return c.json({ data, hasMore: next !== null, nextCursor: next?.id ?? null, maxAttempts: config.maxAttempts }, 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/failed/count",
      tags: ["Payments"],
      operationId: "countFailedPayments",
      summary: "Count failed payments",
      description: "How many open invoices have a failed latest payment, with amounts per currency.",
      middleware: [requireRole(access.read)] as const,
      responses: {
        200: jsonResponse(z.object({ count: z.number().int(), byFailureCode: z.record(z.string(), z.number().int()), amountByCurrency: z.record(z.string(), z.object({ amount: z.string(), amountMinor: z.number().int() })) }), "Counts"),
      },
    }),
    async (c) => {
      const byFailureCode: Record<string, number> = {};
      const minor: Record<string, number> = {};
      let count = 0;
      for (const g of await failedPaymentTotals(dbOf(c.env))) {
        byFailureCode[g.failureCode ?? "unknown"] = (byFailureCode[g.failureCode ?? "unknown"] ?? 0) + g.count;
        minor[g.currency] = (minor[g.currency] ?? 0) + g.amount;
        count += g.count;
      }
      const amountByCurrency = Object.fromEntries(Object.entries(minor).map(([cur, m]) => [cur, { amount: formatMinor(m, cur), amountMinor: m }]));
      return c.json({ count, byFailureCode, amountByCurrency }, 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/retry-config",
      tags: ["Payments"],
      operationId: "getPaymentRetryConfig",
      summary: "Get the payment retry configuration",
      description: "The retry strategy in force: maximum attempts, initial delay (seconds) and backoff multiplier.",
      middleware: [requireRole(access.read)] as const,
      responses: { 200: jsonResponse(RetryConfig, "Retry configuration") },
    }),
    async (c) => c.json(await retryConfig(dbOf(c.env)), 200),
  )
  .openapi(
    createRoute({
      method: "put",
      path: "/retry-config",
      tags: ["Payments"],
      operationId: "updatePaymentRetryConfig",
      summary: "Update the payment retry configuration",
      description: "Delays in seconds; audited.",
      middleware: [requireRole(access.finance)] as const,
      request: jsonBody(RetryConfig.partial()),
      responses: { 200: jsonResponse(RetryConfig, "Retry configuration") },
    }),
    async (c) => {
      const db = dbOf(c.env);
      const merged = { ...(await retryConfig(db)), ...c.req.valid("json") };
      return c.json(await putSetting(db, RETRY_CONFIG_KEY, merged, auditCtx(c)), 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/",
      tags: ["Payments"],
      operationId: "listPayments",
      summary: "List payments",
      description: "Payment attempts, newest first, cursor-paginated.",
      middleware: [requireScopeOrRole("payments:read", access.read)] as const,
      request: { query: PaginationQuery.extend({ status: z.enum(paymentStatuses).optional(), invoiceId: z.string().optional(), customerId: z.string().optional() }) },
      responses: { 200: jsonResponse(listOf(Payment), "A page of payments") },
    }),
    async (c) => {
      const q = c.req.valid("query");
      const db = dbOf(c.env);
      const page = await newestFirstPage(
        db,
        { table: payments, id: payments.id, createdAt: payments.createdAt },
        q,
        [q.status ? eq(payments.status, q.status) : undefined, q.invoiceId ? eq(payments.invoiceId, q.invoiceId) : undefined, q.customerId ? eq(payments.customerId, q.customerId) : undefined],
        toPayment,
      );
      return c.json(page, 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{id}",
      tags: ["Payments"],
      operationId: "getPayment",
      summary: "Get a payment",
      description: "One payment attempt with its outcome and gateway references.",
      middleware: [requireScopeOrRole("payments:read", access.read)] as const,
      request: { params: IdParam },
      responses: { 200: jsonResponse(Payment, "The payment"), ...problems(404) },
    }),
    async (c) => {
      const found = await getPayment(dbOf(c.env), c.req.valid("param").id);
      return found.ok ? c.json(toPayment(found.value), 200) : problem(c, found.error);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/{id}/retry",
      tags: ["Payments"],
      operationId: "retryPayment",
      summary: "Retry a failed payment",
      description: "Charges the invoice again now, optionally with the customer's alternate method. 202 when payments are in queue mode (the charge is parked), 423 while frozen.",
      middleware: [requireRole(access.finance)] as const,
      request: {
        params: IdParam,
        ...jsonBody(
          z.object({
            useAlternateMethod: z.boolean().default(false).openapi({ description: "Charge the customer's metadata.alternatePaymentMethod" }),
            paymentMethod: z.string().optional(),
          }),
        ),
      },
      responses: {
        200: jsonResponse(z.object({ outcome: z.string(), payment: Payment.nullable(), reason: z.string().optional() }), "The new attempt"),
        202: jsonResponse(z.object({ outcome: z.literal("parked"), payment: Payment, mode: z.string() }), "Parked (queue mode)"),
        ...problems(404, 409, 422, 423),
      },
    }),
    async (c) => {
      const retried = await retryPayment(services(c), c.req.valid("param").id, c.req.valid("json"));
      if (!retried.ok) return problem(c, retried.error);
      const r = retried.value;
      if (r.outcome === "parked") return c.json({ outcome: "parked" as const, payment: toPayment(r.payment), mode: r.mode }, 202);
      if (r.outcome === "unknown") return c.json({ outcome: r.outcome, payment: toPayment(r.payment), reason: `gateway did not answer (${r.error}); the same attempt is retried from the queue` }, 200);
      if (r.outcome === "skipped") return c.json({ outcome: r.outcome, payment: null, reason: r.reason }, 200);
      return c.json({ outcome: r.outcome, payment: toPayment(r.payment) }, 200);
    },
  );

export const paymentAdminRoutes = router()
  .openapi(
    createRoute({
      method: "post",
      path: "/queue-failed",
      tags: ["Admin"],
      operationId: "requeueFailedPayments",
      summary: "Requeue every failed payment",
      description:
        "Queues another attempt for every open invoice whose latest payment failed, oldest first. The request sends up to 500 (audited per page of 100); when more are left, `continues` is true and the rest is sent in the background through the tasks queue, 500 per invocation.",
      middleware: [requireRole(access.admin)] as const,
      responses: {
        200: jsonResponse(
          z.object({
            requeued: z.number().int().openapi({ description: "Sent by this request" }),
            invoiceIds: z.array(z.string()),
            continues: z.boolean().openapi({ description: "More failed payments are being requeued in the background" }),
          }),
          "What was requeued",
        ),
      },
    }),
    async (c) => {
      const r = await requeueFailed(services(c), null);
      return c.json({ requeued: r.invoiceIds.length, invoiceIds: r.invoiceIds, continues: r.continues }, 200);
    },
  );

export const dlqRoutes = router().openapi(
  createRoute({
    method: "get",
    path: "/",
    tags: ["Admin"],
    operationId: "listDeadLetters",
    summary: "List dead letters",
    description: "Queue messages that exhausted their retries on any queue.",
    middleware: [requireRole(access.admin)] as const,
    request: { query: z.object({ limit: z.coerce.number().int().min(1).max(200).default(50) }) },
    responses: {
      200: jsonResponse(z.object({ data: z.array(z.object({ id: z.string(), messageId: z.string(), body: z.unknown(), attempts: z.number().int(), receivedAt: z.string() })) }), "Dead letters"),
    },
  }),
  async (c) => {
    const rows = await dbOf(c.env).select().from(deadLetters).orderBy(desc(deadLetters.receivedAt)).limit(c.req.valid("query").limit).all();
    return c.json({ data: rows.map((r) => ({ id: r.id, messageId: r.messageId, body: JSON.parse(r.body) as unknown, attempts: r.attempts, receivedAt: iso(r.receivedAt) })) }, 200);
  },
);
