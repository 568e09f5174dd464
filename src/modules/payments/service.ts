import { and, asc, eq, sql } from "drizzle-orm";
import type { Services } from "../../platform/services";
import type { Db } from "../../db/client";
import { commitWithAudit } from "../../platform/audit";
import { invoices, payments } from "../../db/schema";
import { releaseParkedPage } from "./lifecycle";

type PaymentRow = typeof payments.$inferSelect;

export { toPayment } from "./serialize";

/** Latest attempt per open invoice, when that attempt failed: what "failed payments" means operationally. */
export async function failedLatestAttempts(db: Db): Promise<PaymentRow[]> {
  return db
    .select({ p: payments })
    .from(payments)
    .innerJoin(invoices, eq(invoices.id, payments.invoiceId))
    .where(
      and(
        eq(invoices.status, "open"),
        eq(payments.status, "failed"),
        sql`${payments.attempt} = (SELECT max(p2.attempt) FROM payments p2 WHERE p2.invoice_id = ${payments.invoiceId})`,
      ),
    )
    .orderBy(asc(payments.createdAt))
    .all()
    .then((rows) => rows.map((r) => r.p));
}

/** Sends the next attempt of each given failed payment to the payments queue. */
export async function requeue(s: Services, rows: PaymentRow[]): Promise<string[]> {
  if (!rows.length) return [];
  await s.queues.payments.sendAll(rows.map((p) => ({ type: "payment.attempt", invoiceId: p.invoiceId, attempt: p.attempt + 1 })));
  await commitWithAudit(s.db, [], rows.map((p) => ({ action: "payment.requeued", targetType: "invoice", targetId: p.invoiceId, after: { attempt: p.attempt + 1 } })), s.audit);
  return rows.map((p) => p.invoiceId);
}

/** Parked charges released per statement (and per queue message when there are more). */
export const RELEASE_PAGE = 100;

/**
 * On resume: parked charges go back to the payments queue in the order they were parked, a page at a time. The
 * release is one conditional UPDATE (parked → pending) whose RETURNING rows are the only ones sent, so concurrent
 * resumes (or continuations) release each charge exactly once. A full page hands the rest on to the payments queue
 * instead of looping here. Returns how many this call released.
 */
export async function releaseParked(s: Services): Promise<number> {
  const released = await releaseParkedPage(s.db, RELEASE_PAGE, s.clock.wall);
  if (!released.length) return 0;
  released.sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  await s.queues.payments.sendAll(released.map((p) => ({ type: "payment.attempt", invoiceId: p.invoiceId, attempt: p.attempt })));
  if (released.length === RELEASE_PAGE) await s.queues.payments.send({ type: "payments.release_parked" });
  return released.length;
}
