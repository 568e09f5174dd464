import { and, eq, lt, or } from "drizzle-orm";
import type { Db } from "../../db/client";
import { commitWithAudit, type AuditContext } from "../../platform/audit";
import { assertChanged, isAssertionFailure } from "../../db/assert";
import { subscriptions, testClocks } from "../../db/schema";
import { ApiError, invalid, notFound } from "../../platform/errors";
import { newId } from "../../lib/ids";
import { iso } from "../../lib/time";
import { meterStub } from "../usage/meter-config";
import { finalizeDrafts } from "../invoices/finalize";
import { markUncollectible, sendDueRetries } from "../payments/dunning";
import { nextRunAt, runDue, type StepResult } from "../subscriptions/renewal";
import { emitTrialWillEnd } from "../subscriptions/transitions";
import { expireDueGrants } from "../credits/service";

type ClockRow = typeof testClocks.$inferSelect;
// An advance that crashed leaves the clock "advancing"; after this long another advance may take over.
const STALE_ADVANCE_MS = 5 * 60_000;
const MAX_STEPS = 5000;

export const toClock = (r: ClockRow) => ({ id: r.id, name: r.name, frozenTime: iso(r.frozenTime), status: r.status, createdAt: iso(r.createdAt) });

export function assertEnabled(env: Env) {
  if (env.TEST_CLOCKS !== "on") throw new ApiError("not_found", "test clocks are disabled in this environment (TEST_CLOCKS=off)");
}

export async function getClock(db: Db, id: string): Promise<ClockRow> {
  const row = await db.select().from(testClocks).where(eq(testClocks.id, id)).get();
  if (!row) throw notFound("test clock", id);
  return row;
}

export async function createClock(db: Db, input: { frozenTime: number; name?: string | undefined }, ctx: AuditContext) {
  const row: ClockRow = { id: newId("clock"), name: input.name ?? null, frozenTime: input.frozenTime, status: "ready", createdAt: ctx.now, updatedAt: ctx.now };
  await commitWithAudit(db, [db.insert(testClocks).values(row)], [{ action: "test_clock.created", targetType: "test_clock", targetId: row.id, after: toClock(row) }], ctx);
  return row;
}

/**
 * Moves a clock forward to `target`, running in time order everything its subscriptions had due in between
 * (renewals and invoices, trial ends, scheduled plan changes, resumes). Never backwards; advancing to the
 * current time again is a no-op; one advance at a time per clock.
 */
export async function advanceClock(env: Env, db: Db, id: string, target: number, ctx: AuditContext) {
  const clock = await getClock(db, id);
  if (target < clock.frozenTime) {
    throw new ApiError("conflict", `test clocks never go backwards: ${clock.id} is at ${iso(clock.frozenTime)}`, [{ path: "frozenTime", message: "is before the clock's time" }]);
  }
  if (target === clock.frozenTime) return { clock, steps: [] as StepResult[], invoiceIds: [] as string[] };
  try {
    await db.batch([
      db
        .update(testClocks)
        .set({ status: "advancing", updatedAt: ctx.now })
        .where(and(eq(testClocks.id, id), eq(testClocks.frozenTime, clock.frozenTime), or(eq(testClocks.status, "ready"), lt(testClocks.updatedAt, ctx.now - STALE_ADVANCE_MS)))),
      assertChanged(db),
    ]);
  } catch (e) {
    if (isAssertionFailure(e)) throw new ApiError("conflict", `test clock ${id} is being advanced by another request; retry`);
    throw e;
  }
  const steps: StepResult[] = [];
  const eventCtx = { actor: ctx.actor, ...(ctx.requestId ? { requestId: ctx.requestId } : {}) };
  try {
    const subs = (await db.select({ id: subscriptions.id }).from(subscriptions).where(eq(subscriptions.testClockId, id)).all()).map((s) => s.id);
    for (let i = 0; i < MAX_STEPS; i++) {
      // The subscription whose next step is earliest runs it, so steps across subscriptions stay in time order.
      let best: { id: string; at: number; runAt: number } | null = null;
      for (const s of subs) {
        const n = await nextRunAt(env, db, s);
        if (n && n.runAt <= target && (!best || n.at < best.at || (n.at === best.at && n.runAt < best.runAt))) best = { id: s, ...n };
      }
      if (!best) break;
      // Trials ending within three days of this step hear of it first (events in the clock's time order).
      await emitTrialWillEnd(db, best.at, { testClockId: id }, eventCtx);
      await meterStub(env, best.id).setClock(best.runAt);
      const ran = await runDue(env, db, best.id, best.runAt, { actor: ctx.actor, ...(ctx.requestId ? { requestId: ctx.requestId } : {}) }, 1);
      if (!ran.length) break;
      steps.push(...ran);
    }
    await emitTrialWillEnd(db, target, { testClockId: id }, eventCtx);
    // Credit that expired by the new time leaves the balance (invoices before it already ignored it past expiry).
    for (let more = true; more; ) more = (await expireDueGrants(db, target, { testClockId: id }, eventCtx)).hasMore;
    await finalizeDrafts(env, db, { ...ctx, now: target }, { testClockId: id });
    // Dunning of this clock's invoices, at the clock's new time (the real-time cron leaves them alone).
    await sendDueRetries(env, db, target, { testClockId: id });
    await markUncollectible(db, { ...ctx, now: target }, { testClockId: id });
    await Promise.all(subs.map((s) => meterStub(env, s).setClock(target)));
  } finally {
    await commitWithAudit(
      db,
      [db.update(testClocks).set({ frozenTime: target, status: "ready", updatedAt: Date.now() }).where(eq(testClocks.id, id))],
      [{ action: "test_clock.advanced", targetType: "test_clock", targetId: id, before: { frozenTime: iso(clock.frozenTime) }, after: { frozenTime: iso(target), steps: steps.length } }],
      ctx,
    );
  }
  return { clock: await getClock(db, id), steps, invoiceIds: steps.flatMap((s) => (s.invoiceId ? [s.invoiceId] : [])) };
}

export function parseFrozenTime(s: string): number {
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw invalid([{ path: "frozenTime", message: "must be an ISO-8601 date-time" }]);
  return t;
}
