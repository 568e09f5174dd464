import { and, eq, sql } from "drizzle-orm";
import { assertChanged } from "../../db/assert";
import type { Db } from "../../db/client";
import { batchAssertions, creditNoteLines, creditNotes, invoices, type CreditNoteStatus } from "../../db/schema";
import { defineLifecycle } from "../../domain/lifecycle";
import type { AuditContext } from "../../platform/audit";
import { change, type ChangeSet } from "../../platform/change-set";
import { eventInsertIfChanged, eventRow, eventsCommitted, type EventDraft } from "../../platform/events";
import { toCreditNote } from "./serialize";

type NoteRow = typeof creditNotes.$inferSelect;
type LineRow = typeof creditNoteLines.$inferSelect;

/**
 * The credit note lifecycle (owner: this module). A note is issued in one batch with everything it does (amount
 * due reduced, refund recorded, credit granted); it can be voided while nothing it did has been used (see
 * service.ts), which undoes it. Void is terminal.
 */
export const creditNoteLifecycle = defineLifecycle<CreditNoteStatus>("credit_note", {
  issued: ["void"],
  void: [],
});

const draftOf = (type: EventDraft["type"], note: NoteRow, lines: LineRow[], previousAttributes: Record<string, unknown> | null): EventDraft => ({
  type,
  objectType: "credit_note",
  objectId: note.id,
  customerId: note.customerId,
  object: toCreditNote(note, lines),
  previousAttributes,
});

/**
 * A new issued note: its row and lines, then a statement that aborts the batch when the invoice's issued notes
 * would now total more than the invoice (so concurrent notes cannot over-credit it), its audit row and its
 * credit_note.created event. `with` carries the statements of what it does (invoice credited, customer credit).
 */
export function creditNoteIssued(db: Db, note: NoteRow, lines: LineRow[], withChanges: ChangeSet, ctx: AuditContext): ChangeSet {
  // A parameterised raw statement has no prepared D1 statement in drizzle's batch: insert … select instead.
  const overCredited = db.insert(batchAssertions).select(
    sql`SELECT 0 WHERE (SELECT COALESCE(SUM(${creditNotes.total}), 0) FROM ${creditNotes} WHERE ${creditNotes.invoiceId} = ${note.invoiceId} AND ${creditNotes.status} = 'issued') > (SELECT ${invoices.total} FROM ${invoices} WHERE ${invoices.id} = ${note.invoiceId})`,
  );
  return change({
    statements: [db.insert(creditNotes).values(note), ...(lines.length ? [db.insert(creditNoteLines).values(lines)] : []), overCredited, ...withChanges.statements],
    audit: [
      {
        action: "credit_note.created",
        targetType: "credit_note",
        targetId: note.id,
        after: { number: note.number, invoiceId: note.invoiceId, total: note.total, tax: note.tax, invoiceCredit: note.invoiceCreditAmount, refund: note.refundAmount, refundId: note.refundId, creditBalance: note.creditBalanceAmount, currency: note.currency, reason: note.reason },
      },
      ...withChanges.audit,
    ],
    events: [draftOf("credit_note.created", note, lines, null), ...withChanges.events],
    after: withChanges.after,
  });
}

/** issued → void (strict: a concurrent void aborts the batch), with what undoing it takes (`withChanges`). */
export function creditNoteVoided(db: Db, note: NoteRow, lines: LineRow[], withChanges: ChangeSet, ctx: AuditContext): { change: ChangeSet; after: NoteRow } {
  creditNoteLifecycle.assertMove(note.id, note.status, "void");
  const after: NoteRow = { ...note, status: "void", voidedAt: ctx.now, updatedAt: ctx.now };
  const row = eventRow(draftOf("credit_note.voided", after, lines, { status: note.status, voidedAt: null }), ctx);
  return {
    change: change({
      statements: [
        db.update(creditNotes).set({ status: "void", voidedAt: ctx.now, updatedAt: ctx.now }).where(and(eq(creditNotes.id, note.id), eq(creditNotes.status, note.status))),
        eventInsertIfChanged(db, row),
        assertChanged(db),
        ...withChanges.statements,
      ],
      audit: [{ action: "credit_note.voided", targetType: "credit_note", targetId: note.id, before: { status: note.status }, after: { status: "void" } }, ...withChanges.audit],
      events: withChanges.events,
      after: [async () => eventsCommitted([row.id]), ...withChanges.after],
    }),
    after,
  };
}
