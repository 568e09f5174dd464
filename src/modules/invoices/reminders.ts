import { and, asc, eq, gt, inArray, isNull, lte } from "drizzle-orm";
import type { Services } from "../../platform/services";
import { commitWithAudit, type AuditEntry } from "../../platform/audit";
import { isUniqueViolation } from "../../db/assert";
import { customers, invoices, notifications } from "../../db/schema";
import { formatMinor } from "../../domain/money";
import { newId } from "../../lib/ids";
import { DAY_MS, iso } from "../../lib/time";
import { notificationInserts, notificationsCommitted } from "../notifications/outbox";
import { pagesById } from "./service";
import { sendOnce, stepKey } from "../../platform/continuations";

const REMINDER_PAGE = 50; // one insert and one audit row per invoice: 100 statements per batch at most

/** Pages one invocation of the daily task handles (a page is three round trips, ~150 statements at most). */
export const REMINDER_PAGES_PER_INVOCATION = 5;

/** `next`: the cursor to go on from when `maxPages` stopped the run (null when every overdue invoice was seen). */
export type ReminderReport = { queued: number; alreadySentToday: number; invoiceIds: string[]; next: string | null };

/**
 * One `invoice.reminder` notification per overdue open invoice per UTC day (deduped by key), each new one with
 * its `customer.notification` event. Test-clock invoices are left out: their due dates are in
 * simulated time.
 */
export async function sendReminders(s: Services, input: { daysOverdue: number; template: string }, paging: { after?: string | null; maxPages?: number } = {}): Promise<ReminderReport> {
  const { env, db, audit: ctx } = s;
  const cutoff = ctx.now - input.daysOverdue * DAY_MS;
  const day = new Date(ctx.now).toISOString().slice(0, 10);
  const report: ReminderReport = { queued: 0, alreadySentToday: 0, invoiceIds: [], next: null };
  const overdue = (id: string | undefined) =>
    db
      .select({ id: invoices.id, number: invoices.number, customerId: invoices.customerId, currency: invoices.currency, amountDue: invoices.amountDue, dueAt: invoices.dueAt, email: customers.email, name: customers.name })
      .from(invoices)
      .innerJoin(customers, eq(customers.id, invoices.customerId))
      .where(and(eq(invoices.status, "open"), gt(invoices.amountDue, 0), lte(invoices.dueAt, cutoff), isNull(invoices.testClockId), id ? gt(invoices.id, id) : undefined))
      .orderBy(asc(invoices.id))
      .limit(REMINDER_PAGE)
      .all();

  let pages = 0;
  for await (const page of pagesById(overdue, REMINDER_PAGE, paging.after ?? undefined)) {
    if (paging.maxPages !== undefined && pages++ >= paging.maxPages) {
      // This page is the next run's: it starts after the last invoice of the pages done here.
      report.next = paging.after ?? null;
      break;
    }
    const keyOf = (invoiceId: string) => `reminder:${invoiceId}:${day}`;
    let created: (typeof notifications.$inferInsert)[] = [];
    let eventIds: string[] = [];
    for (let attempt = 1; ; attempt++) {
      const existing = new Set(
        (await db.select({ k: notifications.dedupeKey }).from(notifications).where(inArray(notifications.dedupeKey, page.map((i) => keyOf(i.id)))).all()).map((n) => n.k),
      );
      created = page
        .filter((i) => !existing.has(keyOf(i.id)))
        .map((i) => ({
          id: newId("ntf"),
          kind: "invoice.reminder",
          customerId: i.customerId,
          invoiceId: i.id,
          template: input.template,
          payload: {
            invoiceId: i.id,
            invoiceNumber: i.number,
            amountDue: formatMinor(i.amountDue, i.currency),
            amountDueMinor: i.amountDue,
            currency: i.currency,
            dueAt: iso(i.dueAt),
            daysOverdue: Math.floor((ctx.now - i.dueAt!) / DAY_MS),
            customerEmail: i.email,
            customerName: i.name,
          },
          dedupeKey: keyOf(i.id),
          status: "queued" as const,
          createdAt: ctx.now,
        }));
      if (!created.length) break;
      const outbox = notificationInserts(db, created, ctx);
      eventIds = outbox.eventIds;
      try {
        await commitWithAudit(
          db,
          outbox.statements,
          created.map((n): AuditEntry => ({ action: "invoice.reminder_queued", targetType: "invoice", targetId: n.invoiceId!, after: { notificationId: n.id, template: n.template, daysOverdue: n.payload.daysOverdue } })),
          ctx,
        );
        break;
      } catch (e) {
        // A concurrent run created some of today's reminders first: look again.
        if (!isUniqueViolation(e, "notifications.dedupe_key") || attempt >= 3) throw e;
      }
    }
    report.alreadySentToday += page.length - created.length;
    for (const n of created) report.invoiceIds.push(n.invoiceId!);
    if (created.length) notificationsCommitted(eventIds);
    paging = { ...paging, after: page[page.length - 1]!.id };
  }
  report.queued = report.invoiceIds.length;
  return report;
}

/**
 * POST /api/v1/invoices/send-reminders and its `invoices.send_reminders` continuations: REMINDER_PAGES_PER_INVOCATION
 * pages here, and the rest from its cursor in a tasks-queue message at the same time (`continues`).
 */
export async function sendRemindersChained(s: Services, input: { daysOverdue: number; template: string }, after: string | null, step = 0): Promise<ReminderReport & { continues: boolean }> {
  const report = await sendReminders(s, input, { after, maxPages: REMINDER_PAGES_PER_INVOCATION });
  if (report.next) {
    // Once per step, whatever a duplicate delivery of this one does (platform/continuations.ts).
    const next = { type: "invoices.send_reminders" as const, input, after: report.next, now: s.audit.now, actor: s.audit.actor, step: step + 1 };
    await sendOnce(s.db, stepKey(`invoices.send_reminders|${s.audit.now}|${s.audit.actor.id}|${JSON.stringify(input)}`, step + 1), s.clock.wall, () => s.queues.tasks.send(next));
  }
  return { ...report, continues: report.next !== null };
}
