import { z } from "@hono/zod-openapi";
import type { Services } from "../../platform/services";
import { notificationInserts, notificationsCommitted } from "../notifications/outbox";
import { and, asc, desc, eq, gt, inArray, isNull, or, sql } from "drizzle-orm";
import { commitWithAudit, type AuditEntry } from "../../platform/audit";
import { isUniqueViolation } from "../../db/assert";
import { customers, invoices, notifications, payments } from "../../db/schema";
import { formatMinor } from "../../domain/money";
import { routing } from "../../gateways";
import type { GatewayName } from "../../gateways/types";
import { newId } from "../../lib/ids";
import { closedObject } from "../../lib/schema";
import { sendOnce, stepKey } from "../../platform/continuations";

// Exhaustive over GatewayName: adding a gateway without listing it here fails the typecheck.
const GATEWAYS: Record<GatewayName, true> = { stripe: true, sandbox: true };
const gatewayNames = Object.keys(GATEWAYS) as [GatewayName, ...GatewayName[]];

export const PaymentIssueRequest = closedObject({
  template: z.string().regex(/^[A-Za-z0-9_.-]{1,100}$/, "letters, digits, '_', '.', '-' (at most 100)").openapi({ example: "payment-gateway-issue" }),
  affectedGateway: z.enum(gatewayNames).openapi({ example: "stripe" }),
}).openapi("PaymentIssueRequest");
export type PaymentIssueRequest = z.infer<typeof PaymentIssueRequest>;

export const PaymentIssueReport = z
  .object({
    notified: z.number().int().openapi({ description: "Customers notified now (one notification each)" }),
    alreadyNotifiedToday: z.number().int().openapi({ description: "Affected customers who already had this gateway's notice today (UTC)" }),
    customerIds: z.array(z.string()).openapi({ description: "The customers notified now" }),
    continues: z.boolean().openapi({ description: "More affected customers than one request's share (5 pages of 50): the rest are notified in the background (tasks queue), at this request's time" }),
  })
  .openapi("PaymentIssueReport");
export type PaymentIssueReport = z.infer<typeof PaymentIssueReport>;

const AFFECTED_STATUSES = ["failed", "processing", "parked"] as const;
const CUSTOMER_PAGE = 50; // one insert and one audit row per customer: 100 statements per batch at most
const MAX_INVOICES_IN_PAYLOAD = 20;
/** Pages of customers one request (or one tasks-queue message) notifies before handing the rest on. */
export const PAGES_PER_INVOCATION = 5;


/**
 * Customers with an open invoice whose latest attempt is failed, processing or parked on `gateway` get one
 * `payment.gateway_issue` notification per UTC day (deduped by key), each with its `customer.notification` event.
 * A parked attempt that never reached a gateway (gateway null) counts for the routing's primary: that is where it
 * was headed. Test-clock invoices are left out (simulated customers).
 */
export async function notifyPaymentIssue(s: Services, input: PaymentIssueRequest, from: string | null = null, step = 0): Promise<PaymentIssueReport> {
  const { db, audit: ctx } = s;
  const gateway = input.affectedGateway;
  const day = new Date(ctx.now).toISOString().slice(0, 10);
  const keyOf = (customerId: string) => `gateway_issue:${customerId}:${gateway}:${day}`;
  const primary = (await s.gateways.routing()).primary;

  const affected = and(
    eq(invoices.status, "open"),
    gt(invoices.amountDue, 0),
    isNull(invoices.testClockId),
    // The invoice's latest attempt: no attempt with a higher number exists.
    sql`not exists (select 1 from payments as later where later.invoice_id = ${payments.invoiceId} and later.attempt > ${payments.attempt})`,
    or(
      and(eq(payments.gateway, gateway), inArray(payments.status, [...AFFECTED_STATUSES])),
      gateway === primary ? and(isNull(payments.gateway), eq(payments.status, "parked")) : undefined,
    ),
  );
  const report: PaymentIssueReport = { notified: 0, alreadyNotifiedToday: 0, customerIds: [], continues: false };

  let after: string | undefined = from ?? undefined;
  for (let pages = 0; ; pages++) {
    if (pages === PAGES_PER_INVOCATION) {
      // The rest from this cursor, at this request's time and as its requester, in its own invocation.
      // Once per step, whatever a duplicate delivery of this one does (platform/continuations.ts).
      const next = { type: "notifications.payment_issue" as const, input, after: after!, now: ctx.now, actor: ctx.actor, step: step + 1 };
      await sendOnce(s.db, stepKey(`notifications.payment_issue|${ctx.now}|${ctx.actor.id}|${JSON.stringify(input)}`, step + 1), s.clock.wall, () => s.queues.tasks.send(next));
      report.continues = true;
      break;
    }
    const page = (
      await db
        .select({ customerId: invoices.customerId })
        .from(invoices)
        .innerJoin(payments, eq(payments.invoiceId, invoices.id))
        .where(and(affected, after ? gt(invoices.customerId, after) : undefined))
        .groupBy(invoices.customerId)
        .orderBy(asc(invoices.customerId))
        .limit(CUSTOMER_PAGE)
        .all()
    ).map((r) => r.customerId);
    if (!page.length) break;
    after = page[page.length - 1];

    const rows = await db
      .select({ invoiceId: invoices.id, number: invoices.number, customerId: invoices.customerId, currency: invoices.currency, amountDue: invoices.amountDue, status: payments.status, email: customers.email, name: customers.name })
      .from(invoices)
      .innerJoin(payments, eq(payments.invoiceId, invoices.id))
      .innerJoin(customers, eq(customers.id, invoices.customerId))
      .where(and(affected, inArray(invoices.customerId, page)))
      .orderBy(asc(invoices.customerId), desc(invoices.createdAt), desc(invoices.id))
      .all();
    const byCustomer = new Map<string, typeof rows>();
    for (const r of rows) byCustomer.set(r.customerId, [...(byCustomer.get(r.customerId) ?? []), r]);

    let created: (typeof notifications.$inferInsert)[] = [];
    let eventIds: string[] = [];
    for (let attempt = 1; ; attempt++) {
      const existing = new Set(
        (await db.select({ k: notifications.dedupeKey }).from(notifications).where(inArray(notifications.dedupeKey, page.map(keyOf))).all()).map((n) => n.k),
      );
      created = [...byCustomer.entries()]
        .filter(([customerId]) => !existing.has(keyOf(customerId)))
        .map(([customerId, invs]) => {
          const latest = invs[0]!; // newest affected invoice first
          const invoiceView = (i: (typeof invs)[number]) => ({ invoiceId: i.invoiceId, invoiceNumber: i.number, amountDue: formatMinor(i.amountDue, i.currency), amountDueMinor: i.amountDue, currency: i.currency, paymentStatus: i.status });
          return {
            id: newId("ntf"),
            kind: "payment.gateway_issue",
            customerId,
            invoiceId: latest.invoiceId,
            template: input.template,
            payload: {
              gateway,
              ...invoiceView(latest),
              customerEmail: latest.email,
              customerName: latest.name,
              // Every affected open invoice, newest first (a customer may have more than one).
              invoices: invs.slice(0, MAX_INVOICES_IN_PAYLOAD).map(invoiceView),
              affectedInvoiceCount: invs.length,
            },
            dedupeKey: keyOf(customerId),
            status: "queued" as const,
            createdAt: ctx.now,
          };
        });
      if (!created.length) break;
      const outbox = notificationInserts(db, created, ctx);
      eventIds = outbox.eventIds;
      try {
        await commitWithAudit(
          db,
          outbox.statements,
          created.map((n): AuditEntry => ({ action: "notification.gateway_issue_queued", targetType: "customer", targetId: n.customerId, after: { notificationId: n.id, gateway, template: n.template, invoiceId: n.invoiceId } })),
          ctx,
        );
        break;
      } catch (e) {
        // A concurrent run created some of today's notices first: look again.
        if (!isUniqueViolation(e, "notifications.dedupe_key") || attempt >= 3) throw e;
      }
    }
    report.alreadyNotifiedToday += byCustomer.size - created.length;
    for (const n of created) report.customerIds.push(n.customerId);
    if (created.length) notificationsCommitted(eventIds);
    if (page.length < CUSTOMER_PAGE) break;
  }
  report.notified = report.customerIds.length;
  return report;
}
