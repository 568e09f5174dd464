import type { Services } from "../../platform/services";
import { and, desc, eq } from "drizzle-orm";
import type { Db } from "../../db/client";
import { assertChanged, isAssertionFailure } from "../../db/assert";
import { creditNoteLines, creditNoteNumberSequences, creditNotes, invoices, payments, refunds } from "../../db/schema";
import { parseDecimal, roundDiv } from "../../domain/decimal";
import { formatMinor, toMinor } from "../../domain/money";
import { newId } from "../../lib/ids";
import type { AuditContext } from "../../platform/audit";
import { change, commit, merge, type ChangeSet } from "../../platform/change-set";
import type { FieldError } from "../../platform/errors";
import { conflict, invalid, notFound, ok, type Outcome } from "../../platform/failure";
import { invoiceCredited, invoiceCreditReversed, invoiceLineRows } from "../invoices/lifecycle";
import { creditedLinesOfInvoice } from "../invoices/creditable";
import { creditableOf } from "../../domain/creditable";
import { createPending } from "../refunds/lifecycle";
import { notRefundable, settle, type PaymentRow, type RefundRow } from "../refunds/ledger";
import { lockedFailure } from "../../gateways/guard";
import { customerCredit, grantCustomerCredit, revokeCustomerCredit } from "./customer-credit";
import { creditNoteIssued, creditNoteVoided } from "./lifecycle";
import type { creditNoteReasons } from "./serialize";

type InvoiceRow = typeof invoices.$inferSelect;
type NoteRow = typeof creditNotes.$inferSelect;
type NoteLineRow = typeof creditNoteLines.$inferSelect;
type Amount = string | number;

export type CreateCreditNoteInput = {
  invoiceId: string;
  lines: { invoiceLineId: string; amount?: Amount; quantity?: Amount }[];
  reason: (typeof creditNoteReasons)[number];
  memo?: string | null;
  refund?: { amount: Amount };
  creditBalance?: { amount: Amount };
};

const MAX_ATTEMPTS = 10;
export const creditNoteNumber = (year: number, n: number) => `CN-${year}-${String(n).padStart(6, "0")}`;
const fmt = (minor: number, currency: string) => `${formatMinor(minor, currency)} ${currency}`;

function minorOf(value: Amount, currency: string, path: string): Outcome<number, "unprocessable"> {
  const m = toMinor(value, currency);
  if (!m.ok) return invalid([{ path, message: m.error }]);
  if (m.value <= 0) return invalid([{ path, message: "must be greater than 0" }]);
  return ok(m.value);
}

/** What is left to credit on the invoice: the same computation as the invoice object's `creditable`. */
const creditableNow = async (db: Db, inv: InvoiceRow, lines?: Awaited<ReturnType<typeof invoiceLineRows>>) =>
  creditableOf(inv, lines ?? (await invoiceLineRows(db, inv)), await creditedLinesOfInvoice(db, inv.id));

/**
 * The note's lines: each credits a pre-tax `amount` of an invoice line (given, or the line's net amount × quantity
 * / line quantity, rounded half away from zero), at most what is left of the line after earlier notes, and the
 * line's tax in the same proportion (the line's last credit takes exactly the tax left, so rounding never drifts).
 */
async function priceLines(db: Db, inv: InvoiceRow, noteId: string, asked: CreateCreditNoteInput["lines"]): Promise<Outcome<NoteLineRow[], "unprocessable">> {
  const lines = await invoiceLineRows(db, inv);
  const creditable = await creditableNow(db, inv, lines);
  const errors: FieldError[] = [];
  const seen = new Set<string>();
  const out: NoteLineRow[] = [];
  asked.forEach((a, i) => {
    const path = `lines.${i}`;
    const line = lines.find((l) => l.id === a.invoiceLineId);
    if (!line) return void errors.push({ path: `${path}.invoiceLineId`, message: `is not a line of invoice ${inv.id}` });
    if (seen.has(line.id)) return void errors.push({ path: `${path}.invoiceLineId`, message: "is listed twice" });
    seen.add(line.id);
    if ((a.amount === undefined) === (a.quantity === undefined)) return void errors.push({ path, message: "give exactly one of amount or quantity" });
    const net = line.amount - line.discountAmount;
    const { amount: left, tax: taxLeft } = creditable.lines.get(line.id) ?? { amount: 0, tax: 0 };
    if (left <= 0) return void errors.push({ path: `${path}.invoiceLineId`, message: net <= 0 ? "is a credit or zero line: nothing to credit" : "is already fully credited" });
    let amount: number;
    let quantity: string | null = null;
    if (a.quantity !== undefined) {
      const q = parseDecimal(a.quantity);
      const lq = parseDecimal(line.quantity);
      if (!q.ok || q.value <= 0n) return void errors.push({ path: `${path}.quantity`, message: "must be a decimal greater than 0" });
      if (!lq.ok || lq.value <= 0n || q.value > lq.value) return void errors.push({ path: `${path}.quantity`, message: `must be at most the line's quantity ${line.quantity}` });
      amount = Number(roundDiv(BigInt(net) * q.value, lq.value));
      quantity = String(a.quantity);
    } else {
      const m = toMinor(a.amount!, inv.currency);
      if (!m.ok || m.value <= 0) return void errors.push({ path: `${path}.amount`, message: m.ok ? "must be greater than 0" : m.error });
      amount = m.value;
    }
    if (amount > left) return void errors.push({ path: `${path}.${quantity ? "quantity" : "amount"}`, message: `credits ${fmt(amount, inv.currency)}, more than the ${fmt(left, inv.currency)} left to credit on this line` });
    const tax = amount === left ? taxLeft : Number(roundDiv(BigInt(line.taxAmount) * BigInt(amount), BigInt(net)));
    out.push({ id: newId("cnli"), creditNoteId: noteId, invoiceLineId: line.id, position: i, description: line.description, quantity, amount, taxAmount: tax });
  });
  return errors.length ? invalid(errors) : ok(out);
}

/** A succeeded payment of the invoice with at least `amount` left to refund (the latest first). */
async function refundablePayment(db: Db, inv: InvoiceRow, amount: number): Promise<Outcome<PaymentRow, "unprocessable">> {
  const rows = await db.select().from(payments).where(and(eq(payments.invoiceId, inv.id), eq(payments.status, "succeeded"))).orderBy(desc(payments.createdAt)).all();
  const p = rows.find((r) => notRefundable(r) === null && r.amount - r.amountRefunded >= amount);
  if (p) return ok(p);
  const most = Math.max(0, ...rows.map((r) => r.amount - r.amountRefunded));
  return invalid([{ path: "refund.amount", message: `exceeds what the invoice's payment can still refund (${fmt(most, inv.currency)})` }]);
}

/**
 * Issues a credit note against an open or paid invoice (Stripe's semantics). Its total (Σ amount + tax) may not
 * exceed what is left to credit on the invoice (total − issued notes). Open (or uncollectible): it comes off the
 * amount due, in the note's batch (nothing left → paid). Paid: it is split between a refund (through the refund
 * ledger and the payment's gateway, admitted by PaymentGuard: frozen → 423 before anything is written) and the
 * customer's credit balance; an unsplit remainder goes to the credit balance. Numbered CN-<year>-NNNNNN, gap-free.
 * The refund is committed with the note (pending) and sent to the gateway after, so only an issued note refunds.
 */
export async function createCreditNote(
  requestS: Services,
  input: CreateCreditNoteInput,
): Promise<Outcome<{ note: NoteRow; lines: NoteLineRow[] }, "not_found" | "conflict" | "unprocessable" | "locked">> {
  const db = requestS.db;
  const inv = await db.select().from(invoices).where(eq(invoices.id, input.invoiceId)).get();
  if (!inv) return notFound("invoice", input.invoiceId);
  // A test-clock invoice is credited in the clock's time (the note and its events).
  const s = await requestS.inClockOf(inv.testClockId);
  const open = inv.status === "open" || inv.status === "uncollectible";
  if (!open && inv.status !== "paid") return conflict(`invoice ${inv.id} is ${inv.status}: credit notes apply to open or paid invoices${inv.status === "draft" ? " (edit or void a draft instead)" : ""}`, [{ path: "invoiceId", message: `is ${inv.status}` }]);
  const id = newId("cn");
  const priced = await priceLines(db, inv, id, input.lines);
  if (!priced.ok) return priced;
  const lines = priced.value;
  const subtotal = lines.reduce((s, l) => s + l.amount, 0);
  const tax = lines.reduce((s, l) => s + l.taxAmount, 0);
  const total = subtotal + tax;
  const left = (await creditableNow(db, inv)).total;
  if (total > left) {
    return invalid([{ path: "lines", message: `total ${fmt(total, inv.currency)} exceeds the invoice's remaining creditable amount ${fmt(left, inv.currency)}` }]);
  }

  let refundAmount = 0;
  let balanceAmount = 0;
  if (open) {
    if (input.refund || input.creditBalance) return invalid([{ path: input.refund ? "refund" : "creditBalance", message: `invoice ${inv.id} is ${inv.status}: the note comes off its amount due; refunds and credit balance apply to paid invoices` }]);
    if (total > inv.amountDue) return invalid([{ path: "lines", message: `total ${fmt(total, inv.currency)} exceeds the invoice's amount due ${fmt(inv.amountDue, inv.currency)}` }]);
  } else {
    const refunded = input.refund ? minorOf(input.refund.amount, inv.currency, "refund.amount") : ok(0);
    if (!refunded.ok) return refunded;
    refundAmount = refunded.value;
    const credited = input.creditBalance ? minorOf(input.creditBalance.amount, inv.currency, "creditBalance.amount") : ok(total - refundAmount);
    if (!credited.ok) return credited;
    balanceAmount = credited.value;
    if (refundAmount + balanceAmount !== total) {
      return invalid([{ path: input.creditBalance ? "creditBalance.amount" : "refund.amount", message: `refund ${fmt(refundAmount, inv.currency)} + credit balance ${fmt(balanceAmount, inv.currency)} must equal the note's total ${fmt(total, inv.currency)}` }]);
    }
    if (balanceAmount > 0) {
      const credit = await customerCredit(db, inv.customerId);
      if (credit && credit.currency !== inv.currency) return invalid([{ path: "creditBalance", message: `the customer's credit balance is in ${credit.currency}, the invoice in ${inv.currency}: refund instead` }]);
    }
    if (refundAmount > 0) {
      const payable = await refundablePayment(db, inv, refundAmount);
      if (!payable.ok) return payable;
    }
  }

  // The note and its refund (pending, its amount reserved on the payment) are committed in one batch that re-checks
  // the invoice's creditable amount; only then does the refund go to the gateway. A note that loses a race therefore
  // never moved money. PaymentGuard admits the refund before anything is written (frozen or queue mode: 423, no note).
  if (refundAmount === 0) return issue(s, inv, id, input, lines, { open, refundAmount, balanceAmount }, null);
  const refundId = newId("re");
  const admitted = await s.guard.withAdmission(`refund ${refundId} (credit note ${id})`, async (held) => {
    const issued = await issue(s, inv, id, input, lines, { open, refundAmount, balanceAmount }, refundId);
    if (!issued.ok) return issued;
    // After commit: the gateway refund through the refund ledger. No answer → the refund stays pending and the hourly
    // sweep asks again with its own key; a decline → the refund fails (reservation given back) and the note, which
    // then refunded nothing, can be voided.
    await settle(s, issued.value.refund!, issued.value.payment!, "keep", held);
    return issued;
  });
  if (!admitted.admitted) return lockedFailure(admitted);
  if (!admitted.value.ok) return admitted.value;
  return ok({ note: admitted.value.value.note, lines: admitted.value.value.lines });
}

type Split = { open: boolean; refundAmount: number; balanceAmount: number };

/**
 * Writes the note in one batch: its number, rows, what it does (invoice credited, customer credit, refund reserved)
 * and a statement that aborts the batch when the invoice's issued notes would total more than the invoice. An
 * aborted batch (another note took the number or the creditable amount) is retried after checking again.
 */
async function issue(
  s: Services,
  inv: InvoiceRow,
  id: string,
  input: CreateCreditNoteInput,
  lines: NoteLineRow[],
  split: Split,
  refundId: string | null,
): Promise<Outcome<{ note: NoteRow; lines: NoteLineRow[]; refund: RefundRow | null; payment: PaymentRow | null }, "conflict" | "unprocessable">> {
  const { db, audit: ctx } = s;
  const { open, refundAmount, balanceAmount } = split;
  const subtotal = lines.reduce((s, l) => s + l.amount, 0);
  const tax = lines.reduce((s, l) => s + l.taxAmount, 0);
  const total = subtotal + tax;
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    const fresh = (await db.select().from(invoices).where(eq(invoices.id, inv.id)).get())!;
    // Lines priced before a lost race: check them again (a concurrent note may have credited the same line).
    if (attempt > 1) {
      const repriced = await priceLines(db, fresh, id, input.lines);
      if (!repriced.ok) return repriced;
      if (repriced.value.some((l, i) => l.amount !== lines[i]!.amount || l.taxAmount !== lines[i]!.taxAmount)) return conflict(`invoice ${inv.id}'s lines were credited concurrently while the note was being issued (nothing was written); reload it`);
    }
    const left = (await creditableNow(db, fresh)).total;
    if (total > left) {
      return invalid([{ path: "lines", message: `total ${fmt(total, inv.currency)} exceeds the invoice's remaining creditable amount ${fmt(left, inv.currency)}` }]);
    }
    const year = new Date(ctx.now).getUTCFullYear();
    const last = (await db.select().from(creditNoteNumberSequences).where(eq(creditNoteNumberSequences.year, year)).get())?.lastNumber ?? 0;
    const note: NoteRow = {
      id,
      number: creditNoteNumber(year, last + 1),
      invoiceId: inv.id,
      customerId: inv.customerId,
      status: "issued",
      currency: inv.currency,
      reason: input.reason,
      memo: input.memo ?? null,
      subtotal,
      tax,
      total,
      invoiceCreditAmount: open ? total : 0,
      refundAmount,
      refundId,
      creditBalanceAmount: balanceAmount,
      taxJurisdiction: inv.taxJurisdiction,
      taxRate: inv.taxRate,
      voidedAt: null,
      createdBy: ctx.actor.id,
      createdAt: ctx.now,
      updatedAt: ctx.now,
    };
    if (open && (fresh.status !== inv.status || fresh.amountDue < total)) return conflict(`invoice ${inv.id} changed (now ${fresh.status}, ${fmt(fresh.amountDue, inv.currency)} due) while the note was being issued; reload it`);
    const effects: ChangeSet[] = [];
    if (open) effects.push(await invoiceCredited(db, fresh, total, id, ctx, lines));
    if (balanceAmount > 0) effects.push(grantCustomerCredit(db, inv.customerId, balanceAmount, inv.currency, { creditNoteId: id }));
    let refund: RefundRow | null = null;
    let payment: PaymentRow | null = null;
    if (refundId) {
      const payable = await refundablePayment(db, inv, refundAmount);
      if (!payable.ok) return payable;
      payment = payable.value;
      refund = pendingRefund(refundId, payment, refundAmount, ctx);
      effects.push(createPending(db, refund, payment, ctx));
    }
    const numbering = change({
      statements: [
        db.insert(creditNoteNumberSequences).values({ year, lastNumber: 0 }).onConflictDoNothing(),
        db.update(creditNoteNumberSequences).set({ lastNumber: last + 1 }).where(and(eq(creditNoteNumberSequences.year, year), eq(creditNoteNumberSequences.lastNumber, last))),
        assertChanged(db),
      ],
    });
    const cs = merge(numbering, creditNoteIssued(db, note, lines, merge(...effects), ctx));
    cs.after.push(() => s.queues.jobs.send({ type: "credit_note.document", creditNoteId: id }).catch(() => undefined));
    try {
      await commit(db, cs, ctx);
      return ok({ note, lines, refund, payment });
    } catch (e) {
      if (!isAssertionFailure(e)) throw e;
      // Another note took the number or the creditable amount, a refund the payment's balance, or the invoice moved:
      // look again (the loop re-checks all of them).
    }
  }
  return conflict(`credit note for invoice ${inv.id} could not be issued after ${MAX_ATTEMPTS} attempts (nothing was written); try again`);
}

/** The refund row a paid invoice's note reserves (pending; its key is its id, so a retry never refunds twice). */
function pendingRefund(id: string, payment: PaymentRow, amount: number, ctx: AuditContext): RefundRow {
  return {
    id,
    paymentId: payment.id,
    amount,
    currency: payment.currency,
    reason: "credit_note",
    status: "pending",
    gateway: payment.gateway,
    gatewayRefundId: null,
    idempotencyKey: id,
    failureMessage: null,
    notify: false,
    bulkId: null,
    createdBy: ctx.actor.id,
    createdAt: ctx.now,
    updatedAt: ctx.now,
  };
}

/**
 * issued → void, undoing what the note did while none of it has been used: the amount due goes back on a still
 * open invoice, the credit granted is taken back from a balance that still holds it. A note that refunded money,
 * or whose invoice has since been paid or voided, or whose credit was spent, stays issued (409 saying which).
 */
export async function voidCreditNote(s: Services, id: string): Promise<Outcome<NoteRow, "not_found" | "conflict">> {
  const { db } = s;
  const note = await db.select().from(creditNotes).where(eq(creditNotes.id, id)).get();
  if (!note) return notFound("credit note", id);
  const ctx = (await s.inClockOfInvoice(note.invoiceId)).audit;
  const lines = await db.select().from(creditNoteLines).where(eq(creditNoteLines.creditNoteId, id)).all();
  if (note.status === "issued") {
    // A refund the gateway declined returned nothing: such a note can be voided (and issued again as credit).
    const refund = note.refundId ? await db.select({ status: refunds.status }).from(refunds).where(eq(refunds.id, note.refundId)).get() : undefined;
    if (note.refundAmount > 0 && refund?.status !== "failed") return conflict(`credit note ${note.number} refunded ${fmt(note.refundAmount, note.currency)} (refund ${note.refundId}): a refund cannot be undone, so the note stays`, [{ path: "status", message: "applied (refunded)" }]);
    const effects: ChangeSet[] = [];
    if (note.invoiceCreditAmount > 0) {
      const inv = (await db.select().from(invoices).where(eq(invoices.id, note.invoiceId)).get())!;
      if (inv.status !== "open" && inv.status !== "uncollectible") return conflict(`credit note ${note.number} was applied: invoice ${inv.id} is ${inv.status} since`, [{ path: "status", message: "applied" }]);
      effects.push(await invoiceCreditReversed(db, inv, note.invoiceCreditAmount, note.id, ctx));
    }
    if (note.creditBalanceAmount > 0) {
      const credit = await customerCredit(db, note.customerId);
      if (!credit || credit.amount < note.creditBalanceAmount) return conflict(`credit note ${note.number} was applied: the customer has used the credit it granted`, [{ path: "status", message: "applied (credit used)" }]);
      effects.push(revokeCustomerCredit(db, note.customerId, note.creditBalanceAmount, note.currency, { creditNoteId: note.id }));
    }
    const { change: cs, after } = creditNoteVoided(db, note, lines, merge(...effects), ctx);
    try {
      await commit(db, cs, ctx);
    } catch (e) {
      if (isAssertionFailure(e)) return conflict(`credit note ${note.number} or what it credited changed concurrently; reload it`);
      throw e;
    }
    return ok(after);
  }
  creditNoteVoided(db, note, lines, change(), ctx); // throws IllegalTransition (409) for a void note
  return ok(note);
}

export async function creditNoteWithLines(db: Db, id: string): Promise<Outcome<{ note: NoteRow; lines: NoteLineRow[] }, "not_found">> {
  const note = await db.select().from(creditNotes).where(eq(creditNotes.id, id)).get();
  if (!note) return notFound("credit note", id);
  return ok({ note, lines: await db.select().from(creditNoteLines).where(eq(creditNoteLines.creditNoteId, id)).all() });
}
