import { and, eq, inArray, sql, type SQL } from "drizzle-orm";
import { queuesOf } from "../../platform/services";
import type { BatchItem } from "drizzle-orm/batch";
import { env as workerEnv } from "cloudflare:workers";
import type { Db } from "../../db/client";
import type { AuditContext, AuditEntry } from "../../platform/audit";
import { assertChanged } from "../../db/assert";
import { builtOnce, insertRow, preparedStatement } from "../../db/prepared";
import { invoiceLines, invoiceNumberSequences, invoices, type InvoiceStatus } from "../../db/schema";
import { defineLifecycle } from "../../domain/lifecycle";
import { change, type ChangeSet } from "../../platform/change-set";
import { eventInsert, eventInsertIfChanged, eventRow, eventsCommitted, type EventDraft, type EventRow, type EventType } from "../../platform/events";
import { Invoice, toInvoice } from "./serialize";
import { creditedLinesOfInvoice } from "./creditable";
import type { CreditedLine } from "../../domain/creditable";
import { archivedRowsOf, isRetentionArchive } from "../../platform/archives";
import { failure, UnexpectedFailure } from "../../platform/failure";
import { DEFAULT_LINK_DAYS, newHostedLink } from "./hosted-link";
import { activatePurchasedGrants, returnCredits, voidPurchasedGrants } from "../credits/ledger";
import type { z } from "@hono/zod-openapi";

type InvoiceRow = typeof invoices.$inferSelect;
type LineRow = typeof invoiceLines.$inferSelect;
type InvoiceObject = z.infer<typeof Invoice>;
/** What a transition needs of its context: the time it happens at, the request it belongs to, the actor (audit). */
type Ctx = AuditContext;

/**
 * The invoice lifecycle (owner: this module). draft → paid is a finalization with nothing due (zero total, or
 * fully paid by credit). uncollectible → paid: a late payment still settles it (Stripe's rule). uncollectible →
 * void: written off as a mistake rather than a bad debt. paid and void are terminal: a paid invoice is corrected
 * by a refund or a credit note, never by changing it.
 */
export const invoiceLifecycle = defineLifecycle<InvoiceStatus>("invoice", {
  draft: ["open", "paid", "void"],
  open: ["paid", "void", "uncollectible"],
  uncollectible: ["paid", "void"],
  paid: [],
  void: [],
});

/** The states an invoice can be paid from by a payment (a draft is only ever "paid" by its own finalization). */
const PAYABLE: InvoiceStatus[] = ["open", "uncollectible"];

/** Lines the retention policy moved to R2: the invoice's rows of its page's NDJSON archive (src/modules/retention). */
export async function retainedLinesOf(bucket: R2Bucket, invoiceId: string, key: string): Promise<LineRow[]> {
  const rows = await archivedRowsOf<LineRow>(bucket, key, (l) => l.invoiceId === invoiceId);
  // Data loss nobody can act on: a 500 whose detail names the missing archive.
  if (!rows) throw new UnexpectedFailure(failure("internal", `invoice ${invoiceId}: its lines were archived to ${key}, which is missing from R2`));
  return rows;
}

/** The invoice's lines as its REST object shows them: from D1, or, once archived, from its R2 document. */
export async function invoiceLinesOf(db: Db, inv: InvoiceRow): Promise<LineRow[] | InvoiceObject["lines"]> {
  if (inv.archiveKey === null) return db.select().from(invoiceLines).where(eq(invoiceLines.invoiceId, inv.id)).all();
  if (isRetentionArchive(inv.archiveKey)) return retainedLinesOf((workerEnv as Env).ARCHIVE, inv.id, inv.archiveKey);
  const obj = await (workerEnv as Env).ARCHIVE.get(inv.archiveKey);
  return obj ? (Invoice.parse(await obj.json()).lines ?? []) : [];
}

/** The invoice's lines as D1 rows, read back from its R2 document once archived (documents, credit notes). */
export async function invoiceLineRows(db: Db, inv: InvoiceRow): Promise<LineRow[]> {
  const lines = await invoiceLinesOf(db, inv);
  return (lines ?? []).map((l, i) =>
    "invoiceId" in l
      ? l
      : {
          id: l.id,
          invoiceId: inv.id,
          position: i,
          kind: l.kind,
          description: l.description,
          priceId: l.priceId,
          meterId: l.meterId,
          quantity: l.quantity,
          unitAmount: l.unitAmount,
          amount: l.amount.amountMinor,
          discountAmount: l.discount.amountMinor,
          taxAmount: l.tax.amountMinor,
          periodStart: Date.parse(l.period.start),
          periodEnd: Date.parse(l.period.end),
          computation: l.computation,
        },
  );
}

/** The invoice exactly as GET /api/v1/invoices/:id returns it (with its lines). */
export function invoiceObject(inv: InvoiceRow, lines: LineRow[] | InvoiceObject["lines"], credited: readonly CreditedLine[]): InvoiceObject {
  const rows = (lines ?? []) as (LineRow | NonNullable<InvoiceObject["lines"]>[number])[];
  if (rows.length && !("invoiceId" in rows[0]!)) return { ...toInvoice(inv, undefined, credited), lines: rows as NonNullable<InvoiceObject["lines"]> };
  return toInvoice(inv, rows as LineRow[], credited);
}

/** `credited`: the invoice's issued credit notes' lines as they are after the change (none before finalization). */
const draftOf = (type: EventType, after: InvoiceRow, lines: LineRow[] | InvoiceObject["lines"], previousAttributes: Record<string, unknown> | null, credited: readonly CreditedLine[] = []): EventDraft => ({
  type,
  objectType: "invoice",
  objectId: after.id,
  customerId: after.customerId,
  object: invoiceObject(after, lines, credited),
  previousAttributes,
  testClockId: after.testClockId,
});

/**
 * A guarded move: the UPDATE (its WHERE names the state(s) left), each event inserted only if the UPDATE changed
 * the row (eventInsertIfChanged chains: each insert changed a row iff the one before did), and with `strict` an
 * assertion that aborts the whole batch when it did not (the caller maps that to a 409 "changed concurrently").
 * The events are handed to delivery after the commit (an id whose row was not written is skipped there).
 */
function guarded(db: Db, update: BatchItem<"sqlite">, drafts: EventDraft[], ctx: Pick<Ctx, "now" | "requestId">, strict: boolean, audit: AuditEntry[], rest: BatchItem<"sqlite">[] = []): ChangeSet {
  const rows: EventRow[] = drafts.map((d) => eventRow(d, ctx));
  return change({
    statements: [update, ...rows.map((r) => eventInsertIfChanged(db, r)), ...(strict ? [assertChanged(db)] : []), ...rest],
    audit,
    after: rows.length ? [async () => eventsCommitted(rows.map((r) => r.id))] : [],
  });
}

/**
 * After the commit, the invoice's document job (jobs queue: the PDF of its new state, with its PAID or VOID mark, in
 * R2). One message per transition; a lost message costs only time: GET …/pdf renders a missing document on demand.
 * The queue is the invocation's (withLimits makes `cloudflare:workers`' env the invocation's env).
 */
const withDocument = (cs: ChangeSet, invoiceId: string): ChangeSet => ({
  ...cs,
  after: [
    ...cs.after,
    async () =>
      queuesOf(workerEnv as Env).jobs.send({ type: "invoice.document", invoiceId }).catch((e: unknown) =>
        console.log(JSON.stringify({ level: "error", msg: "document enqueue failed; GET /api/v1/invoices/:id/pdf renders it", invoiceId, error: String(e) })),
      ),
  ],
});

/** Hands events that `rest` statements inserted to delivery after the commit, like the transition's own. */
const withEvents = (cs: ChangeSet, eventIds: string[]): ChangeSet => (eventIds.length ? { ...cs, after: [...cs.after, async () => eventsCommitted(eventIds)] } : cs);

const where = (id: string, from: InvoiceStatus | InvoiceStatus[]): SQL =>
  and(eq(invoices.id, id), Array.isArray(from) ? inArray(invoices.status, from) : eq(invoices.status, from))!;

/**
 * A new draft: its insert and its invoice.created event, unconditionally in the same batch (the insert fails the
 * batch on a duplicate generation key, so the event exists exactly when the invoice does). The event is inline in
 * `statements` because the callers commit the builder's statements as they are.
 */
export function invoiceCreated(db: Db, invoice: InvoiceRow, lines: LineRow[], ctx: Pick<Ctx, "now" | "requestId">): { statements: BatchItem<"sqlite">[]; eventIds: string[] } {
  const row = eventRow(draftOf("invoice.created", invoice, lines, null), ctx);
  return { statements: [insertRow(db, invoices, invoice), eventInsert(db, row)], eventIds: [row.id] };
}

/**
 * The invoice's number, as SQL: `INV-<year>-<6 digits>` from its sequence's counter row as it stands in the batch
 * (the same text `invoiceNumber` in finalize.ts builds).
 */
// The year goes in as literal text: a bound number would be concatenated as a REAL ("2093.0").
const numberOfSequence = (year: number) =>
  sql`'INV-' || ${sql.raw(String(Math.trunc(year)))} || '-' || printf('%06d', (SELECT ${invoiceNumberSequences.lastNumber} FROM ${invoiceNumberSequences} WHERE ${invoiceNumberSequences.year} = ${year}))`;

/**
 * An event whose object is the invoice as drafted, with `number` taken from the row when the statement runs.
 * Prepared SQL (src/db/prepared.ts): one or two per renewal, on the billing run's hot path.
 */
const EVENT_WITH_NUMBER = `INSERT INTO "events" ("id", "type", "object_type", "object_id", "customer_id", "livemode", "request_id", "data", "created_at")
  SELECT ?, ?, ?, ?, ?, ?, ?, json_set(?, '$.object.number', "invoices"."number"), ? FROM "invoices" WHERE "invoices"."id" = ?`;
function eventWithNumber(db: Db, row: EventRow, invoiceId: string): BatchItem<"sqlite"> {
  return preparedStatement(db, EVENT_WITH_NUMBER, [row.id, row.type, row.objectType, row.objectId, row.customerId, row.livemode ? 1 : 0, row.requestId, JSON.stringify(row.data), row.createdAt, invoiceId]);
}

/**
 * The finalization's fixed statements, built by drizzle once per isolate and year (the year is literal text in the
 * number): the guarded draft move, the sequence's counter, the number. Every renewal finalizes.
 */
const finalizeByYear = new Map<number, ReturnType<typeof finalizeBuilder>>();
const finalizeBuilder = (year: number) =>
  builtOnce((db: Db) => {
    const p = sql.placeholder;
    return [
      db
        .update(invoices)
        .set({ status: sql`${p("to")}`, finalizedAt: sql`${p("finalizedAt")}`, paidAt: sql`${p("paidAt")}`, dueAt: sql`${p("dueAt")}`, updatedAt: sql`${p("now")}` })
        .where(and(eq(invoices.id, p("id")), eq(invoices.status, p("from")))),
      db
        .insert(invoiceNumberSequences)
        .values({ year, lastNumber: 1 })
        .onConflictDoUpdate({ target: invoiceNumberSequences.year, set: { lastNumber: sql`${invoiceNumberSequences.lastNumber} + 1` } }),
      db.update(invoices).set({ number: numberOfSequence(year) }).where(eq(invoices.id, p("id"))),
    ] as const;
  });
const finalizeStatements = (year: number) => {
  let built = finalizeByYear.get(year);
  if (!built) finalizeByYear.set(year, (built = finalizeBuilder(year)));
  return built;
};
/** The invoice read back at the end of a batch (the finalization's last statement). */
const readBack = builtOnce((db: Db) => [db.select().from(invoices).where(eq(invoices.id, sql.placeholder("id")))] as const);

/**
 * draft → open, or draft → paid when nothing is due (then invoice.finalized and invoice.paid, in that order), with
 * the next number of the finalization year's sequence taken inside the same batch: the guarded UPDATE (strict: a
 * concurrent finalization aborts the batch), then the sequence's counter row moves by one (UPSERT), then the invoice
 * takes the counter's value. D1 runs a batch as one transaction on its single writer, so numbers are sequential and
 * gap-free (an aborted batch gives its number back) with no read of the counter and no retry. The events read the
 * number from the row; the audit row names the sequence (its MAC is computed before the batch runs). `lines` are the
 * invoice's lines (for the events' objects). The last statement reads the invoice back: its row, with the number, is
 * the last statement result of the committed batch (`finalizedRow`).
 */
export function invoiceFinalized(db: Db, inv: InvoiceRow, lines: LineRow[] | InvoiceObject["lines"], ctx: Ctx, linkDays = DEFAULT_LINK_DAYS): { change: ChangeSet; after: InvoiceRow } {
  const paid = inv.amountDue === 0;
  const to: InvoiceStatus = paid ? "paid" : "open";
  invoiceLifecycle.assertMove(inv.id, inv.status, to);
  const year = new Date(ctx.now).getUTCFullYear();
  // The hosted link is made in this batch, so the invoice object (events, lists, GET) carries it from now on.
  const link = newHostedLink(db, (workerEnv as Env).HOSTED_LINK_SECRET, inv.id, ctx.now + linkDays * 86_400_000, ctx.actor.id, ctx.now);
  const after: InvoiceRow = { ...inv, number: null, status: to, finalizedAt: ctx.now, paidAt: paid ? ctx.now : null, dueAt: paid ? null : ctx.now + PAYMENT_TERMS_MS, updatedAt: ctx.now, hostedToken: link.token };
  const prev = { status: inv.status, number: inv.number, finalizedAt: null, dueAt: null };
  const drafts = [draftOf("invoice.finalized", after, lines, prev)];
  if (paid) drafts.push(draftOf("invoice.paid", after, lines, { status: inv.status, paidAt: null }));
  const rows = drafts.map((d) => eventRow(d, ctx));
  const [move, counter, numbered] = finalizeStatements(year)(db, { id: inv.id, from: inv.status, to, finalizedAt: after.finalizedAt, paidAt: after.paidAt, dueAt: after.dueAt, now: ctx.now });
  const statements: BatchItem<"sqlite">[] = [move, assertChanged(db), counter, numbered, ...link.statements, ...rows.map((r) => eventWithNumber(db, r, inv.id)), ...readBack(db, { id: inv.id })];
  return {
    change: change({
      statements,
      audit: [{ action: "invoice.finalized", targetType: "invoice", targetId: inv.id, after: { numberSequence: year, status: to, total: inv.total, amountDue: inv.amountDue, currency: inv.currency, linkId: link.id } }],
      after: [async () => eventsCommitted(rows.map((r) => r.id))],
    }),
    after,
  };
}

/** The finalized invoice (with its number) from the results of the batch that committed `invoiceFinalized`'s change last. */
export function finalizedRow(results: unknown[], statementCount: number): InvoiceRow {
  const rows = results[statementCount - 1] as InvoiceRow[] | undefined;
  if (!rows?.[0]) throw new Error("finalization: the batch did not read the invoice back");
  return rows[0];
}

export const PAYMENT_TERMS_MS = 30 * 86_400_000;

/** The paid move (guarded on a payable status), built by drizzle once per isolate: every successful charge makes it. */
const paidUpdate = builtOnce((db: Db) => {
  const p = sql.placeholder;
  return [
    db
      .update(invoices)
      .set({ status: "paid", amountPaid: sql`${invoices.amountPaid} + ${p("amount")}`, amountDue: 0, paidAt: sql`${p("now")}`, lastError: null, attemptCount: sql`${p("attemptCount")}`, updatedAt: sql`${p("now")}` })
      .where(and(eq(invoices.id, p("id")), inArray(invoices.status, PAYABLE))),
  ] as const;
});

/**
 * A payment settled the invoice: open | uncollectible → paid, amountPaid += the payment, nothing left due.
 * The one "invoice paid" rule, for the charge (payments/collect.ts) and the Stripe webhook (webhooks/intents.ts)
 * alike. The right precondition is "open or uncollectible", not the as-read state: a charge started on an open
 * invoice that dunning marks uncollectible while the gateway answers still pays it, and an invoice already paid or
 * voided is never paid (again) — paid is terminal, so amountPaid increments exactly once. Not strict: the payment's
 * own record must commit even when the invoice moved on (a void meanwhile is a refund case, not a lost payment);
 * the event exists only when the invoice moved.
 */
export async function invoicePaid(
  db: Db,
  inv: InvoiceRow,
  payment: { id: string; amount: number; attempt: number },
  ctx: Ctx,
  /** What the caller read with `inv` (the charge reads both in its one read): the event is built from them. */
  known: { lines?: LineRow[] | InvoiceObject["lines"]; credited?: readonly CreditedLine[] } = {},
): Promise<ChangeSet> {
  if (!PAYABLE.includes(inv.status)) return change(); // already paid or void: the payment does not touch it
  invoiceLifecycle.assertMove(inv.id, inv.status, "paid");
  const after: InvoiceRow = { ...inv, status: "paid", amountPaid: inv.amountPaid + payment.amount, amountDue: 0, paidAt: ctx.now, lastError: null, attemptCount: Math.max(inv.attemptCount, payment.attempt), updatedAt: ctx.now };
  // A credit purchase (a manual invoice of no subscription, credits/credit-purchase.ts): its pending grant becomes
  // usable in the same batch (guarded on the invoice being paid). Other invoices skip the read.
  const grants = inv.billingReason === "manual" && inv.subscriptionId === null ? await activatePurchasedGrants(db, inv.id, ctx) : { statements: [], audit: [], eventIds: [] };
  const cs = guarded(
    db,
    paidUpdate(db, { id: inv.id, amount: payment.amount, now: ctx.now, attemptCount: after.attemptCount })[0],
    [draftOf("invoice.paid", after, known.lines ?? (await invoiceLinesOf(db, inv)), { status: inv.status, amountPaid: toInvoice(inv, undefined, []).amountPaid, amountDue: toInvoice(inv, undefined, []).amountDue, paidAt: null }, known.credited ?? (await creditedLinesOfInvoice(db, inv.id)))],
    ctx,
    false,
    [{ action: "invoice.paid", targetType: "invoice", targetId: inv.id, before: { status: inv.status, amountPaid: inv.amountPaid }, after: { status: "paid", amountPaid: after.amountPaid, paymentId: payment.id } }, ...grants.audit],
    grants.statements,
  );
  return withDocument(withEvents(cs, grants.eventIds), inv.id);
}

/**
 * A collection attempt failed: the invoice stays open (status unchanged), its attempt count and last error move,
 * and invoice.payment_failed is emitted — both only while it is open.
 */
export async function invoicePaymentFailed(db: Db, inv: InvoiceRow, failure: { attempt: number; error: string }, ctx: Pick<Ctx, "now" | "requestId">): Promise<ChangeSet> {
  const after: InvoiceRow = { ...inv, attemptCount: failure.attempt, lastError: failure.error, updatedAt: ctx.now };
  return guarded(
    db,
    db.update(invoices).set({ attemptCount: failure.attempt, lastError: failure.error, updatedAt: ctx.now }).where(where(inv.id, "open")),
    inv.status === "open" ? [draftOf("invoice.payment_failed", after, await invoiceLinesOf(db, inv), { attemptCount: inv.attemptCount, lastError: inv.lastError }, await creditedLinesOfInvoice(db, inv.id))] : [],
    ctx,
    false,
    [],
  );
}

/**
 * draft | open | uncollectible → void, with the reason. Customer credit the invoice spent goes back to the customer
 * in the same batch, behind the same status guard, so it is returned exactly once however many voids race. Strict:
 * a concurrent move aborts the batch.
 */
export async function invoiceVoided(db: Db, inv: InvoiceRow, reason: string, ctx: Ctx): Promise<{ change: ChangeSet; after: InvoiceRow }> {
  invoiceLifecycle.assertMove(inv.id, inv.status, "void");
  const after: InvoiceRow = { ...inv, status: "void", voidedAt: ctx.now, voidReason: reason, amountDue: 0, updatedAt: ctx.now };
  const credit = inv.creditApplied;
  const audit: AuditEntry[] = [
    { action: "invoice.voided", targetType: "invoice", targetId: inv.id, before: { status: inv.status, amountDue: inv.amountDue }, after: { status: "void", creditReturned: credit }, reason },
  ];
  if (credit > 0) {
    audit.push({ action: "customer.credit_returned", targetType: "customer", targetId: inv.customerId, after: { invoiceId: inv.id, amountMinor: credit, currency: inv.currency }, reason: `invoice ${inv.id} voided` });
  }
  // Credit the invoice used goes back to its grants; a credit purchase's pending grant is voided with it.
  const returned = await returnCredits(db, inv, ctx);
  const purchase = await voidPurchasedGrants(db, inv.id, ctx);
  const cs = guarded(
    db,
    db.update(invoices).set({ status: "void", voidedAt: ctx.now, voidReason: reason, amountDue: 0, updatedAt: ctx.now }).where(where(inv.id, inv.status)),
    [draftOf("invoice.voided", after, await invoiceLinesOf(db, inv), { status: inv.status, amountDue: toInvoice(inv, undefined, []).amountDue, voidedAt: null, voidReason: null })],
    ctx,
    true,
    [...audit, ...purchase.audit],
    // Runs only if this batch moved the invoice to void (the assertion before it aborts otherwise).
    [...returned.statements, ...purchase.statements],
  );
  const withEvts = withEvents(cs, [...returned.eventIds, ...purchase.eventIds]);
  // A voided draft was never a document (no number): only a finalized invoice gets its VOID PDF.
  return { change: inv.status === "draft" ? withEvts : withDocument(withEvts, inv.id), after };
}

/** open → uncollectible (dunning gave up), with the reason. Strict: paid or voided meanwhile aborts the batch. */
export async function invoiceMarkedUncollectible(db: Db, inv: InvoiceRow, reason: string, ctx: Ctx): Promise<ChangeSet> {
  invoiceLifecycle.assertMove(inv.id, inv.status, "uncollectible");
  const after: InvoiceRow = { ...inv, status: "uncollectible", updatedAt: ctx.now };
  return guarded(
    db,
    db.update(invoices).set({ status: "uncollectible", updatedAt: ctx.now }).where(where(inv.id, inv.status)),
    [draftOf("invoice.marked_uncollectible", after, await invoiceLinesOf(db, inv), { status: inv.status }, await creditedLinesOfInvoice(db, inv.id))],
    ctx,
    true,
    [{ action: "invoice.marked_uncollectible", targetType: "invoice", targetId: inv.id, before: { status: inv.status }, after: { status: "uncollectible" }, reason }],
  );
}

/**
 * A credit note took `amount` off an open (or uncollectible) invoice's amount due (Stripe's rule): the UPDATE checks
 * the invoice is still in that state with at least that much due, so a concurrent payment or void aborts the batch
 * (strict). Nothing left due → paid (invoice.paid); otherwise invoice.updated. The caller's statements (the credit
 * note's insert) go in the same batch.
 */
export async function invoiceCredited(db: Db, inv: InvoiceRow, amount: number, creditNoteId: string, ctx: Ctx, noteLines: readonly CreditedLine[]): Promise<ChangeSet> {
  const due = inv.amountDue - amount;
  const to: InvoiceStatus = due === 0 ? "paid" : inv.status;
  if (to !== inv.status) invoiceLifecycle.assertMove(inv.id, inv.status, to);
  const after: InvoiceRow = { ...inv, status: to, amountDue: due, paidAt: to === "paid" ? ctx.now : inv.paidAt, dueAt: to === "paid" ? null : inv.dueAt, updatedAt: ctx.now };
  const prev = { status: inv.status, amountDue: toInvoice(inv, undefined, []).amountDue, amountDueMinor: inv.amountDue };
  const cs = guarded(
    db,
    db
      .update(invoices)
      .set({ status: to, amountDue: sql`${invoices.amountDue} - ${amount}`, paidAt: after.paidAt, dueAt: after.dueAt, updatedAt: ctx.now })
      .where(and(where(inv.id, inv.status), sql`${invoices.amountDue} >= ${amount}`)),
    [draftOf(to === "paid" ? "invoice.paid" : "invoice.updated", after, await invoiceLinesOf(db, inv), prev, [...(await creditedLinesOfInvoice(db, inv.id)), ...noteLines])],
    ctx,
    true,
    [{ action: "invoice.credited", targetType: "invoice", targetId: inv.id, before: { status: inv.status, amountDue: inv.amountDue }, after: { status: to, amountDue: due, creditNoteId } }],
  );
  return to === "paid" ? withDocument(cs, inv.id) : cs;
}

/** A voided credit note gives back what it took off a still-open invoice's amount due (strict: the invoice must still be `inv.status`). */
export async function invoiceCreditReversed(db: Db, inv: InvoiceRow, amount: number, creditNoteId: string, ctx: Ctx): Promise<ChangeSet> {
  const after: InvoiceRow = { ...inv, amountDue: inv.amountDue + amount, updatedAt: ctx.now };
  return guarded(
    db,
    db.update(invoices).set({ amountDue: sql`${invoices.amountDue} + ${amount}`, updatedAt: ctx.now }).where(where(inv.id, inv.status)),
    [draftOf("invoice.updated", after, await invoiceLinesOf(db, inv), { amountDue: toInvoice(inv, undefined, []).amountDue, amountDueMinor: inv.amountDue }, (await creditedLinesOfInvoice(db, inv.id)).filter((c) => c.creditNoteId !== creditNoteId))],
    ctx,
    true,
    [{ action: "invoice.credit_reversed", targetType: "invoice", targetId: inv.id, before: { amountDue: inv.amountDue }, after: { amountDue: after.amountDue, creditNoteId } }],
  );
}

/** The invoice owner's transitions, by name. */
export const invoiceTransitions = {
  created: invoiceCreated,
  finalized: invoiceFinalized,
  paid: invoicePaid,
  paymentFailed: invoicePaymentFailed,
  voided: invoiceVoided,
  markedUncollectible: invoiceMarkedUncollectible,
  credited: invoiceCredited,
  creditReversed: invoiceCreditReversed,
} as const;
