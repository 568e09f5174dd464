import { and, desc, eq, gt, isNull, max } from "drizzle-orm";
import type { Services } from "../../platform/services";
import type { Db } from "../../db/client";
import { retentionArchives, retentionKinds, retentionRuns, type RetentionKind } from "../../db/schema";
import { newId } from "../../lib/ids";
import { invalid, ok, type Outcome } from "../../platform/failure";
import { DAY_MS } from "../../lib/time";
import type { TaskMessage } from "../../../queues/messages";
import { cutoffOf, getRetentionPolicy } from "./policy";
import { pageOf } from "./kinds";

/** Pages per tasks-queue message (one invocation): a few D1 queries and R2 calls each, whatever the table sizes. */
export const PAGES_PER_MESSAGE = 5;
/** A run still unfinished after this long is taken as lost (its message dead-lettered); a new run may start. */
const STALE_RUN_MS = DAY_MS;

export type RetentionRun = typeof retentionRuns.$inferSelect;
type RunMessage = Extract<TaskMessage, { type: "retention.run" }>;

/**
 * Starts a run at `now` (the daily cron, or POST /admin/retention/run): one row, then the first message on the
 * tasks queue. A run already in progress is returned instead of starting a second one. The cron does nothing when
 * the policy is disabled; the API runs anyway.
 */
export async function startRetentionRun(s: Services, trigger: "cron" | "api", now: number): Promise<{ run: RetentionRun | null; started: boolean }> {
  const { db } = s;
  if (trigger === "cron" && !(await getRetentionPolicy(db)).enabled) return { run: null, started: false };
  const running = await db
    .select()
    .from(retentionRuns)
    .where(and(isNull(retentionRuns.finishedAt), gt(retentionRuns.startedAt, now - STALE_RUN_MS)))
    .orderBy(desc(retentionRuns.startedAt))
    .get();
  if (running) return { run: running, started: false };
  const run: RetentionRun = { id: newId("ret"), trigger, now, startedAt: now, finishedAt: null, currentKind: retentionKinds[0], error: null };
  await db.insert(retentionRuns).values(run);
  await s.queues.tasks.send({ type: "retention.run", runId: run.id, kind: retentionKinds[0], after: null });
  return { run, started: true };
}

/**
 * One message of a run: up to PAGES_PER_MESSAGE pages of one kind, then the next message (the same kind from its
 * cursor, or the next kind). Redelivery is safe: a page whose rows already left D1 is not read again, and a page
 * archived but not deleted is rebuilt identically (same rows, same key, same bytes).
 */
export async function continueRetentionRun(s: Services, m: RunMessage): Promise<{ archived: number; next: RunMessage | null }> {
  const { env, db } = s;
  const run = await db.select().from(retentionRuns).where(eq(retentionRuns.id, m.runId)).get();
  if (!run || run.finishedAt !== null) return { archived: 0, next: null };
  const policy = await getRetentionPolicy(db);
  const cutoff = cutoffOf(policy, m.kind, run.now);
  let after = m.after;
  let archived = 0;
  let done = false;
  try {
    for (let i = 0; i < PAGES_PER_MESSAGE && !done; i++) {
      const r = await pageOf[m.kind]({ env, db, runId: run.id, now: run.now, cutoff, after });
      archived += r.archived;
      after = r.cursor;
      done = r.done;
    }
  } catch (e) {
    await db.update(retentionRuns).set({ error: `${m.kind}: ${String(e)}` }).where(eq(retentionRuns.id, run.id));
    throw e;
  }
  const nextKind = done ? retentionKinds[retentionKinds.indexOf(m.kind) + 1] : m.kind;
  const next: RunMessage | null = nextKind ? { type: "retention.run", runId: run.id, kind: nextKind as RetentionKind, after: done ? null : after } : null;
  if (next) {
    await db.update(retentionRuns).set({ currentKind: next.kind, error: null }).where(eq(retentionRuns.id, run.id));
    await s.queues.tasks.send(next);
  } else {
    await db.update(retentionRuns).set({ currentKind: null, finishedAt: s.clock.wall, error: null }).where(eq(retentionRuns.id, run.id));
  }
  s.log.info("retention page", { runId: run.id, kind: m.kind, archived, done });
  return { archived, next };
}

/** Time of the newest row of `kind` moved to R2 (null: none yet). Reads over older times must say the data moved. */
export async function archivedThrough(db: Db, kind: RetentionKind): Promise<number | null> {
  const r = await db.select({ t: max(retentionArchives.toAt) }).from(retentionArchives).where(eq(retentionArchives.kind, kind)).get();
  return r?.t ?? null;
}

/**
 * Refuses (422) a report window starting at or before the newest archived row of `kinds`: its rows left D1, so the
 * report would silently count less. Windows after that read only what stays in D1 and are exact.
 */
export async function retained(db: Db, kinds: RetentionKind[], from: number, what: string): Promise<Outcome<void, "unprocessable">> {
  for (const kind of kinds) {
    const through = await archivedThrough(db, kind);
    if (through !== null && from <= through) {
      return invalid(
        [{ path: "from", message: `must be after ${new Date(through).toISOString()} (archived)` }],
        `${what} reads ${kind.replace("_", " ")} from ${new Date(from).toISOString()}, but rows up to ${new Date(through).toISOString()} were archived to R2 by the retention policy: choose a window starting after that (the archives: GET /admin/retention/archives?kind=${kind})`,
      );
    }
  }
  return ok(undefined);
}

