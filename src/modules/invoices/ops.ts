import { createRoute, z } from "@hono/zod-openapi";
import { access, requireRole } from "../../http/auth";
import { jsonBody, jsonResponse, problems, router, DateOrInstant } from "../../http/openapi";
import { problem } from "../../http/problem";
import { invalid } from "../../platform/failure";
import { services } from "../../http/context";
import { archiveInvoices } from "./archive";
import { sendRemindersChained } from "./reminders";
import { retryFailed } from "../subscriptions/retry-failed";
import { DAY_MS, startOf, endExclusiveOf } from "../../lib/time";

// Invoice operations: retry-failed, send-reminders (under /api/v1/invoices) and archive (under /admin/invoices).


const Ids = z.object({ count: z.number().int(), invoiceIds: z.array(z.string()) });
const Errors = z.array(z.object({ id: z.string(), error: z.string() }));

export const invoiceOpsRoutes = router()
  .openapi(
    createRoute({
      method: "post",
      path: "/retry-failed",
      operationId: "retryFailedInvoices",
      tags: ["Invoices"],
      summary: "Retry failed invoices in a date range",
      description:
        "Re-queues failed collections, finalizes leftover drafts and regenerates missed renewals in the range. An invoice's date is its finalization, else its creation. Open invoices whose collection failed (attemptCount > 0 or lastError) and with attemptCount < maxRetries get their next payment attempt queued; the others are listed as skipped. Drafts are finalized. Test-clock invoices are left to their clock (they move when it is advanced). Real-time subscriptions whose period ended in the range (and in the past) without renewal run their due steps. One request does a bounded share (about 600 D1 queries' worth); the lists name what it did, and `continues` says the rest goes on in the background.",
      middleware: [requireRole(access.finance)] as const,
      request: jsonBody(z.object({ startDate: DateOrInstant, endDate: DateOrInstant, maxRetries: z.number().int().min(1).max(100).default(3) })),
      responses: {
        200: jsonResponse(
          z.object({
            paymentRetries: Ids,
            finalized: Ids,
            regenerated: z.object({ count: z.number().int(), subscriptionIds: z.array(z.string()), invoiceIds: z.array(z.string()) }),
            skipped: Ids.openapi({ description: "Failed invoices that reached maxRetries" }),
            errors: Errors,
            continues: z.boolean().openapi({ description: "More than one request's share was due: the rest goes on in the background (tasks queue), at this request's time" }),
          }),
          "What was retried",
        ),
        ...problems(422),
      },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const start = startOf(body.startDate);
      const end = endExclusiveOf(body.endDate);
      if (end <= start) return problem(c, invalid([{ path: "endDate", message: "must not be before startDate" }]));
      return c.json(await retryFailed(services(c), { start, end, maxRetries: body.maxRetries }), 200);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/send-reminders",
      operationId: "sendInvoiceReminders",
      tags: ["Invoices"],
      summary: "Send reminders for overdue invoices",
      description:
        "Queues a reminder for every open invoice overdue by at least `daysOverdue` days, once per invoice per UTC day. One request reminds up to 250 invoices (5 pages of 50, by id); `continues` says the rest goes on in the background.",
      middleware: [requireRole(access.finance)] as const,
      request: jsonBody(
        z.object({
          daysOverdue: z.number().int().min(0).max(3650).default(1),
          template: z.string().regex(/^[A-Za-z0-9_.-]{1,100}$/, "letters, digits, '_', '.', '-' (at most 100)").default("invoice_overdue"),
        }),
      ),
      responses: {
        200: jsonResponse(
          z.object({
            queued: z.number().int(),
            alreadySentToday: z.number().int(),
            invoiceIds: z.array(z.string()).openapi({ description: "Invoices reminded by this call" }),
            continues: z.boolean().openapi({ description: "More overdue invoices than one request's share (5 pages of 50): the rest are reminded in the background (tasks queue), at this request's time" }),
          }),
          "Reminders queued",
        ),
      },
    }),
    async (c) => {
      const { next: _next, ...report } = await sendRemindersChained(services(c), c.req.valid("json"), null);
      return c.json(report, 200);
    },
  );

/** "1 year", "6 months", "90 days", "2 weeks" → that long before `now`; an ISO date or date-time as is. */
export function parseOlderThan(s: string, now: number): number | null {
  const rel = /^\s*(\d+)\s*(day|week|month|year)s?\s*$/i.exec(s);
  if (rel) {
    const n = Number(rel[1]);
    const d = new Date(now);
    const unit = rel[2]!.toLowerCase();
    if (unit === "day") return now - n * DAY_MS;
    if (unit === "week") return now - n * 7 * DAY_MS;
    if (unit === "month") return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - n, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes());
    return Date.UTC(d.getUTCFullYear() - n, d.getUTCMonth(), d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes());
  }
  if (!DateOrInstant.safeParse(s).success) return null;
  return startOf(s);
}

// The runbook's weekly script sends `-d '{"olderThan": "1 year"}'` without a Content-Type: read as JSON all the same.
const ArchiveRequest = z
  .object({ olderThan: z.string().min(1).openapi({ description: 'An ISO date, or a duration before now: "1 year", "6 months", "90 days", "2 weeks"', example: "1 year" }) })
  .openapi("InvoiceArchiveRequest");
export const invoiceAdminRoutes = router().openapi(
  createRoute({
    method: "post",
    path: "/archive",
    operationId: "archiveInvoices",
    tags: ["Invoices"],
    summary: "Archive old settled invoices to R2",
    description:
      "Moves paid, void and uncollectible invoices created before `olderThan` to R2 (their lines leave D1). At most 100 invoices per call (each is an R2 write and a D1 batch: a call stays inside Cloudflare's per-invocation limits); hasMore says to call again. GET /api/v1/invoices/{id} keeps answering with the lines from the archive. The runbook sends the body with `curl -d`: it is read as JSON whatever its Content-Type.",
    middleware: [requireRole(access.admin)] as const,
    request: jsonBody(ArchiveRequest),
    responses: {
      200: jsonResponse(z.object({ archived: z.number().int(), invoiceIds: z.array(z.string()), hasMore: z.boolean(), errors: Errors }), "What was archived"),
      ...problems(422),
    },
  }),
  async (c) => {
    const s = services(c);
    const body = c.req.valid("json");
    const olderThan = parseOlderThan(body.olderThan, s.audit.now);
    if (olderThan === null) return problem(c, invalid([{ path: "olderThan", message: 'must be an ISO date or a duration such as "1 year"' }]));
    if (olderThan > s.audit.now) return problem(c, invalid([{ path: "olderThan", message: "must not be in the future" }]));
    return c.json(await archiveInvoices(s, olderThan), 200);
  },
);
