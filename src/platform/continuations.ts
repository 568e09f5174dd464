import { eq, lt, sql } from "drizzle-orm";
import type { Db } from "../db/client";
import { taskContinuations } from "../db/schema";

/**
 * Claims the sending of a chain's next message (`key` names the chain and the step to come): true for the first
 * claim, false for every later one. Queues deliver at least once: a page's message delivered twice runs the page
 * twice (harmless, each page is idempotent), and without the claim both runs would send the next page, forking the
 * chain into two that do every later page twice.
 */
export async function claimContinuation(db: Db, key: string, now: number): Promise<boolean> {
  const rows = await db.insert(taskContinuations).values({ key, createdAt: now }).onConflictDoNothing().returning({ key: taskContinuations.key });
  return rows.length > 0;
}

/** Gives a claim back (its send failed), so the retried delivery claims and sends it. */
export async function releaseContinuation(db: Db, key: string): Promise<void> {
  await db.delete(taskContinuations).where(eq(taskContinuations.key, key));
}

/** Claims older than `before`, at most `max` a call (one statement); `more` when a full page went. */
export async function sweepContinuations(db: Db, before: number, max = 5_000): Promise<{ deleted: number; more: boolean }> {
  const r = await db.run(
    sql`DELETE FROM ${taskContinuations} WHERE rowid IN (SELECT rowid FROM ${taskContinuations} WHERE ${lt(taskContinuations.createdAt, before)} LIMIT ${max})`,
  );
  const deleted = r.meta.changes ?? 0;
  return { deleted, more: deleted === max };
}

/**
 * Sends a chain's next message once per step: `key` names the chain and its next step (for keyset chains, the
 * message itself: a step's cursor only moves forward). A duplicate delivery of a step finds the claim taken and sends
 * nothing; a failed send gives the claim back and throws, so the retried delivery sends it. Answers whether this
 * call sent it.
 */
export async function sendOnce(db: Db, key: string, now: number, send: () => Promise<void>): Promise<boolean> {
  if (!(await claimContinuation(db, key, now))) return false;
  try {
    await send();
  } catch (e) {
    await releaseContinuation(db, key).catch(() => undefined);
    throw e;
  }
  return true;
}
