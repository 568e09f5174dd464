import { and, desc, eq, sql } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type { Actor } from "../env";
import { auditLog, idempotencyKeys } from "./schema";
import type { Db } from "./client";
import { canonicalJson, sha256Hex } from "../lib/hash";
import { newId } from "../lib/ids";

export type AuditEntry = {
  action: string;
  targetType: string;
  targetId: string;
  before?: unknown;
  after?: unknown;
  reason?: string;
};

/** `idempotencyKey`: the request's scoped key; the change's batch marks it committed, so a retry never re-applies it. */
export type AuditContext = { actor: Actor; requestId?: string; now: number; idempotencyKey?: string };

export const GENESIS_HASH = "0".repeat(64);

type AuditRow = typeof auditLog.$inferSelect;

/** The exact bytes each row's hash covers: every column except the hash itself. */
export function auditRowPayload(row: Omit<AuditRow, "hash">): string {
  return canonicalJson({
    seq: row.seq,
    id: row.id,
    at: row.at,
    actor: row.actor,
    actorRole: row.actorRole,
    action: row.action,
    targetType: row.targetType,
    targetId: row.targetId,
    requestId: row.requestId,
    before: row.before,
    after: row.after,
    reason: row.reason,
    prevHash: row.prevHash,
  });
}

export async function auditRowHash(row: Omit<AuditRow, "hash">): Promise<string> {
  return sha256Hex(row.prevHash + auditRowPayload(row));
}

const MAX_ATTEMPTS = 25;

/**
 * Runs `statements` and their audit rows in one D1 batch (one transaction).
 * Each audit row takes the next `seq` explicitly; a concurrent writer that took it first makes the
 * whole batch fail on the primary key, and we rebuild the chain on the new tail and try again.
 */
export async function commitWithAudit(
  db: Db,
  statements: BatchItem<"sqlite">[],
  entries: AuditEntry[],
  ctx: AuditContext,
): Promise<unknown[]> {
  for (let attempt = 1; ; attempt++) {
    const tail = await db.select({ seq: auditLog.seq, hash: auditLog.hash }).from(auditLog).orderBy(desc(auditLog.seq)).limit(1).get();
    let seq = tail?.seq ?? 0;
    let prevHash = tail?.hash ?? GENESIS_HASH;
    const rows: AuditRow[] = [];
    for (const e of entries) {
      seq += 1;
      const row = {
        seq,
        id: newId("aud"),
        at: ctx.now,
        actor: ctx.actor.id,
        actorRole: ctx.actor.role,
        action: e.action,
        targetType: e.targetType,
        targetId: e.targetId,
        requestId: ctx.requestId ?? null,
        before: e.before === undefined ? null : canonicalJson(e.before),
        after: e.after === undefined ? null : canonicalJson(e.after),
        reason: e.reason ?? null,
        prevHash,
      };
      const hash = await auditRowHash(row);
      rows.push({ ...row, hash });
      prevHash = hash;
    }
    const all = [...statements, ...rows.map((r) => db.insert(auditLog).values(r))];
    if (ctx.idempotencyKey) {
      all.push(db.update(idempotencyKeys).set({ state: "committed" }).where(and(eq(idempotencyKeys.scopedKey, ctx.idempotencyKey), eq(idempotencyKeys.state, "in_flight"))));
    }
    if (all.length === 0) return [];
    try {
      return await db.batch(all as [BatchItem<"sqlite">, ...BatchItem<"sqlite">[]]);
    } catch (e) {
      const lost = String(e).includes("audit_log.seq") || String((e as { cause?: unknown }).cause).includes("audit_log.seq");
      if (!lost || attempt >= MAX_ATTEMPTS) throw e;
      console.log(JSON.stringify({ level: "warn", msg: "audit seq conflict", attempt, requestId: ctx.requestId }));
      // Another writer took the chain's next row: back off with jitter so concurrent writers spread out.
      await new Promise((r) => setTimeout(r, Math.random() * Math.min(200, 5 * 2 ** attempt)));
    }
  }
}

/** Used by verification: all rows in chain order, paged to keep memory flat. */
export async function* auditRowsInOrder(db: Db, pageSize = 500): AsyncGenerator<AuditRow> {
  let after = 0;
  for (;;) {
    const page = await db.select().from(auditLog).where(sql`${auditLog.seq} > ${after}`).orderBy(auditLog.seq).limit(pageSize).all();
    for (const row of page) yield row;
    if (page.length < pageSize) return;
    after = page[page.length - 1]!.seq;
  }
}
