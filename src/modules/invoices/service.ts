import { and, asc, eq, gt, inArray, isNotNull, isNull, lt, lte, ne, or, sql } from "drizzle-orm";
import type { z } from "@hono/zod-openapi";
import type { Db } from "../../db/client";
import { commitWithAudit, type AuditContext, type AuditEntry } from "../../db/audit";
import { assertChanged, isAssertionFailure, isUniqueViolation } from "../../db/assert";
import { customers, invoiceLines, invoices, notifications, subscriptions, type InvoiceStatus } from "../../db/schema";
import { formatMinor } from "../../domain/money";
import { ApiError, notFound } from "../../http/problem";
import { newId } from "../../lib/ids";
import { iso } from "../../lib/time";
import { finalizeInvoice } from "../billing/finalize";
import { runDue } from "../billing/renewal";
import type { PaymentMessage } from "../../../queues/messages";
import { dispatchNotifications } from "../notifications/outbox";
import { Invoice, toInvoice } from "./serialize";

type InvoiceRow = typeof invoices.$inferSelect;
type LineRow = typeof invoiceLines.$inferSelect;

export const DAY_MS = 86_400_000;
const PAGE = 100;

const logError = (msg: string, fields: Record<string, unknown>) => console.log(JSON.stringify({ level: "error", msg, ...fields }));

/** Keyset pages by id, so rows the caller leaves unchanged (or fails on) are not fetched again. */
async function* pagesById<R extends { id: string }>(fetch: (after: string | undefined) => Promise<R[]>, size = PAGE): AsyncGenerator<R[]> {
  let after: string | undefined;
  for (;;) {
    const page = await fetch(after);
    if (page.length) yield page;
    if (page.length < size) return;
    after = page[page.length - 1]!.id;
  }
}

export async function getInvoice(db: Db, id: string): Promise<InvoiceRow> {
  const row = await db.select().from(invoices).where(eq(invoices.id, id)).get();
  if (!row) throw notFound("invoice", id);
  return row;
}

/** The invoice with its lines: from D1, or, once archived, from its R2 document (same shape either way). */
export async function invoiceWithLines(env: Env, db: Db, inv: InvoiceRow): Promise<z.infer<typeof Invoice>> {
  if (inv.archiveKey === null) {
    return toInvoice(inv, await db.select().from(invoiceLines).where(eq(invoiceLines.invoiceId, inv.id)).all());
  }
  const obj = await env.ARCHIVE.get(inv.archiveKey);
  if (!obj) throw new ApiError("internal", `invoice ${inv.id} is archived but its document ${inv.archiveKey} is missing`);
  const doc = Invoice.parse(await obj.json());
  return { ...toInvoice(inv), lines: doc.lines ?? [] };
}

/** draft | open → void, with the reason; paid, uncollectible and void invoices are refused with 409. */
export async function voidInvoice(db: Db, id: string, reason: string, ctx: AuditContext): Promise<InvoiceRow> {
  const inv = await getInvoice(db, id);
  if (inv.status === "paid") throw new ApiError("conflict", `invoice ${id} is paid: issue a refund or a credit note instead of voiding it`);
  if (inv.status === "void") throw new ApiError("conflict", `invoice ${id} is already void`);
  if (inv.status === "uncollectible") throw new ApiError("conflict", `invoice ${id} is uncollectible; it can no longer be voided`);
  const after: InvoiceRow = { ...inv, status: "void", voidedAt: ctx.now, voidReason: reason, amountDue: 0, updatedAt: ctx.now };
  try {
    await commitWithAudit(
      db,
      [
        db
          .update(invoices)
          .set({ status: "void", voidedAt: ctx.now, voidReason: reason, amountDue: 0, updatedAt: ctx.now })
          .where(and(eq(invoices.id, id), inArray(invoices.status, ["draft", "open"]))),
        assertChanged(db),
      ],
      [{ action: "invoice.voided", targetType: "invoice", targetId: id, before: { status: inv.status, amountDue: inv.amountDue }, after: { status: "void" }, reason }],
      ctx,
    );
  } catch (e) {
    if (isAssertionFailure(e)) throw new ApiError("conflict", `invoice ${id} changed state concurrently; reload it`);
    throw e;
  }
  return after;
}

// ── Retry failed ────────────────────────────────────────────────────────────────────────────────────────

export type RetryFailedReport = {
  paymentRetries: { count: number; invoiceIds: string[] };
  finalized: { count: number; invoiceIds: string[] };
  regenerated: { count: number; subscriptionIds: string[]; invoiceIds: string[] };
  skipped: { count: number; invoiceIds: string[] };
  errors: { id: string; error: string }[];
};

/**
 * Picks up what failed in [start, end) (an invoice's date is its finalization, else its creation):
 * collection attempts below `maxRetries` are queued again, leftover drafts are finalized, and real-time
 * subscriptions whose period ended in the range without being renewed run their due steps.
 */
export async function retryFailed(env: Env, db: Db, input: { start: number; end: number; maxRetries: number }, ctx: AuditContext): Promise<RetryFailedReport> {
  const r: RetryFailedReport = {
    paymentRetries: { count: 0, invoiceIds: [] },
    finalized: { count: 0, invoiceIds: [] },
    regenerated: { count: 0, subscriptionIds: [], invoiceIds: [] },
    skipped: { count: 0, invoiceIds: [] },
    errors: [],
  };
  const issuedAt = sql`coalesce(${invoices.finalizedAt}, ${invoices.createdAt})`;
  const inRange = and(sql`${issuedAt} >= ${input.start}`, sql`${issuedAt} < ${input.end}`);
  const after = (id: string | undefined) => (id ? gt(invoices.id, id) : undefined);

  // (a) Collection failed: queue the next attempt. Nothing on the invoice changes until the payment consumer runs.
  const failed = (id: string | undefined) =>
    db
      .select({ id: invoices.id, attemptCount: invoices.attemptCount, lastError: invoices.lastError })
      .from(invoices)
      .where(and(eq(invoices.status, "open"), gt(invoices.amountDue, 0), or(gt(invoices.attemptCount, 0), isNotNull(invoices.lastError)), inRange, after(id)))
      .orderBy(asc(invoices.id))
      .limit(PAGE)
      .all();
  for await (const page of pagesById(failed)) {
    const retry = page.filter((i) => i.attemptCount < input.maxRetries);
    for (const i of page) if (i.attemptCount >= input.maxRetries) r.skipped.invoiceIds.push(i.id);
    if (!retry.length) continue;
    await commitWithAudit(
      db,
      [],
      retry.map((i) => ({ action: "invoice.retry_requested", targetType: "invoice", targetId: i.id, before: { attemptCount: i.attemptCount, lastError: i.lastError }, after: { attempt: i.attemptCount + 1, maxRetries: input.maxRetries } })),
      ctx,
    );
    for (const i of retry) {
      try {
        await env.PAYMENT_QUEUE.send({ type: "payment.attempt", invoiceId: i.id, attempt: i.attemptCount + 1 } satisfies PaymentMessage);
        r.paymentRetries.invoiceIds.push(i.id);
      } catch (e) {
        r.errors.push({ id: i.id, error: `payment enqueue failed: ${String(e)}` });
        logError("payment retry enqueue failed", { invoiceId: i.id, error: String(e) });
      }
    }
  }

  // (b) Drafts an interrupted run left behind (manual drafts are being edited; test-clock drafts move with their clock).
  const drafts = (id: string | undefined) =>
    db
      .select({ id: invoices.id })
      .from(invoices)
      .where(and(eq(invoices.status, "draft"), ne(invoices.billingReason, "manual"), isNull(invoices.testClockId), inRange, after(id)))
      .orderBy(asc(invoices.id))
      .limit(PAGE)
      .all();
  for await (const page of pagesById(drafts)) {
    for (const d of page) {
      try {
        if (await finalizeInvoice(env, db, d.id, ctx)) r.finalized.invoiceIds.push(d.id);
      } catch (e) {
        r.errors.push({ id: d.id, error: String(e) });
      }
    }
  }

  // (c) Generation failures: a real-time period that ended (in the range, in the past) and was never renewed.
  const stale = (id: string | undefined) =>
    db
      .select({ id: subscriptions.id })
      .from(subscriptions)
      .where(
        and(
          isNull(subscriptions.testClockId),
          ne(subscriptions.status, "canceled"),
          sql`${subscriptions.currentPeriodEnd} >= ${input.start}`,
          lt(subscriptions.currentPeriodEnd, Math.min(input.end, ctx.now)),
          id ? gt(subscriptions.id, id) : undefined,
        ),
      )
      .orderBy(asc(subscriptions.id))
      .limit(PAGE)
      .all();
  for await (const page of pagesById(stale)) {
    for (const s of page) {
      try {
        const steps = await runDue(env, db, s.id, ctx.now, { actor: ctx.actor, ...(ctx.requestId ? { requestId: ctx.requestId } : {}) });
        if (!steps.length) continue; // still inside the late-usage grace window, or moved on concurrently
        r.regenerated.subscriptionIds.push(s.id);
        for (const step of steps) if (step.invoiceId) r.regenerated.invoiceIds.push(step.invoiceId);
      } catch (e) {
        r.errors.push({ id: s.id, error: String(e) });
      }
    }
  }

  r.paymentRetries.count = r.paymentRetries.invoiceIds.length;
  r.finalized.count = r.finalized.invoiceIds.length;
  r.regenerated.count = r.regenerated.subscriptionIds.length;
  r.skipped.count = r.skipped.invoiceIds.length;
  return r;
}

// ── Reminders ───────────────────────────────────────────────────────────────────────────────────────────

const REMINDER_PAGE = 50; // one insert and one audit row per invoice: 100 statements per batch at most

export type ReminderReport = { queued: number; alreadySentToday: number; invoiceIds: string[] };

/**
 * One `invoice.reminder` notification per overdue open invoice per UTC day (deduped by key), then a
 * `notification.send` message for each new one. Test-clock invoices are left out: their due dates are in
 * simulated time.
 */
export async function sendReminders(env: Env, db: Db, input: { daysOverdue: number; template: string }, ctx: AuditContext): Promise<ReminderReport> {
  const cutoff = ctx.now - input.daysOverdue * DAY_MS;
  const day = new Date(ctx.now).toISOString().slice(0, 10);
  const report: ReminderReport = { queued: 0, alreadySentToday: 0, invoiceIds: [] };
  const overdue = (id: string | undefined) =>
    db
      .select({ id: invoices.id, number: invoices.number, customerId: invoices.customerId, currency: invoices.currency, amountDue: invoices.amountDue, dueAt: invoices.dueAt, email: customers.email, name: customers.name })
      .from(invoices)
      .innerJoin(customers, eq(customers.id, invoices.customerId))
      .where(and(eq(invoices.status, "open"), gt(invoices.amountDue, 0), lte(invoices.dueAt, cutoff), isNull(invoices.testClockId), id ? gt(invoices.id, id) : undefined))
      .orderBy(asc(invoices.id))
      .limit(REMINDER_PAGE)
      .all();

  for await (const page of pagesById(overdue, REMINDER_PAGE)) {
    const keyOf = (invoiceId: string) => `reminder:${invoiceId}:${day}`;
    let created: (typeof notifications.$inferInsert)[] = [];
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
      try {
        await commitWithAudit(
          db,
          created.map((n) => db.insert(notifications).values(n)),
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
    await dispatchNotifications(env, created.map((n) => n.id));
  }
  report.queued = report.invoiceIds.length;
  return report;
}

// ── Archive ─────────────────────────────────────────────────────────────────────────────────────────────

export const ARCHIVABLE_STATUSES: readonly InvoiceStatus[] = ["paid", "void", "uncollectible"];
/** Per call, so one run stays well inside a Worker's subrequest budget (about four per invoice). */
export const ARCHIVE_MAX_PER_RUN = 500;

/** `invoices/<finalization year>/<id>.json`. */
export const archiveKeyOf = (inv: InvoiceRow) => `invoices/${new Date(inv.finalizedAt ?? inv.createdAt).getUTCFullYear()}/${inv.id}.json`;

export type ArchiveReport = { archived: number; invoiceIds: string[]; hasMore: boolean; errors: { id: string; error: string }[] };

/**
 * Moves finalized invoices in a final state created before `olderThan` to R2: the document (the invoice
 * with its lines, as the API shows it) is written first, then one batch marks the invoice archived, deletes
 * its lines and audits it. A crash between the two leaves the invoice unarchived; the next run rewrites the
 * same document.
 */
export async function archiveInvoices(env: Env, db: Db, olderThan: number, ctx: AuditContext, max = ARCHIVE_MAX_PER_RUN): Promise<ArchiveReport> {
  const report: ArchiveReport = { archived: 0, invoiceIds: [], hasMore: false, errors: [] };
  let cursor: { createdAt: number; id: string } | undefined;
  const candidates = (limit: number) =>
    db
      .select()
      .from(invoices)
      .where(
        and(
          inArray(invoices.status, [...ARCHIVABLE_STATUSES]),
          isNotNull(invoices.finalizedAt),
          isNull(invoices.archiveKey),
          lt(invoices.createdAt, olderThan),
          cursor ? or(gt(invoices.createdAt, cursor.createdAt), and(eq(invoices.createdAt, cursor.createdAt), gt(invoices.id, cursor.id))) : undefined,
        ),
      )
      .orderBy(asc(invoices.createdAt), asc(invoices.id))
      .limit(limit)
      .all();

  let seen = 0;
  for (;;) {
    if (seen >= max) {
      report.hasMore = (await candidates(1)).length > 0;
      break;
    }
    const limit = Math.min(PAGE, max - seen);
    const page = await candidates(limit);
    if (!page.length) break;
    seen += page.length;
    const lines = await db.select().from(invoiceLines).where(inArray(invoiceLines.invoiceId, page.map((i) => i.id))).all();
    for (const inv of page) {
      try {
        if (await archiveOne(env, db, inv, lines.filter((l) => l.invoiceId === inv.id), ctx)) report.invoiceIds.push(inv.id);
      } catch (e) {
        report.errors.push({ id: inv.id, error: String(e) });
        logError("invoice archive failed", { invoiceId: inv.id, error: String(e) });
      }
    }
    const last = page[page.length - 1]!;
    cursor = { createdAt: last.createdAt, id: last.id };
    if (page.length < limit) break;
  }
  report.archived = report.invoiceIds.length;
  return report;
}

async function archiveOne(env: Env, db: Db, inv: InvoiceRow, lines: LineRow[], ctx: AuditContext): Promise<boolean> {
  const key = archiveKeyOf(inv);
  const archived: InvoiceRow = { ...inv, archiveKey: key, archivedAt: ctx.now, updatedAt: ctx.now };
  await env.ARCHIVE.put(key, JSON.stringify(toInvoice(archived, lines)), {
    httpMetadata: { contentType: "application/json" },
    customMetadata: { invoiceId: inv.id, lines: String(lines.length) },
  });
  try {
    await commitWithAudit(
      db,
      [
        db
          .update(invoices)
          .set({ archiveKey: key, archivedAt: ctx.now, updatedAt: ctx.now })
          .where(and(eq(invoices.id, inv.id), isNull(invoices.archiveKey), inArray(invoices.status, [...ARCHIVABLE_STATUSES]))),
        assertChanged(db),
        db.delete(invoiceLines).where(eq(invoiceLines.invoiceId, inv.id)),
      ],
      [{ action: "invoice.archived", targetType: "invoice", targetId: inv.id, before: { status: inv.status, lines: lines.length }, after: { archiveKey: key } }],
      ctx,
    );
    return true;
  } catch (e) {
    if (isAssertionFailure(e)) return false; // archived by a concurrent run, or its state changed
    throw e;
  }
}
