import type { BatchItem } from "drizzle-orm/batch";
import type { Db } from "../db/client";
import { commitWithAudit, type AuditContext, type AuditEntry } from "./audit";
import { eventInserts, eventRow, eventsCommitted, inClockTime, type EventDraft, type EventRow } from "./events";

/**
 * What a transition produces: the guarded statements, the audit rows, the events (outbox), and effects that run
 * only after the batch committed (queue sends, meter pushes). `commit()` writes the first three in one D1 batch.
 */
export type ChangeSet = {
  statements: BatchItem<"sqlite">[];
  audit: AuditEntry[];
  events: EventDraft[];
  after: Array<() => Promise<unknown>>;
};

export const change = (parts: Partial<ChangeSet> = {}): ChangeSet => ({
  statements: parts.statements ?? [],
  audit: parts.audit ?? [],
  events: parts.events ?? [],
  after: parts.after ?? [],
});

/** Several change sets as one (written in one batch, effects in order). */
export function merge(...sets: ChangeSet[]): ChangeSet {
  return change({
    statements: sets.flatMap((s) => s.statements),
    audit: sets.flatMap((s) => s.audit),
    events: sets.flatMap((s) => s.events),
    after: sets.flatMap((s) => s.after),
  });
}

/**
 * Writes the change set in one D1 batch (statements, then events, then audit rows) and then runs its effects.
 * Returns the batch results, statements first in the order given, and the events written.
 */
export async function commit(db: Db, cs: ChangeSet, ctx: AuditContext): Promise<{ results: unknown[]; events: EventRow[] }> {
  // A context at the request's wall clock stamps events about test-clock objects in their clock's time (its `clockOf`:
  // every context made by the services context has one; a hand-made one without it stamps its own `now`).
  const rows = (ctx.wallClock === ctx.now && ctx.clockOf ? await inClockTime(ctx.clockOf, cs.events) : cs.events).map((e) => eventRow(e, ctx));
  const results = await commitWithAudit(db, [...cs.statements, ...eventInserts(db, rows)], cs.audit, ctx);
  eventsCommitted(rows.map((r) => r.id), rows.map((r) => r.type));
  for (const effect of cs.after) await effect();
  return { results, events: rows };
}
