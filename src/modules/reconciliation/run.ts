import { and, asc, desc, eq, gt, gte, inArray, isNull, lt, notExists, or, sql } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type { Services } from "../../platform/services";
import type { Db } from "../../db/client";
import { batchAssertions, creditNotes, discrepancies, payments, reconciliationRuns, reconciliationSeen, refunds } from "../../db/schema";
import type { BalanceTransaction, GatewayName, GatewayPayment } from "../../gateways/types";
import { newId } from "../../lib/ids";
import { iso, DAY_MS } from "../../lib/time";
import { commitWithAudit } from "../../platform/audit";
import { notFound, ok, type Outcome } from "../../platform/failure";
import { newestFirstPage, type PageQuery } from "../../platform/pagination";
import { retained } from "../retention/run";
import { compareTxns, compareUnclaimed, TXN_PAGES_PER_INVOCATION, type Comparison, type CurrencyTotals, type DiscrepancyKind, type LocalPayment, type LocalRefund } from "./compare";
import { BASIS, chunks, dayBounds, discrepancyId, IN_CHUNK, money, RETRIEVE_CONCURRENCY, sideOut, upsertDiscrepancy, type GatewayChoice } from "./service";

/**
 * A reconciliation run: one UTC day of one gateway compared page by page, a bounded share per tasks-queue message
 * (`reconciliation.continue` with the run's id and step), so any size of day fits Cloudflare's per-invocation limits.
 * It finds what `reconcileDay` finds for the same day (the same comparison, compare.ts, on pages):
 *
 * 1. gateway: the gateway's balance transactions from the day before to the day after, a page at a time; each page
 *    is matched against D1 by `gateway_payment_id IN (…)` / `gateway_refund_id IN (…)` and the local rows it
 *    settled are remembered (reconciliation_seen);
 * 2. local: the day's succeeded payments and refunds no transaction settled, by keyset (createdAt, id); each payment
 *    with a gateway id is asked from the gateway (a cross-day match, another status, or missing at the gateway);
 * 3. finish: the day's open discrepancies this run did not find, and no comparison found since it was created, are
 *    resolved (in the steps' batches, as many steps as it takes); then the day's local totals (aggregates),
 *    credit-note totals, the `reconciliation.run` audit row, status complete.
 *
 * Each message's writes (findings, resolves, seen rows, the run's counters and its next step) go in one D1 batch that
 * only applies while the run is still at the message's step, so a duplicate or late delivery changes nothing. A failure
 * (the gateway down) leaves the run `running` with its `error` and the step is retried by the queue; the run goes on
 * from where it was once the gateway answers.
 */

/** Stripe's largest list page: one subrequest per page. */
export const TXN_PAGE = 100;
export { TXN_PAGES_PER_INVOCATION };
/**
 * The day's payments the listing did not cover, per invocation: each with a gateway id is one `retrieve` (a
 * subrequest on Stripe, two D1 reads on the sandbox), so 40 stays inside ~50 subrequests with room for the rest.
 */
export const RETRIEVES_PER_INVOCATION = 40;
/** The day's refunds the listing did not cover, per invocation: no gateway call, an upsert each (≤ 200 queries). */
export const REFUND_PAGE = 200;
/** Seen rows of finished runs deleted per statement, and statements per invocation of the daily sweep. */
export const SWEEP_PAGE = 5_000;
export const SWEEP_PAGES_PER_INVOCATION = 10;
/** Stale open discrepancies resolved per statement, and statements per invocation. */
export const RESOLVE_PAGE = 500;
export const RESOLVE_PAGES_PER_INVOCATION = 10;
/** Seen rows per insert: three binds each, under D1's 100. */
const SEEN_CHUNK = 30;
/** A running run with no step for this long is taken as lost (its message dead-lettered): a new run may start. */
export const STALE_RUN_MS = 60 * 60 * 1000;
/** Credit-note refunds the run lists as unmatched, at most (the totals count them all). */
const MAX_UNMATCHED_LISTED = 100;

export type ReconciliationRun = typeof reconciliationRuns.$inferSelect;
const KINDS: DiscrepancyKind[] = ["missing_at_gateway", "missing_locally", "amount_mismatch", "status_mismatch"];
const emptyCounts = (): Record<string, number> => ({ transactions: 0, localChecked: 0, retrieved: 0, matched: 0, crossDayMatched: 0, resolved: 0, ...Object.fromEntries(KINDS.map((k) => [k, 0])) });

/**
 * Starts a run of `date` on `choice.gateway` as `s`'s actor: one row and the first message. A run of the same day and
 * gateway still going is returned instead (`started: false`); one silent for STALE_RUN_MS is marked failed and replaced
 * (in the batch that inserts its replacement). At most one run of a day and gateway is running (a partial unique
 * index): the insert does nothing when another start got there first, and that run is returned. A run whose current
 * step was never sent (the queue failed after its row was written) has it sent again here: by the next POST, or the
 * daily task; a duplicate message is harmless (only the delivery holding the run's step moves it).
 */
export async function startReconciliationRun(s: Services, date: string, choice: GatewayChoice): Promise<Outcome<{ run: ReconciliationRun; started: boolean }, "validation_failed" | "unprocessable">> {
  const { db, audit: ctx } = s;
  const bounds = dayBounds(date);
  if (!bounds.ok) return bounds;
  const kept = await retained(db, ["payment_attempts"], bounds.value.start, "Reconciliation");
  if (!kept.ok) return kept;
  const ofDay = and(eq(reconciliationRuns.date, date), eq(reconciliationRuns.gateway, choice.gateway), eq(reconciliationRuns.status, "running"));
  const running = await db.select().from(reconciliationRuns).where(ofDay).orderBy(desc(reconciliationRuns.createdAt)).get();
  if (running && running.updatedAt > ctx.now - STALE_RUN_MS) {
    if (running.sentStep < running.step) await sendStep(s, running);
    return ok({ run: running, started: false });
  }
  const fresh: ReconciliationRun = {
    id: newId("rcr"),
    date,
    gateway: choice.gateway,
    status: "running",
    phase: "gateway",
    step: 0,
    sentStep: -1,
    gatewayCursor: null,
    paymentCursor: null,
    refundCursor: null,
    totals: {},
    counts: emptyCounts(),
    creditNotes: null,
    error: null,
    actor: ctx.actor,
    createdAt: ctx.now,
    updatedAt: ctx.now,
    finishedAt: null,
  };
  const insert = db.insert(reconciliationRuns).values(fresh).onConflictDoNothing();
  const readBack = db.select().from(reconciliationRuns).where(ofDay);
  // The stale run is failed only if it is still as read (no step since), in the batch that inserts its replacement.
  const [, , current] = running
    ? await db.batch([
        db
          .update(reconciliationRuns)
          .set({ status: "failed", error: `no progress since ${iso(running.updatedAt)}: replaced by a new run`, finishedAt: ctx.now, updatedAt: ctx.now })
          .where(and(eq(reconciliationRuns.id, running.id), eq(reconciliationRuns.status, "running"), eq(reconciliationRuns.updatedAt, running.updatedAt))),
        insert,
        readBack,
      ])
    : [undefined, ...(await db.batch([insert, readBack]))];
  const run = current[0];
  if (!run) throw new Error(`reconciliation run of ${date} on ${choice.gateway}: neither inserted nor found running`);
  if (run.sentStep < run.step) await sendStep(s, run);
  return ok({ run, started: run.id === fresh.id });
}

async function sendStep(s: Services, run: ReconciliationRun) {
  await s.queues.tasks.send({ type: "reconciliation.continue", runId: run.id, step: run.step });
  await s.db.update(reconciliationRuns).set({ sentStep: run.step }).where(and(eq(reconciliationRuns.id, run.id), eq(reconciliationRuns.step, run.step)));
}

/** What one step found and settled, written in the step's batch. */
type StepWork = { comparison: Pick<Comparison, "matched" | "findings">; seen: { id: string; matched: boolean }[]; gatewayTotals?: Record<string, CurrencyTotals>; counts: Record<string, number> };

/**
 * One `reconciliation.continue` message: step `step` of run `runId`. Does nothing for a run that is finished or has
 * moved past `step` (a duplicate or late delivery); resends the message of a step that was saved but maybe not sent.
 * Returns the run after the step, or null when this delivery had nothing to do.
 */
export async function continueReconciliationRun(s: Services, runId: string, step: number): Promise<ReconciliationRun | null> {
  const run = await s.db.select().from(reconciliationRuns).where(eq(reconciliationRuns.id, runId)).get();
  if (!run || run.status !== "running") return null;
  if (run.step === step + 1 && run.sentStep < run.step) {
    await sendStep(s, run);
    return null;
  }
  if (run.step !== step) return null;
  const as = s.as(run.actor);
  try {
    return await runStep(as, run);
  } catch (e) {
    const error = e instanceof Error ? e.message : String(e);
    await s.db.update(reconciliationRuns).set({ error: `${run.phase}: ${error} (the step is retried)`, updatedAt: s.clock.wall }).where(and(eq(reconciliationRuns.id, run.id), eq(reconciliationRuns.step, step), eq(reconciliationRuns.status, "running")));
    throw e;
  }
}

async function runStep(s: Services, run: ReconciliationRun): Promise<ReconciliationRun | null> {
  const day = dayBounds(run.date);
  if (!day.ok) throw new Error(`run ${run.id}: bad date ${run.date}`);
  const next: ReconciliationRun = { ...run, totals: structuredClone(run.totals), counts: { ...emptyCounts(), ...run.counts }, error: null, step: run.step + 1, updatedAt: s.clock.wall };
  const works: StepWork[] = [];
  /** Statements after the run's update in the step's batch. */
  const trailing: BatchItem<"sqlite">[] = [];
  let audit = false;
  if (run.phase === "gateway") {
    const gateway = await s.gateways.byName(run.gateway as GatewayName);
    const window = { from: day.value.start - DAY_MS, to: day.value.end + DAY_MS };
    // The local ids this invocation's pages settled: reconciliation_seen has them only once the step's batch commits.
    const claimed = new Set<string>();
    for (let i = 0; i < TXN_PAGES_PER_INVOCATION; i++) {
      const page = await gateway.balanceTransactionsPage(window.from, window.to, next.gatewayCursor, TXN_PAGE);
      const work = await comparePage(s.db, run, day.value, page.data, claimed);
      for (const x of work.seen) claimed.add(x.id);
      for (const m of work.comparison.matched) if (m.localId) claimed.add(m.localId);
      works.push(work);
      next.gatewayCursor = page.next;
      if (!page.next) {
        next.phase = "local";
        break;
      }
    }
  } else if (run.phase === "local") {
    if (next.paymentCursor !== END) {
      const r = await unclaimedPayments(s, run, day.value);
      works.push(r.work);
      next.paymentCursor = r.cursor;
    } else {
      const r = await unclaimedRefunds(s.db, run, day.value);
      works.push(r.work);
      next.refundCursor = r.cursor;
      if (r.cursor === END) next.phase = "finish";
    }
  } else {
    const resolves = await staleResolves(s, run);
    if (resolves.length) trailing.push(...resolves, resolvedCount(s.db, run));
    else {
      await finish(s.db, run, day.value, next);
      audit = true;
      next.status = "complete";
      next.finishedAt = s.clock.wall;
    }
  }

  const statements: BatchItem<"sqlite">[] = [stillAt(s.db, run)];
  for (const w of works) {
    for (const [currency, t] of Object.entries(w.gatewayTotals ?? {})) {
      const into = (next.totals[currency] ??= { local: { charges: 0, refunds: 0, net: 0, count: 0 }, gateway: { charges: 0, refunds: 0, net: 0, count: 0 } });
      for (const k of ["charges", "refunds", "net", "count"] as const) into.gateway[k] += t.gateway[k];
    }
    for (const [k, v] of Object.entries(w.counts)) next.counts[k] = (next.counts[k] ?? 0) + v;
    next.counts.matched! += w.comparison.matched.length;
    next.counts.crossDayMatched! += w.comparison.matched.filter((m) => m.crossDay).length;
    const found: { id: string; matched: boolean }[] = [];
    for (const f of w.comparison.findings) {
      next.counts[f.kind] = (next.counts[f.kind] ?? 0) + 1;
      const id = await discrepancyId(run.date, run.gateway, f);
      statements.push(upsertDiscrepancy(s.db, { id, date: run.date, gateway: run.gateway, ...f, status: "open", createdAt: s.audit.now, resolvedAt: null }));
      found.push({ id, matched: false });
    }
    // One row per id (an insert may not touch a row twice): matched wins.
    const seenIds = new Map<string, boolean>();
    for (const x of [...w.seen, ...w.comparison.matched.map((m) => ({ id: m.localId, matched: true })), ...found]) seenIds.set(x.id, x.matched || (seenIds.get(x.id) ?? false));
    const seen = [...seenIds].map(([id, matched]) => ({ id, matched }));
    for (const rows of chunks(seen, SEEN_CHUNK)) {
      statements.push(s.db.insert(reconciliationSeen).values(rows.map((r) => ({ runId: run.id, itemId: r.id, matched: r.matched }))).onConflictDoUpdate({ target: [reconciliationSeen.runId, reconciliationSeen.itemId], set: { matched: sql`max(${reconciliationSeen.matched}, excluded.matched)` } }));
    }
  }
  const { id: _id, ...fields } = next;
  statements.push(s.db.update(reconciliationRuns).set(fields).where(eq(reconciliationRuns.id, run.id)), ...trailing);
  try {
    if (audit) {
      const c = next.counts;
      await commitWithAudit(s.db, statements, [{ action: "reconciliation.run", targetType: "reconciliation", targetId: `${run.gateway}:${run.date}`, after: { runId: run.id, matched: c.matched, open: KINDS.reduce((n, k) => n + (c[k] ?? 0), 0), resolved: c.resolved } }], s.audit);
    } else {
      await s.db.batch(statements as [BatchItem<"sqlite">, ...BatchItem<"sqlite">[]]);
    }
  } catch (e) {
    // The assertion failed: another delivery of this step got there first, and its writes stand.
    const now = await s.db.select({ step: reconciliationRuns.step }).from(reconciliationRuns).where(eq(reconciliationRuns.id, run.id)).get();
    if (now && now.step !== run.step) return null;
    throw e;
  }
  if (next.status === "running") await sendStep(s, next);
  else {
    // A first share of the run's seen rows now; the rest (and a failure here) is the daily sweep's (sweepReconciliationSeen).
    try {
      await s.db.run(sql`DELETE FROM ${reconciliationSeen} WHERE rowid IN (SELECT rowid FROM ${reconciliationSeen} WHERE ${reconciliationSeen.runId} = ${run.id} LIMIT ${SWEEP_PAGE})`);
    } catch (e) {
      s.log.warn("reconciliation seen rows not deleted (the daily sweep will)", { runId: run.id, error: e instanceof Error ? e.message : String(e) });
    }
  }
  s.log.info("reconciliation step", { runId: run.id, step: run.step, phase: run.phase, nextPhase: next.phase, status: next.status });
  return next;
}

/** Aborts the step's batch unless the run is still at the step this delivery holds. */
const stillAt = (db: Db, run: ReconciliationRun) =>
  db.insert(batchAssertions).select(sql`SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM ${reconciliationRuns} WHERE ${reconciliationRuns.id} = ${run.id} AND ${reconciliationRuns.step} = ${run.step} AND ${reconciliationRuns.status} = 'running')`);

const END = "end";
const keyset = (c: string | null) => {
  if (!c) return null;
  const i = c.indexOf(":");
  return { createdAt: Number(c.slice(0, i)), id: c.slice(i + 1) };
};

const toLocalPayment = (p: typeof payments.$inferSelect): LocalPayment => ({ id: p.id, amount: p.amount, currency: p.currency, status: p.status, gatewayPaymentId: p.gatewayPaymentId, createdAt: p.createdAt });
const toLocalRefund = ({ r, paymentGatewayId }: { r: typeof refunds.$inferSelect; paymentGatewayId: string | null }): LocalRefund => ({
  id: r.id,
  amount: r.amount,
  currency: r.currency,
  status: r.status,
  gatewayRefundId: r.gatewayRefundId,
  paymentGatewayId,
  createdAt: r.createdAt,
});

/** The day's local side on `gateway` as reconcileDay reads it: succeeded, on the gateway, created in the day. */
const dayPayment = (gateway: string, day: { start: number; end: number }) => and(eq(payments.gateway, gateway), eq(payments.status, "succeeded"), gte(payments.createdAt, day.start), lt(payments.createdAt, day.end));
const dayRefund = (gateway: string, day: { start: number; end: number }) =>
  and(or(eq(refunds.gateway, gateway), and(isNull(refunds.gateway), eq(payments.gateway, gateway))), eq(refunds.status, "succeeded"), gte(refunds.createdAt, day.start), lt(refunds.createdAt, day.end));
const notSeen = (db: Db, runId: string, id: typeof payments.id | typeof refunds.id) =>
  notExists(db.select({ one: sql`1` }).from(reconciliationSeen).where(and(eq(reconciliationSeen.runId, runId), eq(reconciliationSeen.itemId, id))));

/** One page of the listing against the local rows it names (phase 1). */
async function comparePage(db: Db, run: ReconciliationRun, day: { start: number; end: number }, txns: BalanceTransaction[], claimed: ReadonlySet<string>): Promise<StepWork> {
  const inDay = (p: { gateway: string | null; status: string; createdAt: number }) => p.gateway === run.gateway && p.status === "succeeded" && p.createdAt >= day.start && p.createdAt < day.end;
  const paymentIds = [...new Set(txns.filter((t) => t.type === "charge").map((t) => t.paymentId ?? t.sourceId))];
  const refundIds = [...new Set(txns.filter((t) => t.type === "refund").map((t) => t.sourceId))];
  const ofPayments = [];
  for (const ids of chunks(paymentIds, IN_CHUNK)) ofPayments.push(...(await db.select().from(payments).where(inArray(payments.gatewayPaymentId, ids)).all()));
  const ofRefunds: { r: typeof refunds.$inferSelect; paymentGatewayId: string | null; paymentGateway: string | null }[] = [];
  for (const ids of chunks(refundIds, IN_CHUNK)) {
    ofRefunds.push(...(await db.select({ r: refunds, paymentGatewayId: payments.gatewayPaymentId, paymentGateway: payments.gateway }).from(refunds).innerJoin(payments, eq(payments.id, refunds.paymentId)).where(inArray(refunds.gatewayRefundId, ids)).all()));
  }
  // The day's refunds recorded without a refund id: matched to an unused refund of their payment and amount. Unused:
  // not settled by an earlier step (reconciliation_seen) nor by an earlier page of this one (`claimed`).
  const refundPayments = [...new Set(txns.filter((t) => t.type === "refund" && t.paymentId).map((t) => t.paymentId!))];
  const withoutId = [];
  for (const ids of chunks(refundPayments, IN_CHUNK - 10)) {
    withoutId.push(
      ...(
        await db
          .select({ r: refunds, paymentGatewayId: payments.gatewayPaymentId })
          .from(refunds)
          .innerJoin(payments, eq(payments.id, refunds.paymentId))
          .where(and(dayRefund(run.gateway, day), isNull(refunds.gatewayRefundId), inArray(payments.gatewayPaymentId, ids), notSeen(db, run.id, refunds.id)))
          .all()
      ).filter((x) => !claimed.has(x.r.id)),
    );
  }
  const refundInDay = (x: (typeof ofRefunds)[number]) => (x.r.gateway ?? x.paymentGateway) === run.gateway && x.r.status === "succeeded" && x.r.createdAt >= day.start && x.r.createdAt < day.end;
  const c = compareTxns({
    day,
    txns,
    payments: ofPayments.filter(inDay).map(toLocalPayment),
    refunds: [...ofRefunds.filter(refundInDay).map(toLocalRefund), ...withoutId.map(toLocalRefund)],
    otherPayments: ofPayments.filter((p) => !inDay(p)).map(toLocalPayment),
    otherRefunds: ofRefunds.filter((x) => !refundInDay(x)).map(toLocalRefund),
  });
  const seen = [...c.claimedPayments, ...c.claimedRefunds].map((id) => ({ id, matched: false }));
  return { comparison: c, seen, gatewayTotals: c.totals, counts: { transactions: txns.length } };
}

/** Phase 2, payments: the next page of the day's payments the listing did not settle, each asked from the gateway. */
async function unclaimedPayments(s: Services, run: ReconciliationRun, day: { start: number; end: number }): Promise<{ work: StepWork; cursor: string }> {
  const after = keyset(run.paymentCursor);
  const rows = await s.db
    .select()
    .from(payments)
    .where(and(dayPayment(run.gateway, day), after ? or(gt(payments.createdAt, after.createdAt), and(eq(payments.createdAt, after.createdAt), gt(payments.id, after.id))) : undefined, notSeen(s.db, run.id, payments.id)))
    .orderBy(asc(payments.createdAt), asc(payments.id))
    .limit(RETRIEVES_PER_INVOCATION)
    .all();
  const local = rows.map(toLocalPayment);
  const gateway = await s.gateways.byName(run.gateway as GatewayName);
  const retrieved = new Map<string, GatewayPayment | null>();
  const ids = [...new Set(local.map((p) => p.gatewayPaymentId).filter((x): x is string => !!x))];
  for (const group of chunks(ids, RETRIEVE_CONCURRENCY)) {
    const answers = await Promise.all(group.map((id) => gateway.retrieve(id)));
    group.forEach((id, i) => retrieved.set(id, answers[i] ?? null));
  }
  const comparison = compareUnclaimed({ payments: local, refunds: [], retrieved });
  const last = rows.at(-1);
  return {
    work: { comparison, seen: local.map((p) => ({ id: p.id, matched: false })), counts: { localChecked: local.length, retrieved: ids.length } },
    cursor: rows.length < RETRIEVES_PER_INVOCATION || !last ? END : `${last.createdAt}:${last.id}`,
  };
}

/** Phase 2, refunds: the day's refunds the listing did not settle are missing at the gateway. */
async function unclaimedRefunds(db: Db, run: ReconciliationRun, day: { start: number; end: number }): Promise<{ work: StepWork; cursor: string }> {
  const after = keyset(run.refundCursor);
  const rows = await db
    .select({ r: refunds, paymentGatewayId: payments.gatewayPaymentId })
    .from(refunds)
    .innerJoin(payments, eq(payments.id, refunds.paymentId))
    .where(and(dayRefund(run.gateway, day), after ? or(gt(refunds.createdAt, after.createdAt), and(eq(refunds.createdAt, after.createdAt), gt(refunds.id, after.id))) : undefined, notSeen(db, run.id, refunds.id)))
    .orderBy(asc(refunds.createdAt), asc(refunds.id))
    .limit(REFUND_PAGE)
    .all();
  const local = rows.map(toLocalRefund);
  const comparison = compareUnclaimed({ payments: [], refunds: local, retrieved: new Map() });
  const last = rows.at(-1);
  return {
    work: { comparison, seen: local.map((r) => ({ id: r.id, matched: false })), counts: { localChecked: local.length } },
    cursor: rows.length < REFUND_PAGE || !last ? END : `${last.r.createdAt}:${last.r.id}`,
  };
}

/**
 * The day's open discrepancies this run may resolve: not found by it (reconciliation_seen) and not found by any
 * comparison since it was created (`found_at`: a GET while the run went on may have found what the run paged past).
 */
const resolvable = (run: ReconciliationRun) => sql`SELECT d.id FROM discrepancies d WHERE d.date = ${run.date} AND d.gateway = ${run.gateway} AND d.status = 'open'
  AND coalesce(d.found_at, d.created_at) < ${run.createdAt}
  AND NOT EXISTS (SELECT 1 FROM ${reconciliationSeen} WHERE ${reconciliationSeen.runId} = ${run.id} AND ${reconciliationSeen.itemId} = d.id)`;

/**
 * Phase 3, while any is left: up to RESOLVE_PAGES_PER_INVOCATION statements resolving RESOLVE_PAGE stale discrepancies
 * each, for the step's guarded batch (a batch that fails or loses to another delivery resolves nothing); empty when
 * none is left. Each resolved row names the run (`resolved_by_run`), which is how the run counts them.
 */
async function staleResolves(s: Services, run: ReconciliationRun): Promise<BatchItem<"sqlite">[]> {
  const any = await s.db.get<{ id: string } | undefined>(sql`${resolvable(run)} LIMIT 1`);
  if (!any) return [];
  return Array.from({ length: RESOLVE_PAGES_PER_INVOCATION }, () =>
    s.db
      .update(discrepancies)
      .set({ status: "resolved", resolvedAt: s.audit.now, resolvedByRun: run.id })
      .where(sql`${discrepancies.id} IN (${resolvable(run)} LIMIT ${RESOLVE_PAGE})`),
  );
}

/** After the resolves in the same batch: the run's `resolved` count is what it resolved (and nothing reopened since). */
const resolvedCount = (db: Db, run: ReconciliationRun) =>
  db
    .update(reconciliationRuns)
    .set({ counts: sql`json_set(${reconciliationRuns.counts}, '$.resolved', (SELECT count(*) FROM discrepancies WHERE date = ${run.date} AND gateway = ${run.gateway} AND resolved_by_run = ${run.id}))` })
    .where(eq(reconciliationRuns.id, run.id));

/** Phase 3, once nothing is left to resolve: the day's local totals and credit notes (aggregates) into `next`. */
async function finish(db: Db, run: ReconciliationRun, day: { start: number; end: number }, next: ReconciliationRun): Promise<void> {
  // The local side of the totals: every succeeded row of the day, summed in D1.
  for (const t of Object.values(next.totals)) t.local = { charges: 0, refunds: 0, net: 0, count: 0 };
  const paid = await db.select({ currency: payments.currency, sum: sql<number>`sum(${payments.amount})`, n: sql<number>`count(*)` }).from(payments).where(dayPayment(run.gateway, day)).groupBy(payments.currency).all();
  const refunded = await db
    .select({ currency: refunds.currency, sum: sql<number>`sum(${refunds.amount})`, n: sql<number>`count(*)` })
    .from(refunds)
    .innerJoin(payments, eq(payments.id, refunds.paymentId))
    .where(dayRefund(run.gateway, day))
    .groupBy(refunds.currency)
    .all();
  const add = (currency: string, kind: "charges" | "refunds", sum: number, n: number) => {
    const t = (next.totals[currency] ??= { local: { charges: 0, refunds: 0, net: 0, count: 0 }, gateway: { charges: 0, refunds: 0, net: 0, count: 0 } }).local;
    t[kind] += sum;
    t.net += kind === "charges" ? sum : -sum;
    t.count += n;
  };
  for (const p of paid) add(p.currency, "charges", p.sum, p.n);
  for (const r of refunded) add(r.currency, "refunds", r.sum, r.n);
  next.creditNotes = await creditNotesOfRun(db, run, day);
}

/** Credit notes issued in the day, per currency, as reconcileDay reports them; refunds not matched by this run listed. */
async function creditNotesOfRun(db: Db, run: ReconciliationRun, day: { start: number; end: number }): Promise<NonNullable<ReconciliationRun["creditNotes"]>> {
  const ofDay = and(eq(creditNotes.status, "issued"), gte(creditNotes.createdAt, day.start), lt(creditNotes.createdAt, day.end));
  const onGateway = sql`${creditNotes.refundId} IS NOT NULL AND ${payments.gateway} = ${run.gateway}`;
  const sums = await db
    .select({
      currency: creditNotes.currency,
      issued: sql<number>`count(*)`,
      refunded: sql<number>`coalesce(sum(CASE WHEN ${onGateway} THEN ${creditNotes.refundAmount} ELSE 0 END), 0)`,
      nonCash: sql<number>`coalesce(sum(${creditNotes.creditBalanceAmount} + ${creditNotes.invoiceCreditAmount}), 0)`,
    })
    .from(creditNotes)
    .leftJoin(refunds, eq(refunds.id, creditNotes.refundId))
    .leftJoin(payments, eq(payments.id, refunds.paymentId))
    .where(ofDay)
    .groupBy(creditNotes.currency)
    .all();
  const unmatched = await db
    .select({ currency: creditNotes.currency, refundId: creditNotes.refundId })
    .from(creditNotes)
    .leftJoin(refunds, eq(refunds.id, creditNotes.refundId))
    .leftJoin(payments, eq(payments.id, refunds.paymentId))
    .where(and(ofDay, onGateway, notExists(db.select({ one: sql`1` }).from(reconciliationSeen).where(and(eq(reconciliationSeen.runId, run.id), eq(reconciliationSeen.itemId, creditNotes.refundId), eq(reconciliationSeen.matched, true))))))
    .orderBy(asc(creditNotes.refundId))
    .limit(MAX_UNMATCHED_LISTED)
    .all();
  const out: NonNullable<ReconciliationRun["creditNotes"]> = {};
  for (const r of [...sums].sort((a, b) => a.currency.localeCompare(b.currency))) {
    out[r.currency] = { issued: r.issued, refunded: r.refunded, nonCash: r.nonCash, unmatchedRefundIds: unmatched.filter((u) => u.currency === r.currency).map((u) => u.refundId!) };
  }
  return out;
}

/** A run as the API shows it: progress while running; totals, counts and credit notes once complete. */
export function toRunView(run: ReconciliationRun) {
  const c = { ...emptyCounts(), ...run.counts };
  const complete = run.status === "complete";
  const totals: Record<string, { local: ReturnType<typeof sideOut>; gateway: ReturnType<typeof sideOut>; difference: ReturnType<typeof money> }> = {};
  for (const [currency, t] of Object.entries(run.totals).sort(([a], [b]) => a.localeCompare(b))) {
    totals[currency] = { local: sideOut(t.local, currency), gateway: sideOut(t.gateway, currency), difference: money(t.local.net - t.gateway.net, currency) };
  }
  const creditNotesOut: Record<string, { issued: number; refunded: ReturnType<typeof money>; nonCash: ReturnType<typeof money>; unmatchedRefundIds: string[] }> = {};
  for (const [currency, n] of Object.entries(run.creditNotes ?? {})) {
    creditNotesOut[currency] = { issued: n.issued, refunded: money(n.refunded, currency), nonCash: money(n.nonCash, currency), unmatchedRefundIds: n.unmatchedRefundIds };
  }
  return {
    id: run.id,
    object: "reconciliation_run" as const,
    date: run.date,
    gateway: run.gateway,
    status: run.status,
    phase: run.phase,
    step: run.step,
    progress: { transactions: c.transactions!, localChecked: c.localChecked!, retrieved: c.retrieved!, matched: c.matched!, discrepancies: KINDS.reduce((n, k) => n + (c[k] ?? 0), 0) },
    error: run.error,
    basis: BASIS,
    window: { from: iso(Date.parse(`${run.date}T00:00:00Z`) - DAY_MS), to: iso(Date.parse(`${run.date}T00:00:00Z`) + 2 * DAY_MS) },
    ...(complete
      ? {
          totals,
          matched: c.matched!,
          crossDayMatched: c.crossDayMatched!,
          discrepancyCounts: Object.fromEntries(KINDS.map((k) => [k, c[k] ?? 0])) as Record<DiscrepancyKind, number>,
          resolved: c.resolved!,
          creditNotes: creditNotesOut,
        }
      : {}),
    createdBy: run.actor.id,
    createdAt: iso(run.createdAt),
    updatedAt: iso(run.updatedAt),
    finishedAt: iso(run.finishedAt),
  };
}

export async function getReconciliationRun(db: Db, id: string): Promise<Outcome<ReturnType<typeof toRunView>, "not_found">> {
  const run = await db.select().from(reconciliationRuns).where(eq(reconciliationRuns.id, id)).get();
  return run ? ok(toRunView(run)) : notFound("reconciliation run", id);
}

export function listReconciliationRuns(db: Db, q: PageQuery & { date?: string | undefined; gateway?: string | undefined; status?: ReconciliationRun["status"] | undefined }) {
  return newestFirstPage(
    db,
    { table: reconciliationRuns, id: reconciliationRuns.id, createdAt: reconciliationRuns.createdAt },
    q,
    [q.date ? eq(reconciliationRuns.date, q.date) : undefined, q.gateway ? eq(reconciliationRuns.gateway, q.gateway) : undefined, q.status ? eq(reconciliationRuns.status, q.status) : undefined],
    toRunView,
  );
}

/**
 * The daily sweep (cron task `reconciliation.sweep_seen`): deletes the reconciliation_seen rows of runs no longer
 * running (complete, failed or replaced), SWEEP_PAGE per statement, SWEEP_PAGES_PER_INVOCATION statements; `more` when
 * it stopped at that bound (the task goes on in its next message).
 */
export async function sweepReconciliationSeen(db: Db): Promise<{ deleted: number; more: boolean }> {
  let deleted = 0;
  for (let i = 0; i < SWEEP_PAGES_PER_INVOCATION; i++) {
    const r = await db.run(
      sql`DELETE FROM ${reconciliationSeen} WHERE rowid IN (SELECT s.rowid FROM ${reconciliationRuns} r JOIN ${reconciliationSeen} s ON s.run_id = r.id WHERE r.status <> 'running' LIMIT ${SWEEP_PAGE})`,
    );
    const n = (r as unknown as D1Result).meta.changes;
    deleted += n;
    if (n < SWEEP_PAGE) return { deleted, more: false };
  }
  return { deleted, more: true };
}
