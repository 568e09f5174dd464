import { and, eq, isNull, lt, sql } from "drizzle-orm";
import type { Db } from "../db/client";
import { taskContinuations } from "../db/schema";

/**
 * How long a claim whose message was not marked sent belongs to its claimant: past it, the claimant is taken to have
 * died between claim and send, and a redelivery of the same step takes the claim over and sends.
 */
export const CLAIM_LEASE_MS = 30_000;

/** Another delivery holds the claim and may be sending right now: retry this message later (it finds the step sent, or takes it over). */
export class StepBusy extends Error {
  constructor(key: string) {
    super(`the next step of ${key} is being sent by another delivery; retry later`);
  }
}

/**
 * Sends a chain's next message once per step. Queues deliver at least once: a step's message delivered twice runs
 * the step twice (harmless, each is idempotent), and without a claim both would send the next step, forking the chain
 * into two that do every later step twice. `key` names the chain and the step to come (never the cursor: a set that
 * shrinks meanwhile gives a redelivery another cursor).
 *
 * The claim is taken before the send and marked sent after it. A duplicate finds it sent (`"duplicate"`); finds it
 * held within the lease and throws `StepBusy`, so its message is retried; or finds it held past the lease and takes it
 * over and sends (its claimant died between claim and send: without this the chain would end there). A failed send
 * gives the claim back and throws, so the retried delivery sends.
 */
export async function sendOnce(db: Db, key: string, now: number, send: () => Promise<void>): Promise<"sent" | "duplicate"> {
  if (!(await claim(db, key, now))) {
    const row = await db.select({ sentAt: taskContinuations.sentAt }).from(taskContinuations).where(eq(taskContinuations.key, key)).get();
    if (!row || row.sentAt !== null) return "duplicate";
    throw new StepBusy(key);
  }
  try {
    await send();
  } catch (e) {
    await db
      .delete(taskContinuations)
      .where(eq(taskContinuations.key, key))
      .catch((err: unknown) => console.log(JSON.stringify({ level: "error", msg: "giving a step's claim back failed; a redelivery takes it over after the lease", key, error: String(err) })));
    throw e;
  }
  // A failed mark leaves the claim to expire: a redelivery past the lease sends the step again (a duplicate message,
  // which the next step's claim collapses).
  await db
    .update(taskContinuations)
    .set({ sentAt: now })
    .where(eq(taskContinuations.key, key))
    .catch((err: unknown) => console.log(JSON.stringify({ level: "warn", msg: "marking a step sent failed", key, error: String(err) })));
  return "sent";
}

/** The claim, new or taken over from a claimant past its lease that never marked it sent. */
async function claim(db: Db, key: string, now: number): Promise<boolean> {
  const fresh = await db.insert(taskContinuations).values({ key, createdAt: now, sentAt: null }).onConflictDoNothing().returning({ key: taskContinuations.key });
  if (fresh.length) return true;
  const taken = await db
    .update(taskContinuations)
    .set({ createdAt: now })
    .where(and(eq(taskContinuations.key, key), isNull(taskContinuations.sentAt), lt(taskContinuations.createdAt, now - CLAIM_LEASE_MS)))
    .returning({ key: taskContinuations.key });
  return taken.length > 0;
}

/** The key of step `step` of a chain (`chain`: what tells it from every other chain). */
export const stepKey = (chain: string, step: number) => `${chain}|${step}`;

/** Claims older than `before`, at most `max` a call (one statement); `more` when a full page went. */
export async function sweepContinuations(db: Db, before: number, max = 5_000): Promise<{ deleted: number; more: boolean }> {
  const r = await db.run(
    sql`DELETE FROM ${taskContinuations} WHERE rowid IN (SELECT rowid FROM ${taskContinuations} WHERE ${lt(taskContinuations.createdAt, before)} LIMIT ${max})`,
  );
  const deleted = r.meta.changes ?? 0;
  return { deleted, more: deleted === max };
}
