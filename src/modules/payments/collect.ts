import type { Services } from "../../platform/services";
import { desc, eq, sql } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type { Db } from "../../db/client";
import { builtOnce } from "../../db/prepared";
import type { AuditContext } from "../../platform/audit";
import { customers, invoiceLines, invoices, payments, subscriptions } from "../../db/schema";
import { change, commit, merge } from "../../platform/change-set";
import { invoiceLinesOf, invoicePaid } from "../invoices/lifecycle";
import { creditedLinesQuery } from "../invoices/creditable";
import type { CreditedLine } from "../../domain/creditable";
import { subscriptionAfterPayment } from "../subscriptions/transitions";
import { paymentFailed, paymentParked, paymentProcessing, paymentSucceeded } from "./lifecycle";
import type { GatewayName } from "../../gateways/types";
import type { ChargeResult } from "../../gateways/types";
import { newId } from "../../lib/ids";
import { unlessPaymentsStopped, withAdmission, type Admit, type GuardLease, type Refused } from "./guard";
import { isAssertionFailure } from "../../db/assert";
import { paymentMetricStatements } from "./metrics";
import { planFailure } from "./failure";

type PaymentRow = typeof payments.$inferSelect;
type InvoiceRow = typeof invoices.$inferSelect;

export type CollectOutcome =
  | { outcome: "succeeded" | "failed" | "pending"; payment: PaymentRow; retryScheduledAt?: number | null }
  | { outcome: "duplicate"; payment: PaymentRow }
  /** The gateway did not answer: the attempt stays processing and must be asked again with the same key. */
  | { outcome: "unknown"; payment: PaymentRow; error: string }
  | { outcome: "parked"; payment: PaymentRow; mode: "frozen" | "queue" }
  /** A direct charge (an API call) while payments are frozen: nothing was started (the caller answers 423). */
  | { outcome: "locked"; refused: Refused }
  | { outcome: "skipped"; reason: string };

export const chargeKey = (invoiceId: string, attempt: number) => `${invoiceId}:attempt:${attempt}`;
const FINAL = new Set(["succeeded", "failed", "canceled"]);

async function paymentByKey(db: Db, key: string) {
  return db.select().from(payments).where(eq(payments.idempotencyKey, key)).get();
}

/** The attempt row, created once per (invoice, attempt); a redelivered message finds the same row. */
async function ensurePayment(db: Db, inv: InvoiceRow, attempt: number, method: string | null, status: PaymentRow["status"], now: number): Promise<PaymentRow> {
  const key = chargeKey(inv.id, attempt);
  await db
    .insert(payments)
    .values({ id: newId("pay"), invoiceId: inv.id, customerId: inv.customerId, attempt, amount: inv.amountDue, currency: inv.currency, status, gateway: null, gatewayPaymentId: null, paymentMethod: method, idempotencyKey: key, failureCode: null, failureMessage: null, amountRefunded: 0, nextRetryAt: null, latencyMs: null, createdAt: now, updatedAt: now })
    .onConflictDoNothing();
  return (await paymentByKey(db, key))!;
}

export type CollectOptions = {
  attempt: number;
  direct: boolean;
  paymentMethod?: string | null;
  /** A queue consumer's batch lease (one guard call per window instead of a pair per charge); else admitted per charge. */
  lease?: GuardLease;
};

/** The reads of `loadForCharge`, built by drizzle once per isolate (`builtOnce`: every charge makes them). */
const chargeReads = builtOnce((db: Db) => {
  const invoiceId = sql.placeholder("invoiceId");
  const of = (column: typeof invoices.subscriptionId | typeof invoices.customerId) => sql`(SELECT ${column} FROM ${invoices} WHERE ${invoices.id} = ${invoiceId})`;
  return [
    db.select().from(invoices).where(eq(invoices.id, invoiceId)),
    db.select().from(payments).where(eq(payments.idempotencyKey, sql.placeholder("key"))),
    db.select().from(subscriptions).where(eq(subscriptions.id, of(invoices.subscriptionId))),
    db.select({ metadata: customers.metadata }).from(customers).where(eq(customers.id, of(invoices.customerId))),
    db.select().from(invoiceLines).where(eq(invoiceLines.invoiceId, invoiceId)),
    // Read with the invoice, for the invoice.paid event built from that same row (not a round trip of its own later).
    creditedLinesQuery(db, invoiceId),
  ] as const;
});

/** Everything a charge reads, in one D1 round trip. */
async function loadForCharge(db: Db, invoiceId: string, attempt: number) {
  const [inv, existing, sub, customer, lines, credited] = await db.batch(chargeReads(db, { invoiceId, key: chargeKey(invoiceId, attempt) }));
  return { inv: inv[0], existing: existing[0], sub: sub[0], customer: customer[0], lines, credited };
}

/**
 * Charges one invoice attempt, exactly once: the gateway sees a deterministic idempotency key per invoice and
 * attempt, a redelivered message or a crash after the gateway call finds the attempt row and asks the gateway
 * again with the same key (which answers with the first outcome), and PaymentGuard admits the charge first.
 * Frozen: direct calls get `locked` (the API answers 423), queued ones are parked. Queue mode: parked. Parked charges run on resume.
 * Three D1 round trips when it succeeds: the read, the attempt row (processing), the outcome's batch.
 */
export async function collectInvoice(s: Services, invoiceId: string, opts: CollectOptions): Promise<CollectOutcome> {
  const { db, audit: ctx } = s;
  const loaded = await loadForCharge(db, invoiceId, opts.attempt);
  const { inv, existing, sub } = loaded;
  if (!inv) return { outcome: "skipped", reason: `invoice ${invoiceId} does not exist` };
  if (existing && FINAL.has(existing.status)) return { outcome: "duplicate", payment: existing };
  if (inv.status !== "open" || inv.amountDue <= 0) return { outcome: "skipped", reason: `invoice ${inv.id} is ${inv.status} with ${inv.amountDue} due` };
  const method = opts.paymentMethod ?? existing?.paymentMethod ?? sub?.paymentMethod ?? null;
  const lines = inv.archiveKey === null ? loaded.lines : await invoiceLinesOf(db, inv);
  const admit: Admit = opts.lease ? (what, move) => opts.lease!.run(what, move) : (what, move) => s.guard.withAdmission(what, move);

  const admitted = await admit(`charge ${chargeKey(inv.id, opts.attempt)}`, async (admission) => {
    // An attempt that already reached a gateway stays on it: the same key elsewhere would be a new charge.
    const gateway = existing?.gateway ? await s.gateways.byName(existing.gateway as GatewayName, admission) : await s.gateways.charge(admission);
    const payment = await startAttempt(db, inv, existing, opts.attempt, { paymentMethod: method, gateway: gateway.name }, ctx);
    if (payment === STOPPED) return STOPPED;
    if (FINAL.has(payment.status)) return { outcome: "duplicate", payment } satisfies CollectOutcome;
    const started = Date.now();
    let result: ChargeResult;
    try {
      result = await gateway.charge({
        amountMinor: payment.amount,
        currency: payment.currency,
        customerId: inv.customerId,
        gatewayCustomerId: loaded.customer?.metadata.stripeCustomerId ?? null,
        paymentMethod: method,
        invoiceId: inv.id,
        idempotencyKey: payment.idempotencyKey,
        description: `Invoice ${inv.number ?? inv.id}`,
      });
    } catch (e) {
      // Unknown outcome (timeout, 5xx): the gateway may have charged. Never a new attempt (new key) for this:
      // the same attempt is asked again later with the same key, and the gateway answers with what it did.
      const message = e instanceof Error ? e.message : String(e);
      await db.update(payments).set({ failureCode: "gateway_error", failureMessage: message, latencyMs: Date.now() - started, updatedAt: ctx.now }).where(eq(payments.id, payment.id));
      return { outcome: "unknown", payment: { ...payment, gateway: gateway.name, status: "processing", failureCode: "gateway_error", failureMessage: message }, error: message } satisfies CollectOutcome;
    }
    const latencyMs = Date.now() - started;
    return recordOutcome(s, inv, { ...payment, paymentMethod: method, gateway: gateway.name, status: "processing" }, result, latencyMs, { planId: sub?.planId ?? null, lines, credited: loaded.credited });
  });
  if (admitted.admitted && admitted.value !== STOPPED) return admitted.value;
  // Refused by the guard, or admitted but frozen (or queue mode) before the attempt batch: never started.
  const refused = admitted.admitted ? await refusalNow(s) : admitted;
  if (refused.mode === "frozen" && opts.direct) return { outcome: "locked", refused };
  const parked = await ensurePayment(db, inv, opts.attempt, method, "parked", ctx.now);
  if (parked.status === "pending") await commit(db, paymentParked(db, parked, ctx).change, ctx);
  return { outcome: "parked", payment: { ...parked, status: "parked" }, mode: refused.mode };
}

const STOPPED = Symbol("payments stopped before the charge started");

/** The guard's refusal after an attempt batch found payments stopped (a resume since then is retried later). */
async function refusalNow(s: Services): Promise<Refused> {
  const state = await s.guard.stub.state();
  if (state.mode === "normal") throw new Error("payments resumed while this charge was being refused; retry it");
  return { admitted: false, mode: state.mode, reason: state.reason };
}

/**
 * The attempt row, processing, in one batch: created processing when this is its first delivery, else moved there
 * by its owner (pending | parked → processing; a redelivered processing one just updates its fields); the batch
 * reads the row back, so a concurrent delivery that created it first is seen as it is. Nothing is written (STOPPED)
 * when payments were frozen or put in queue mode since the admission (`unlessPaymentsStopped`).
 */
/** The attempt row created processing (unless it exists) and read back by its key: built by drizzle once per isolate. */
const attemptStatements = builtOnce((db: Db) => {
  const p = sql.placeholder;
  return [
    db
      .insert(payments)
      .values({ id: p("id"), invoiceId: p("invoiceId"), customerId: p("customerId"), attempt: p("attempt"), amount: p("amount"), currency: p("currency"), status: "processing", gateway: p("gateway"), gatewayPaymentId: null, paymentMethod: p("paymentMethod"), idempotencyKey: p("key"), failureCode: null, failureMessage: null, amountRefunded: 0, nextRetryAt: null, latencyMs: null, createdAt: p("now"), updatedAt: p("now") })
      .onConflictDoNothing(),
    db.select().from(payments).where(eq(payments.idempotencyKey, p("key"))),
  ] as const;
});

async function startAttempt(db: Db, inv: InvoiceRow, existing: PaymentRow | undefined, attempt: number, patch: Pick<PaymentRow, "paymentMethod" | "gateway">, ctx: AuditContext): Promise<PaymentRow | typeof STOPPED> {
  const key = chargeKey(inv.id, attempt);
  const move = existing && !FINAL.has(existing.status) ? paymentProcessing(db, existing, patch, ctx).change : change();
  const [insert, readBack] = attemptStatements(db, { id: newId("pay"), invoiceId: inv.id, customerId: inv.customerId, attempt, amount: inv.amountDue, currency: inv.currency, gateway: patch.gateway, paymentMethod: patch.paymentMethod, key, now: ctx.now });
  const cs = merge(change({ statements: [unlessPaymentsStopped(db), ...(existing ? [] : [insert])] }), move, change({ statements: [readBack] }));
  let results: unknown[];
  try {
    ({ results } = await commit(db, cs, ctx));
  } catch (e) {
    if (isAssertionFailure(e)) return STOPPED;
    throw e;
  }
  const row = (results[cs.statements.length - 1] as PaymentRow[])[0];
  if (!row) throw new Error(`payment attempt ${key} was not written`);
  return row;
}

async function recordOutcome(
  s: Services,
  inv: InvoiceRow,
  payment: PaymentRow,
  result: ChargeResult,
  latencyMs: number,
  known: { planId: string | null; lines: Awaited<ReturnType<typeof invoiceLinesOf>>; credited: CreditedLine[] },
): Promise<CollectOutcome> {
  const { db, audit: ctx } = s;
  const base = { gateway: payment.gateway, gatewayPaymentId: result.gatewayPaymentId, latencyMs, updatedAt: ctx.now };
  const planLabel = known.planId ?? "none";
  const metrics = paymentMetricStatements(db, { gateway: payment.gateway ?? "unknown", status: result.status, currency: payment.currency, plan: planLabel, amountMinor: payment.amount, latencyMs });
  const livemode = inv.testClockId ? false : undefined;
  if (result.status === "succeeded") {
    // A test clock's invoice is paid in its clock's time (paidAt and the events), as it fails in it (planFailure).
    const paidCtx = inv.testClockId ? { ...ctx, now: (await s.clock.frozen(inv.testClockId)) ?? ctx.now } : ctx;
    // The invoice's event goes first in the batch (and the stream): invoice.paid, then payment.succeeded.
    const settled = paymentSucceeded(db, payment, base, paidCtx, { livemode });
    const cs = merge(
      await invoicePaid(db, inv, payment, paidCtx, { lines: known.lines, credited: known.credited }),
      settled.change,
      ...(inv.subscriptionId ? [subscriptionAfterPayment(db, inv.subscriptionId, "succeeded", paidCtx)] : []),
      change({
        statements: metrics,
        audit: [{ action: "payment.processed", targetType: "payment", targetId: payment.id, after: { invoiceId: inv.id, amount: payment.amount, currency: payment.currency, gateway: payment.gateway, gatewayPaymentId: result.gatewayPaymentId, attempt: payment.attempt } }],
      }),
    );
    await commit(db, cs, paidCtx);
    return { outcome: "succeeded", payment: settled.after };
  }
  if (result.status === "pending") {
    // Still processing: its fields move, its status does not (no transition).
    await db.batch([db.update(payments).set(base).where(eq(payments.id, payment.id)), ...metrics] as [BatchItem<"sqlite">, ...BatchItem<"sqlite">[]]);
    return { outcome: "pending", payment: { ...payment, ...base, status: "processing" } };
  }
  // Failed: retry with backoff, or give up per the retry configuration.
  const plan = await planFailure(s, inv, payment, { code: result.failureCode, message: result.failureMessage, retryable: result.retryable }, ctx);
  const failed = paymentFailed(db, payment, { ...base, failureCode: result.failureCode, failureMessage: result.failureMessage, nextRetryAt: plan.nextRetryAt }, ctx, { livemode });
  // The payment's row and event first, then the invoice's and subscription's (planFailure), then the metrics.
  await commit(db, merge(failed.change, change({ statements: [...plan.statements, ...metrics], audit: plan.audit, events: plan.events })), ctx);
  await plan.scheduleRetry(s);
  return { outcome: "failed", payment: failed.after, retryScheduledAt: plan.nextRetryAt };
}

/** Latest attempt of an invoice (the next one is this + 1). */
export async function latestAttempt(db: Db, invoiceId: string): Promise<PaymentRow | undefined> {
  return db.select().from(payments).where(eq(payments.invoiceId, invoiceId)).orderBy(desc(payments.attempt)).limit(1).get();
}
