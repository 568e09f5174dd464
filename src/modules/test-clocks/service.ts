import { and, eq, gt, lt, ne, or, sql } from "drizzle-orm";
import type { Services } from "../../platform/services";
import type { Db } from "../../db/client";
import { commitWithAudit } from "../../platform/audit";
import { assertChanged, isAssertionFailure } from "../../db/assert";
import { subscriptions, testClocks } from "../../db/schema";
import { conflict, fail, invalid, notFound, ok, valueOrThrow, type Outcome } from "../../platform/failure";
import { newId } from "../../lib/ids";
import { iso } from "../../lib/time";
import { finalizeDraftsPage } from "../invoices/finalize";
import { markUncollectible, sendDueRetries, UNCOLLECTIBLE_PER_INVOCATION } from "../payments/dunning";
import { runDue, type StepResult } from "../subscriptions/renewal";
import { dueStepSql, graceMsOf } from "../subscriptions/due";
import { emitTrialWillEnd } from "../subscriptions/transitions";
import { upcomingForClock } from "../subscriptions/upcoming";
import { expireDueGrants } from "../credits/service";

type ClockRow = typeof testClocks.$inferSelect;
// An advance that crashed leaves the clock "advancing"; after this long another advance may take over.
const STALE_ADVANCE_MS = 5 * 60_000;

export const toClock = (r: ClockRow) => ({ id: r.id, name: r.name, frozenTime: iso(r.frozenTime), status: r.status, createdAt: iso(r.createdAt) });

/** Test clocks exist only where TEST_CLOCKS=on; elsewhere every test clock route answers 404. */
export function clocksEnabled(env: Env): Outcome<void, "not_found"> {
  return env.TEST_CLOCKS === "on" ? ok(undefined) : fail("not_found", "test clocks are disabled in this environment (TEST_CLOCKS=off)");
}

export async function getClock(db: Db, id: string): Promise<Outcome<ClockRow, "not_found">> {
  const row = await db.select().from(testClocks).where(eq(testClocks.id, id)).get();
  return row ? ok(row) : notFound("test clock", id);
}

export async function createClock(s: Services, input: { frozenTime: number; name?: string | undefined }) {
  const { db, audit: ctx } = s;
  const row: ClockRow = { id: newId("clock"), name: input.name ?? null, frozenTime: input.frozenTime, status: "ready", createdAt: ctx.now, updatedAt: ctx.now };
  await commitWithAudit(db, [db.insert(testClocks).values(row)], [{ action: "test_clock.created", targetType: "test_clock", targetId: row.id, after: toClock(row) }], ctx);
  return row;
}

/**
 * Work an advance does per invocation, in estimated D1 queries: a step (renewal, invoice, finalization) costs about
 * 30, a trial_will_end commit 5, a page of drafts 25 × 12. Stopping past BUDGET keeps the worst invocation (BUDGET
 * plus its most expensive single unit) under Cloudflare's 1,000; the rest continues on the tasks queue.
 */
const BUDGET = 600;
const COST = { step: 30, trialEmit: 5, upcomingEmit: 6, draftsPage: 320, dunning: 150, markUncollectible: 7, meterPage: 5 } as const;
const TRIAL_PAGE = 20;
const UPCOMING_PAGE = 20;
const METER_PAGE = 200;

type Advance = { steps: StepResult[]; finished: boolean };

/**
 * Moves a clock forward to `target`, running in time order everything its subscriptions had due in between
 * (renewals and invoices, trial ends, scheduled plan changes, resumes). Never backwards; advancing to the
 * current time again is a no-op; one advance at a time per clock. Like Stripe's, an advance is asynchronous when it
 * is large: this call does a bounded share and returns the clock `advancing` (its `frozenTime` at the last step
 * done, never past unfinished work); the tasks queue carries on until the clock is `ready` at `target`.
 */
export async function advanceClock(
  s: Services,
  id: string,
  target: number,
): Promise<Outcome<{ clock: ClockRow; steps: StepResult[]; invoiceIds: string[] }, "not_found" | "conflict" | "unavailable">> {
  const { db, audit: ctx } = s;
  const found = await getClock(db, id);
  if (!found.ok) return found;
  const clock = found.value;
  if (target < clock.frozenTime) {
    return conflict(`test clocks never go backwards: ${clock.id} is at ${iso(clock.frozenTime)}`, [{ path: "frozenTime", message: "is before the clock's time" }]);
  }
  if (target === clock.frozenTime) return ok({ clock, steps: [] as StepResult[], invoiceIds: [] as string[] });
  try {
    await db.batch([
      db
        .update(testClocks)
        .set({ status: "advancing", updatedAt: ctx.now })
        .where(and(eq(testClocks.id, id), eq(testClocks.frozenTime, clock.frozenTime), or(eq(testClocks.status, "ready"), lt(testClocks.updatedAt, ctx.now - STALE_ADVANCE_MS)))),
      assertChanged(db),
    ]);
  } catch (e) {
    if (isAssertionFailure(e)) return conflict(`test clock ${id} is being advanced by another request; retry`);
    throw e;
  }
  const r = await advanceSome(s, id, clock.frozenTime, target, null);
  if (!r.finished) {
    const queued = await continueLater(s, id, target, null);
    if (!queued.ok) return queued;
  }
  // The clock was just read and claimed (test clocks are never deleted).
  const after = valueOrThrow(await getClock(db, id));
  return ok({ clock: after, steps: r.steps, invoiceIds: r.steps.flatMap((step) => (step.invoiceId ? [step.invoiceId] : [])) });
}

/** The tasks queue's `test_clock.advance`: the next bounded share of an advance under way. */
export async function continueAdvance(s: Services, id: string, target: number, meterAfter: string | null = null): Promise<void> {
  const { db } = s;
  const clock = await db.select().from(testClocks).where(eq(testClocks.id, id)).get();
  // Finished, superseded or deleted meanwhile: nothing to do (a redelivered message lands here).
  if (!clock || clock.status !== "advancing" || clock.frozenTime > target) return;
  const r = await advanceSome(s, id, clock.frozenTime, target, meterAfter);
  // A continuation that cannot be queued fails the message, which is retried (as the advance's own step would be).
  if (!r.finished) valueOrThrow(await continueLater(s, id, target, r.meterAfter ?? null));
}

async function continueLater(s: Services, clockId: string, target: number, meterAfter: string | null): Promise<Outcome<void, "unavailable">> {
  try {
    await s.queues.tasks.sendAll([{ type: "test_clock.advance", clockId, target, ...(meterAfter ? { meterAfter } : {}) }]);
    return ok(undefined);
  } catch (e) {
    // The clock stays `advancing`; after STALE_ADVANCE_MS another advance may take it over.
    return fail("unavailable", `test clock ${clockId}: could not queue the rest of the advance (${String(e)}); advance again to resume`);
  }
}

/**
 * One invocation's share: the clock's due steps in time order (one SQL query picks the earliest, so N subscriptions
 * cost O(N) queries in all), then, when none is left before `target`, its trial notices, drafts, dunning and meter
 * clocks, and `ready` at `target`. Stops when the budget is spent; the clock's time moves to the last step done.
 */
async function advanceSome(s: Services, id: string, from: number, target: number, meterAfter: string | null): Promise<Advance & { meterAfter?: string | null }> {
  const { env, db, audit: ctx } = s;
  const steps: StepResult[] = [];
  const eventCtx = { actor: ctx.actor, ...(ctx.requestId ? { requestId: ctx.requestId } : {}) };
  const due = dueStepSql(graceMsOf(env));
  let spent = 0;
  let reached = from;
  const moveTo = async (time: number) => {
    if (time > reached) {
      reached = time;
      await db.update(testClocks).set({ frozenTime: time, updatedAt: s.clock.wall }).where(and(eq(testClocks.id, id), lt(testClocks.frozenTime, time)));
      s.clock.moved(id, time);
    }
  };
  for (;;) {
    if (spent >= BUDGET) {
      await moveTo(steps.length ? steps[steps.length - 1]!.at : reached);
      return { steps, finished: false, meterAfter };
    }
    // The subscription whose next step is earliest runs it, so steps across subscriptions stay in time order.
    const best = await db
      .select({ id: subscriptions.id, at: due.at, runAt: due.runAt })
      .from(subscriptions)
      .where(and(eq(subscriptions.testClockId, id), ne(subscriptions.status, "canceled"), sql`${due.runAt} <= ${target}`))
      .orderBy(due.at, due.runAt, subscriptions.id)
      .limit(1)
      .get();
    if (!best || best.at === null || best.runAt === null) break;
    // Trials ending within three days of this step hear of it first (events in the clock's time order).
    const trials = await emitTrialWillEnd(db, best.at, { testClockId: id }, eventCtx, 1, TRIAL_PAGE);
    spent += trials.emitted * COST.trialEmit;
    if (trials.more) continue;
    // So do renewals within UPCOMING_INVOICE_DAYS of it (invoice.upcoming, stamped when it fell due).
    const upcoming = await upcomingForClock(s, best.at, id, eventCtx, UPCOMING_PAGE);
    spent += upcoming.emitted * COST.upcomingEmit;
    if (upcoming.next) continue;
    await s.meters.of(best.id).setClock(best.runAt);
    const ran = await runDue(s, best.id, best.runAt, 1);
    spent += COST.step;
    if (!ran.length) {
      s.log.error("test clock step ran nothing; the advance stops here", { clockId: id, subscriptionId: best.id, at: best.at });
      break;
    }
    steps.push(...ran);
  }
  await moveTo(steps.length ? steps[steps.length - 1]!.at : reached);

  // Nothing due before the target: the rest of the clock's work, each piece only while the budget lasts.
  const trials = await emitTrialWillEnd(db, target, { testClockId: id }, eventCtx, 1, TRIAL_PAGE);
  spent += trials.emitted * COST.trialEmit;
  if (trials.more) return { steps, finished: false, meterAfter };
  const upcoming = await upcomingForClock(s, target, id, eventCtx, UPCOMING_PAGE);
  spent += upcoming.emitted * COST.upcomingEmit;
  if (upcoming.next) return { steps, finished: false, meterAfter };
  // Credit that expired by the new time leaves the balance (invoices before it already ignored it past expiry).
  const expired = await expireDueGrants(db, target, { testClockId: id }, eventCtx);
  if (expired.hasMore) return { steps, finished: false, meterAfter };
  if (spent + COST.draftsPage > BUDGET + COST.draftsPage / 2 && spent > 0) return { steps, finished: false, meterAfter };
  const drafts = await finalizeDraftsPage(s.withAudit({ ...ctx, now: target }), id, null);
  spent += drafts.finalized.length * 12;
  if (drafts.next) return { steps, finished: false, meterAfter };
  if (spent + COST.dunning > BUDGET) return { steps, finished: false, meterAfter };
  // Dunning of this clock's invoices, at the clock's new time (the real-time cron leaves them alone). Uncollectible
  // first, a bounded share per invocation (marked invoices leave the set, so the next message goes on from the start);
  // then the retries, once, for the invoices still open.
  const unc = await markUncollectible(db, { ...ctx, now: target }, { testClockId: id }, { max: UNCOLLECTIBLE_PER_INVOCATION });
  spent += unc.marked.length * COST.markUncollectible;
  if (unc.next) return { steps, finished: false, meterAfter };
  await sendDueRetries(s, target, { testClockId: id });
  spent += COST.dunning;
  // Every meter of the clock learns its time, a page of Durable Object calls per invocation.
  for (let cursor = meterAfter; ; ) {
    if (spent >= BUDGET) return { steps, finished: false, meterAfter: cursor };
    const page = await db
      .select({ id: subscriptions.id })
      .from(subscriptions)
      .where(and(eq(subscriptions.testClockId, id), cursor === null ? undefined : gt(subscriptions.id, cursor)))
      .orderBy(subscriptions.id)
      .limit(METER_PAGE)
      .all();
    await Promise.all(page.map((sub) => s.meters.of(sub.id).setClock(target)));
    spent += COST.meterPage * 20;
    if (page.length < METER_PAGE) break;
    cursor = page[page.length - 1]!.id;
    if (spent >= BUDGET) return { steps, finished: false, meterAfter: cursor };
  }
  await commitWithAudit(
    db,
    [db.update(testClocks).set({ frozenTime: target, status: "ready", updatedAt: s.clock.wall }).where(eq(testClocks.id, id))],
    [{ action: "test_clock.advanced", targetType: "test_clock", targetId: id, before: { frozenTime: iso(from) }, after: { frozenTime: iso(target), steps: steps.length } }],
    ctx,
  );
  s.clock.moved(id, target);
  return { steps, finished: true };
}

/** Clocks stay between the epoch and 2200: usage meters number events by arrival, exactly only until 2248 (ARRIVAL_SLOTS). */
const LATEST_FROZEN_TIME = Date.UTC(2200, 0, 1);

export function parseFrozenTime(s: string): Outcome<number, "unprocessable"> {
  const t = Date.parse(s);
  if (Number.isNaN(t)) return invalid([{ path: "frozenTime", message: "must be an ISO-8601 date-time" }]);
  if (t < 0 || t >= LATEST_FROZEN_TIME) return invalid([{ path: "frozenTime", message: "must be between 1970-01-01T00:00:00Z and 2200-01-01T00:00:00Z" }]);
  return ok(t);
}
