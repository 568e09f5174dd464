import { and, eq } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type { Db } from "../../db/client";
import { commitWithAudit, type AuditContext, type AuditEntry } from "../../db/audit";
import { assertChanged, isAssertionFailure, isUniqueViolation } from "../../db/assert";
import { subscriptions } from "../../db/schema";

type SubscriptionRow = typeof subscriptions.$inferSelect;

/**
 * Every change to a subscription: applies `patch` only to the row as read (its configVersion, bumped here so the
 * meter learns of it), with `extra` statements and the audit rows in the same batch. False when another writer
 * moved the row first, or the invoice this change writes already exists (a concurrent run did the same work).
 */
export async function commitSubscriptionChange(db: Db, sub: SubscriptionRow, patch: Partial<SubscriptionRow>, extra: BatchItem<"sqlite">[], audit: AuditEntry[], ctx: AuditContext): Promise<boolean> {
  try {
    await commitWithAudit(
      db,
      [
        db
          .update(subscriptions)
          .set({ ...patch, configVersion: sub.configVersion + 1, updatedAt: ctx.now })
          .where(and(eq(subscriptions.id, sub.id), eq(subscriptions.configVersion, sub.configVersion))),
        assertChanged(db),
        ...extra,
      ],
      audit,
      ctx,
    );
    return true;
  } catch (e) {
    if (isAssertionFailure(e) || isUniqueViolation(e, "invoices.generation_key")) return false;
    throw e;
  }
}
