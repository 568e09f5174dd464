import { and, asc, eq, gt, lt, lte, or, sql } from "drizzle-orm";
import type { Services } from "../../platform/services";
import type { Db } from "../../db/client";
import { commitWithAudit } from "../../platform/audit";
import { customers, invoices, payments } from "../../db/schema";
import { releaseParkedPage } from "./lifecycle";
import { collectInvoice, latestAttempt, type CollectOutcome } from "./collect";
import { lockedFailure } from "./guard";
import { conflict, fail, invalid, notFound, ok, type Outcome } from "../../platform/failure";
import { archivedThrough } from "../retention/run";
import { iso } from "../../lib/time";
import { sendOnce, stepKey } from "../../platform/continuations";

type PaymentRow = typeof payments.$inferSelect;

export { toPayment } from "./serialize";

/** Where a walk over failed payments stands: the last row's (created_at, id). */
export type FailedCursor = { createdAt: number; id: string };

/** The open invoice's latest attempt, and it failed: what "failed payments" means operationally. */
const failedLatest = and(
  eq(invoices.status, "open"),
  eq(payments.status, "failed"),
  sql`${payments.attempt} = (SELECT max(p2.attempt) FROM payments p2 WHERE p2.invoice_id = ${payments.invoiceId})`,
);

/**
 * One page of failed latest attempts, oldest first by (created_at, id) after `after`; `maxAttempt` keeps only those
 * with attempts left. `next` is the cursor of the following page, null on the last one.
 */
export async function failedLatestAttempts(db: Db, opts: { after: FailedCursor | null; limit: number; maxAttempt?: number; createdUpTo?: number }): Promise<{ rows: PaymentRow[]; next: FailedCursor | null }> {
  const { after, limit } = opts;
  const rows = await db
    .select({ p: payments })
    .from(payments)
    .innerJoin(invoices, eq(invoices.id, payments.invoiceId))
    .where(
      and(
        failedLatest,
        opts.maxAttempt === undefined ? undefined : lt(payments.attempt, opts.maxAttempt),
        opts.createdUpTo === undefined ? undefined : lte(payments.createdAt, opts.createdUpTo),
        after ? or(gt(payments.createdAt, after.createdAt), and(eq(payments.createdAt, after.createdAt), gt(payments.id, after.id))) : undefined,
      ),
    )
    .orderBy(asc(payments.createdAt), asc(payments.id))
    .limit(limit + 1)
    .all();
  const kept = rows.slice(0, limit).map((r) => r.p);
  const last = kept[kept.length - 1];
  return { rows: kept, next: rows.length > limit && last ? { createdAt: last.createdAt, id: last.id } : null };
}

/** Failed payments by failure code and currency, counted in SQL: one small answer however many there are. */
export async function failedPaymentTotals(db: Db): Promise<{ failureCode: string | null; currency: string; count: number; amount: number }[]> {
  return db
    .select({ failureCode: payments.failureCode, currency: payments.currency, count: sql<number>`count(*)`, amount: sql<number>`sum(${payments.amount})` })
    .from(payments)
    .innerJoin(invoices, eq(invoices.id, payments.invoiceId))
    .where(failedLatest)
    .groupBy(payments.failureCode, payments.currency)
    .all();
}

/** Pages of 100 one requeue call (a request, or a tasks-queue message) sends before handing the rest on. */
export const REQUEUE_PAGE = 100;
export const REQUEUE_PAGES_PER_INVOCATION = 5;

/**
 * Sends the next attempt of failed payments to the payments queue, oldest first from `after`, up to
 * REQUEUE_PAGES_PER_INVOCATION pages of REQUEUE_PAGE; each page is audited in one batch after its sends. When more
 * are left, the rest goes on in a `payments.requeue_failed` message on the tasks queue (`continues: true`).
 */
export async function requeueFailed(s: Services, after: FailedCursor | null, step = 0): Promise<{ invoiceIds: string[]; continues: boolean }> {
  const invoiceIds: string[] = [];
  let cursor = after;
  for (let page = 1; ; page++) {
    // Failures after the request are not its business (a requeued attempt that fails again must not be sent twice).
    const { rows, next } = await failedLatestAttempts(s.db, { after: cursor, limit: REQUEUE_PAGE, createdUpTo: s.audit.now });
    invoiceIds.push(...(await requeue(s, rows)));
    if (!next) return { invoiceIds, continues: false };
    if (page === REQUEUE_PAGES_PER_INVOCATION) {
      // Once per step, whatever a duplicate delivery of this one does (platform/continuations.ts).
      const message = { type: "payments.requeue_failed" as const, after: next, now: s.audit.now, actor: s.audit.actor, step: step + 1 };
      await sendOnce(s.db, stepKey(`payments.requeue_failed|${s.audit.now}|${s.audit.actor.id}`, step + 1), s.clock.wall, () => s.queues.tasks.send(message));
      return { invoiceIds, continues: true };
    }
    cursor = next;
  }
}

/** Sends the next attempt of each given failed payment to the payments queue. */
async function requeue(s: Services, rows: PaymentRow[]): Promise<string[]> {
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

/**
 * POST /api/v1/payments/{id}/retry: charges the failed payment's invoice again now (optionally with the customer's
 * alternate method). An attempt whose outcome is unknown is asked again with its own key; otherwise a new attempt.
 * Frozen payments refuse it (423); in queue mode it is parked. A gateway that does not answer leaves the attempt to
 * the payments queue, a minute later.
 */
export async function retryPayment(
  s: Services,
  id: string,
  body: { useAlternateMethod: boolean; paymentMethod?: string | undefined },
): Promise<Outcome<Exclude<CollectOutcome, { outcome: "locked" }>, "not_found" | "conflict" | "unprocessable" | "locked">> {
  const { db } = s;
  const failed = await db.select().from(payments).where(eq(payments.id, id)).get();
  if (!failed) return notFound("payment", id);
  if (failed.status === "succeeded") return conflict(`payment ${failed.id} succeeded; nothing to retry`);
  const inv = await db.select().from(invoices).where(eq(invoices.id, failed.invoiceId)).get();
  if (!inv || inv.status !== "open") return conflict(`invoice ${failed.invoiceId} is ${inv?.status ?? "missing"}; nothing to collect`);
  let method = body.paymentMethod ?? null;
  if (body.useAlternateMethod && !method) {
    const customer = await db.select().from(customers).where(eq(customers.id, failed.customerId)).get();
    method = customer?.metadata.alternatePaymentMethod ?? null;
    if (!method) return invalid([{ path: "useAlternateMethod", message: "the customer has no metadata.alternatePaymentMethod" }]);
  }
  const latest = (await latestAttempt(db, inv.id))!;
  if (latest.status === "parked" || latest.status === "pending") return conflict(`attempt ${latest.attempt} of invoice ${inv.id} is already queued`);
  const attempt = latest.status === "processing" ? latest.attempt : latest.attempt + 1;
  const r = await collectInvoice(s, inv.id, { attempt, direct: true, paymentMethod: method });
  if (r.outcome === "locked") return lockedFailure(r.refused);
  if (r.outcome === "unknown") await s.queues.payments.send({ type: "payment.attempt", invoiceId: inv.id, attempt }, { delaySeconds: 60 });
  return ok(r);
}

/** One payment attempt; when it is not in D1, the 404 says whether the retention policy archived attempts to R2. */
export async function getPayment(db: Db, id: string): Promise<Outcome<PaymentRow, "not_found">> {
  const row = await db.select().from(payments).where(eq(payments.id, id)).get();
  if (row) return ok(row);
  const through = await archivedThrough(db, "payment_attempts");
  if (through === null) return notFound("payment", id);
  return fail(
    "not_found",
    `No payment ${id} in D1. Payment attempts finished up to ${iso(through)} were archived to R2 by the retention policy (GET /admin/retention/archives?kind=payment_attempts).`,
  );
}
