import { retained } from "../retention/run";
import type { Services } from "../../platform/services";
import { and, eq, gte, inArray, isNull, lt, or } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import { commitWithAudit, type AuditContext } from "../../platform/audit";
import type { Db } from "../../db/client";
import { creditNotes, discrepancies, payments, refunds } from "../../db/schema";
import { formatMinor } from "../../domain/money";
import { configuredGateways, defaultPrimary } from "../../gateways";
import { TooManyBalanceTransactions, type GatewayName, type GatewayPayment } from "../../gateways/types";
import { fail, ok, type Outcome } from "../../platform/failure";
import { sha256Hex } from "../../lib/hash";
import { iso, DAY_MS } from "../../lib/time";
import { compareDay, type Comparison, type DiscrepancyKind, type Finding, type LocalPayment, type LocalRefund, type MatchedItem } from "./compare";

/** Bound parameters per statement stay under D1's 100. */
export const IN_CHUNK = 90;
const BATCH = 100;
export const RETRIEVE_CONCURRENCY = 8;
/**
 * What one invocation reconciles (the whole day is compared in memory, in one invocation): a day with more local
 * payments and refunds than this, or more of ours the gateway's listing misses (each asked for on its own, a
 * subrequest each), is refused with a clear 422 rather than run past Cloudflare's limits. The gateway side is
 * capped the same way (MAX_BALANCE_TRANSACTIONS in src/gateways/types.ts). A day past a cap is reconciled by a
 * run instead (run.ts: paged, a bounded share per tasks-queue message); the 422 says so.
 */
export const MAX_LOCAL_ROWS = 10_000;
export const MAX_RETRIEVES = 400;

export const BASIS =
  "Local side: succeeded payments and succeeded refunds on the gateway whose createdAt falls within the UTC day. Gateway side: balance transactions created within the UTC day. " +
  "Items are matched by gateway id across the day before and after (and payments by asking the gateway), so a charge made just after midnight or a parked charge made days later is matched, not reported; such matches are marked crossDay. " +
  "Totals are per currency and per side for the day itself. " +
  "creditNotes: notes issued in the day, per currency: their refunds through this gateway (each must be a matched refund, else it is listed in unmatchedRefundIds) and the part that moved no money at any gateway (customer credit balance, amount due taken off open invoices).";

export type DiscrepancyRow = typeof discrepancies.$inferSelect;
export type GatewayChoice = { gateway: GatewayName; selection: "requested" | "default"; note: string };

/** The UTC day `YYYY-MM-DD` as [start, end) in epoch ms, or a 400 naming the field. */
export function dayBounds(date: string): Outcome<{ start: number; end: number }, "validation_failed"> {
  const start = Date.parse(`${date}T00:00:00.000Z`);
  if (!/^\d{4}-\d{2}-\d{2}$/.test(date) || Number.isNaN(start) || new Date(start).toISOString().slice(0, 10) !== date) {
    return fail("validation_failed", `date: ${date} is not a calendar date YYYY-MM-DD`, [{ path: "date", message: "expected YYYY-MM-DD" }]);
  }
  return ok({ start, end: start + DAY_MS });
}

/** The gateway asked for, else stripe when it is configured, else the sandbox; refuses one that is not configured. */
export function chooseGateway(env: Env, requested: string | undefined): Outcome<GatewayChoice, "unprocessable"> {
  const configured = configuredGateways(env);
  if (requested) {
    if (!configured.includes(requested as GatewayName)) {
      return fail("unprocessable", `gateway ${requested} is not configured here (configured: ${configured.join(", ")})`, [{ path: "gateway", message: "not configured" }]);
    }
    return ok({ gateway: requested as GatewayName, selection: "requested", note: `gateway ${requested} as requested` });
  }
  const gateway = defaultPrimary(env);
  return ok({
    gateway,
    selection: "default",
    note: gateway === "stripe" ? "gateway defaulted to stripe (configured)" : "gateway defaulted to sandbox: stripe is not configured (STRIPE_SECRET_KEY is empty)",
  });
}

/** Where a day too large for one invocation goes. */
const USE_A_RUN = (date: string, gateway: string) => `reconcile it with a run instead: POST /api/v1/reconciliation/runs {"date": "${date}", "gateway": "${gateway}"}`;

/** A reconcileDay refusal because the day is past one invocation's caps (the daily task then starts a run). */
export const isPastCap = (e: { kind: string; errors?: readonly { path: string }[] }) => e.kind === "unprocessable" && !!e.errors?.some((x) => x.path === "date");

export const money = (minor: number, currency: string) => ({ amount: formatMinor(minor, currency), amountMinor: minor });
export const chunks = <T>(xs: T[], n: number): T[][] => Array.from({ length: Math.ceil(xs.length / n) }, (_, i) => xs.slice(i * n, (i + 1) * n));

export function toDiscrepancy(d: DiscrepancyRow) {
  const amount = (v: number | null) => (v === null || !d.currency ? null : money(v, d.currency));
  return {
    id: d.id,
    date: d.date,
    gateway: d.gateway,
    kind: d.kind,
    objectType: d.objectType,
    localId: d.localId,
    gatewayId: d.gatewayId,
    localAmount: amount(d.localAmount),
    gatewayAmount: amount(d.gatewayAmount),
    currency: d.currency,
    detail: d.detail,
    status: d.status,
    createdAt: iso(d.createdAt),
    resolvedAt: iso(d.resolvedAt),
  };
}

/**
 * One id per (date, gateway, kind, localId, gatewayId). The table's unique index cannot catch repeats on its
 * own: SQLite treats NULLs as distinct, and one side of a missing_* finding is always NULL.
 */
export async function discrepancyId(date: string, gateway: string, f: Finding): Promise<string> {
  return `dsc_${(await sha256Hex([date, gateway, f.kind, f.localId ?? "", f.gatewayId ?? ""].join("\u0000"))).slice(0, 26)}`;
}

async function loadLocal(db: Db, gateway: GatewayName, day: { start: number; end: number }) {
  // One more than the cap tells "too many" without reading them all.
  const dayPayments = await db
    .select()
    .from(payments)
    .where(and(eq(payments.gateway, gateway), eq(payments.status, "succeeded"), gte(payments.createdAt, day.start), lt(payments.createdAt, day.end)))
    .limit(MAX_LOCAL_ROWS + 1)
    .all();
  const dayRefunds = await db
    .select({ r: refunds, paymentGatewayId: payments.gatewayPaymentId })
    .from(refunds)
    .innerJoin(payments, eq(payments.id, refunds.paymentId))
    .where(and(or(eq(refunds.gateway, gateway), and(isNull(refunds.gateway), eq(payments.gateway, gateway))), eq(refunds.status, "succeeded"), gte(refunds.createdAt, day.start), lt(refunds.createdAt, day.end)))
    .limit(MAX_LOCAL_ROWS + 1)
    .all();
  return {
    payments: dayPayments.map((p): LocalPayment => ({ id: p.id, amount: p.amount, currency: p.currency, status: p.status, gatewayPaymentId: p.gatewayPaymentId, createdAt: p.createdAt })),
    refunds: dayRefunds.map(({ r, paymentGatewayId }): LocalRefund => ({ id: r.id, amount: r.amount, currency: r.currency, status: r.status, gatewayRefundId: r.gatewayRefundId, paymentGatewayId, createdAt: r.createdAt })),
  };
}

async function loadByGatewayIds(db: Db, paymentIds: string[], refundIds: string[]) {
  const otherPayments: LocalPayment[] = [];
  for (const ids of chunks(paymentIds, IN_CHUNK)) {
    const rows = await db.select().from(payments).where(inArray(payments.gatewayPaymentId, ids)).all();
    otherPayments.push(...rows.map((p) => ({ id: p.id, amount: p.amount, currency: p.currency, status: p.status, gatewayPaymentId: p.gatewayPaymentId, createdAt: p.createdAt })));
  }
  const otherRefunds: LocalRefund[] = [];
  for (const ids of chunks(refundIds, IN_CHUNK)) {
    const rows = await db.select({ r: refunds, paymentGatewayId: payments.gatewayPaymentId }).from(refunds).innerJoin(payments, eq(payments.id, refunds.paymentId)).where(inArray(refunds.gatewayRefundId, ids)).all();
    otherRefunds.push(...rows.map(({ r, paymentGatewayId }) => ({ id: r.id, amount: r.amount, currency: r.currency, status: r.status, gatewayRefundId: r.gatewayRefundId, paymentGatewayId, createdAt: r.createdAt })));
  }
  // A succeeded row first, so a gateway id reused by an earlier failed attempt does not hide the one that paid.
  otherPayments.sort((a, b) => Number(b.status === "succeeded") - Number(a.status === "succeeded"));
  return { otherPayments, otherRefunds };
}

export type Reconciliation = {
  date: string;
  gateway: GatewayName;
  gatewaySelection: GatewayChoice["selection"];
  note: string;
  basis: string;
  window: { from: string; to: string };
  totals: Record<string, { local: ReturnType<typeof sideOut>; gateway: ReturnType<typeof sideOut>; difference: ReturnType<typeof money> }>;
  matched: number;
  crossDayMatched: number;
  discrepancyCounts: Record<DiscrepancyKind, number>;
  resolved: number;
  discrepancies: ReturnType<typeof toDiscrepancy>[];
  matchedItems: (MatchedItem & { amountFormatted: string })[];
  creditNotes: Record<string, { issued: number; refunded: ReturnType<typeof money>; nonCash: ReturnType<typeof money>; unmatchedRefundIds: string[] }>;
  reconciledAt: string;
};

/**
 * Credit notes issued in the day, per currency: what they refunded through `gateway` (each such refund should be
 * among the day's matched refunds; a credit note refund still pending or failed is listed) and what moved no money.
 */
export async function creditNotesOfDay(db: Db, gateway: GatewayName, day: { start: number; end: number }, matched: MatchedItem[]): Promise<Reconciliation["creditNotes"]> {
  const rows = await db
    .select({ currency: creditNotes.currency, refundAmount: creditNotes.refundAmount, refundId: creditNotes.refundId, nonCash: creditNotes.creditBalanceAmount, offDue: creditNotes.invoiceCreditAmount, refundGateway: payments.gateway })
    .from(creditNotes)
    .leftJoin(refunds, eq(refunds.id, creditNotes.refundId))
    .leftJoin(payments, eq(payments.id, refunds.paymentId))
    .where(and(eq(creditNotes.status, "issued"), gte(creditNotes.createdAt, day.start), lt(creditNotes.createdAt, day.end)))
    .all();
  const matchedRefunds = new Set(matched.filter((m) => m.objectType === "refund").map((m) => m.localId));
  const out: Reconciliation["creditNotes"] = {};
  const acc: Record<string, { issued: number; refunded: number; nonCash: number; unmatched: string[] }> = {};
  for (const r of rows) {
    const a = (acc[r.currency] ??= { issued: 0, refunded: 0, nonCash: 0, unmatched: [] });
    a.issued += 1;
    a.nonCash += r.nonCash + r.offDue;
    if (r.refundId && r.refundGateway === gateway) {
      a.refunded += r.refundAmount;
      if (!matchedRefunds.has(r.refundId)) a.unmatched.push(r.refundId);
    }
  }
  for (const [currency, a] of Object.entries(acc).sort(([x], [y]) => x.localeCompare(y))) {
    out[currency] = { issued: a.issued, refunded: money(a.refunded, currency), nonCash: money(a.nonCash, currency), unmatchedRefundIds: a.unmatched.sort() };
  }
  return out;
}

export const sideOut = (s: { charges: number; refunds: number; net: number; count: number }, currency: string) => ({
  charges: money(s.charges, currency),
  refunds: money(s.refunds, currency),
  net: money(s.net, currency),
  count: s.count,
});

/**
 * Reconciles one UTC day of one gateway: compares, then records each finding as an open discrepancy (one row
 * per finding however often the day is re-run) and resolves the day's open discrepancies that no longer appear.
 */
export async function reconcileDay(s: Services, date: string, choice: GatewayChoice): Promise<Outcome<Reconciliation, "validation_failed" | "unprocessable" | "unavailable">> {
  const { db, audit: ctx } = s;
  const bounds = dayBounds(date);
  if (!bounds.ok) return bounds;
  const day = bounds.value;
  // Rows before the retention checkpoint are in R2 archives: the day would be reconciled against too few payments.
  const kept = await retained(db, ["payment_attempts"], day.start, "Reconciliation");
  if (!kept.ok) return kept;
  const gateway = await s.gateways.byName(choice.gateway);
  const window = { from: day.start - DAY_MS, to: day.end + DAY_MS };
  let txns;
  try {
    txns = await gateway.balanceTransactions(window.from, window.to);
  } catch (e) {
    if (e instanceof TooManyBalanceTransactions) {
      return fail("unprocessable", `${date}: ${choice.gateway} lists more than ${e.max} balance transactions from the day before to the day after, more than one invocation holds; ${USE_A_RUN(date, choice.gateway)}`, [{ path: "date", message: "too many balance transactions in the window" }]);
    }
    return fail("unavailable", `gateway ${choice.gateway} could not list its balance transactions: ${e instanceof Error ? e.message : String(e)}`, [], { "retry-after": "60" });
  }
  const local = await loadLocal(db, choice.gateway, day);
  if (local.payments.length + local.refunds.length > MAX_LOCAL_ROWS) {
    return fail("unprocessable", `${date} has more than ${MAX_LOCAL_ROWS} succeeded payments and refunds on ${choice.gateway}: more than one invocation holds; ${USE_A_RUN(date, choice.gateway)}`, [{ path: "date", message: "too many payments in the day" }]);
  }

  const localPaymentIds = new Set(local.payments.map((p) => p.gatewayPaymentId).filter((x): x is string => !!x));
  const localRefundIds = new Set(local.refunds.map((r) => r.gatewayRefundId).filter((x): x is string => !!x));
  const dayTxns = txns.filter((t) => t.created >= day.start && t.created < day.end);
  const wantedPayments = [...new Set(dayTxns.filter((t) => t.type === "charge").map((t) => t.paymentId ?? t.sourceId))].filter((id) => !localPaymentIds.has(id));
  const wantedRefunds = [...new Set(dayTxns.filter((t) => t.type === "refund").map((t) => t.sourceId))].filter((id) => !localRefundIds.has(id));
  const others = await loadByGatewayIds(db, wantedPayments, wantedRefunds);

  const charged = new Set(txns.filter((t) => t.type === "charge").map((t) => t.paymentId ?? t.sourceId));
  const toRetrieve = [...localPaymentIds].filter((id) => !charged.has(id));
  if (toRetrieve.length > MAX_RETRIEVES) {
    return fail("unprocessable", `${toRetrieve.length} of ${date}'s payments are missing from ${choice.gateway}'s balance transactions; asking for each exceeds one invocation's ${MAX_RETRIEVES} gateway calls (is the gateway's listing complete?); ${USE_A_RUN(date, choice.gateway)}`, [{ path: "date", message: "too many payments to look up one by one" }]);
  }
  const retrieved = new Map<string, GatewayPayment | null>();
  for (const ids of chunks(toRetrieve, RETRIEVE_CONCURRENCY)) {
    const answers = await Promise.all(ids.map((id) => gateway.retrieve(id)));
    ids.forEach((id, i) => retrieved.set(id, answers[i] ?? null));
  }

  const comparison = compareDay({ day, payments: local.payments, refunds: local.refunds, txns, ...others, retrieved });
  const { open, resolved } = await persist(db, date, choice.gateway, comparison, ctx);
  return ok({ ...summarize(date, choice, window, comparison, open, resolved, ctx.now), creditNotes: await creditNotesOfDay(db, choice.gateway, day, comparison.matched) });
}

/** A finding as an open discrepancy: a new row, or the existing one (re)opened with what was found now. */
export function upsertDiscrepancy(db: Db, r: Omit<DiscrepancyRow, "foundAt" | "resolvedByRun">) {
  // Found now (`createdAt` is the comparison's time): a run that started before this leaves it open (run.ts).
  return db
    .insert(discrepancies)
    .values({ ...r, foundAt: r.createdAt, resolvedByRun: null })
    .onConflictDoUpdate({ target: discrepancies.id, set: { localAmount: r.localAmount, gatewayAmount: r.gatewayAmount, currency: r.currency, detail: r.detail, status: "open", resolvedAt: null, foundAt: r.createdAt, resolvedByRun: null } });
}

async function persist(db: Db, date: string, gateway: GatewayName, comparison: Comparison, ctx: AuditContext) {
  const rows: Omit<DiscrepancyRow, "foundAt" | "resolvedByRun">[] = [];
  for (const f of comparison.findings) {
    rows.push({ id: await discrepancyId(date, gateway, f), date, gateway, ...f, status: "open", createdAt: ctx.now, resolvedAt: null });
  }
  const current = new Set(rows.map((r) => r.id));
  const upserts = rows.map((r) => upsertDiscrepancy(db, r));
  const previouslyOpen = await db.select({ id: discrepancies.id }).from(discrepancies).where(and(eq(discrepancies.date, date), eq(discrepancies.gateway, gateway), eq(discrepancies.status, "open"))).all();
  const stale = previouslyOpen.map((r) => r.id).filter((id) => !current.has(id));
  const resolves = chunks(stale, IN_CHUNK).map((ids) => db.update(discrepancies).set({ status: "resolved", resolvedAt: ctx.now }).where(and(inArray(discrepancies.id, ids), eq(discrepancies.status, "open"))));
  const statements: BatchItem<"sqlite">[] = [...upserts, ...resolves];
  // Large days go in several batches; only the last carries the audit row.
  const batches = chunks(statements, BATCH);
  for (const b of batches.slice(0, -1)) await db.batch(b as [BatchItem<"sqlite">, ...BatchItem<"sqlite">[]]);
  await commitWithAudit(
    db,
    batches.at(-1) ?? [],
    [{ action: "reconciliation.run", targetType: "reconciliation", targetId: `${gateway}:${date}`, after: { matched: comparison.matched.length, open: rows.length, resolved: stale.length } }],
    ctx,
  );
  const stored = [];
  for (const ids of chunks([...current], IN_CHUNK)) stored.push(...(await db.select().from(discrepancies).where(inArray(discrepancies.id, ids)).all()));
  stored.sort((a, b) => a.kind.localeCompare(b.kind) || (a.localId ?? a.gatewayId ?? "").localeCompare(b.localId ?? b.gatewayId ?? ""));
  return { open: stored, resolved: stale.length };
}

function summarize(date: string, choice: GatewayChoice, window: { from: number; to: number }, c: Comparison, open: DiscrepancyRow[], resolved: number, now: number): Omit<Reconciliation, "creditNotes"> {
  const totals: Reconciliation["totals"] = {};
  for (const [currency, t] of Object.entries(c.totals).sort(([a], [b]) => a.localeCompare(b))) {
    totals[currency] = { local: sideOut(t.local, currency), gateway: sideOut(t.gateway, currency), difference: money(t.local.net - t.gateway.net, currency) };
  }
  const discrepancyCounts: Record<DiscrepancyKind, number> = { missing_at_gateway: 0, missing_locally: 0, amount_mismatch: 0, status_mismatch: 0 };
  for (const f of c.findings) discrepancyCounts[f.kind] += 1;
  return {
    date,
    gateway: choice.gateway,
    gatewaySelection: choice.selection,
    note: choice.note,
    basis: BASIS,
    window: { from: iso(window.from), to: iso(window.to) },
    totals,
    matched: c.matched.length,
    crossDayMatched: c.matched.filter((m) => m.crossDay).length,
    discrepancyCounts,
    resolved,
    discrepancies: open.map(toDiscrepancy),
    matchedItems: c.matched.map((m) => ({ ...m, amountFormatted: formatMinor(m.amount, m.currency) })),
    reconciledAt: iso(now),
  };
}
