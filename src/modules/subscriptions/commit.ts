import type { BatchItem } from "drizzle-orm/batch";
import type { Db } from "../../db/client";
import type { AuditContext, AuditEntry } from "../../platform/audit";
import { isAssertionFailure, isUniqueViolation } from "../../db/assert";
import type { subscriptions } from "../../db/schema";
import { commit } from "../../platform/change-set";
import { subscriptionChange } from "./transitions";

type SubscriptionRow = typeof subscriptions.$inferSelect;

/**
 * Every change to a subscription, through its lifecycle owner (`subscriptionChange`: the declared move, the
 * guarded update, the event): applies `patch` only to the row as read, with `extra` statements and the audit rows
 * in the same batch. False when another writer moved the row first, or the invoice this change writes already
 * exists (a concurrent run did the same work). Throws `IllegalTransition` for a status move the table forbids.
 */
export async function commitSubscriptionChange(db: Db, sub: SubscriptionRow, patch: Partial<SubscriptionRow>, extra: BatchItem<"sqlite">[], audit: AuditEntry[], ctx: AuditContext): Promise<boolean> {
  return (await commitSubscriptionChangeReading(db, sub, patch, extra, audit, ctx)) !== null;
}

/**
 * The same, answering the batch's results (statements first, in order: the subscription's update and its assertion,
 * then `extra`), or null where `commitSubscriptionChange` answers false.
 */
export async function commitSubscriptionChangeReading(db: Db, sub: SubscriptionRow, patch: Partial<SubscriptionRow>, extra: BatchItem<"sqlite">[], audit: AuditEntry[], ctx: AuditContext): Promise<unknown[] | null> {
  const cs = subscriptionChange(db, sub, patch, { statements: extra, audit }, ctx);
  try {
    return (await commit(db, cs, ctx)).results;
  } catch (e) {
    if (isAssertionFailure(e) || isUniqueViolation(e, "invoices.generation_key")) return null;
    throw e;
  }
}
