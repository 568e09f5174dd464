import { and, asc, eq, gte, lt } from "drizzle-orm";
import type { Services } from "../../platform/services";
import { type Db } from "../../db/client";
import { commitWithAudit } from "../../platform/audit";
import { auditLog, refunds } from "../../db/schema";
import type { Actor } from "../../env";
import { formatMinor } from "../../domain/money";
import { newId } from "../../lib/ids";
import { iso } from "../../lib/time";
import { amountText, NO_CURRENCY, notRefundable, paymentById, recordRejected, refundByKey, remainingOf, reserve, settle, type PaymentRow, type RefundRow } from "./ledger";
import { systemActor } from "../../platform/actor";

/** One payment of a bulk refund, on the payments queue. */
export type BulkRefundItemMessage = { type: "refund.bulk_item"; bulkId: string; paymentId: string; reason: string; notify: boolean };
export type BulkItemResult = { status: "done" } | { status: "retry" | "requeue"; delaySeconds: number; reason: string };

export const REFUNDS_ACTOR: Actor = systemActor("refunds");
const BULK_ACTION = "refund.bulk_requested";
const SEND_CHUNK = 100;
/** How long a bulk item waits before asking PaymentGuard again. */
const FROZEN_RETRY_SECONDS = 300;
const QUEUE_MODE_RETRY_SECONDS = 60;
const GATEWAY_ERROR_RETRY_SECONDS = 60;

/** The gateway idempotency key of a bulk item: a redelivered message can never refund a payment twice. */
export const bulkKey = (bulkId: string, paymentId: string) => `bulk:${bulkId}:${paymentId}`;

export type BulkRequest = { bulkId: string; paymentIds: string[]; reason: string; notifyCustomers: boolean; requestedBy: string; requestedAt: number };

/**
 * Records the request (its payment ids live in the `after` of a `refund.bulk_requested` audit row: there is no
 * bulk table) and then queues one message per payment, so every queued item is known before it can run.
 */
export async function requestBulkRefund(s: Services, input: { paymentIds: string[]; reason: string; notifyCustomers: boolean }): Promise<{ bulkId: string; queued: number }> {
  const { db, audit: ctx } = s;
  const bulkId = newId("rfb");
  const paymentIds = [...new Set(input.paymentIds)];
  await commitWithAudit(db, [], [{ action: BULK_ACTION, targetType: "refund_bulk", targetId: bulkId, after: { paymentIds, reason: input.reason, notifyCustomers: input.notifyCustomers } }], ctx);
  const messages = paymentIds.map((paymentId) => ({ type: "refund.bulk_item", bulkId, paymentId, reason: input.reason, notify: input.notifyCustomers }) satisfies BulkRefundItemMessage);
  await s.queues.payments.sendAll(messages);
  return { bulkId, queued: paymentIds.length };
}

export async function bulkRequest(db: Db, bulkId: string): Promise<BulkRequest | null> {
  const row = await db
    .select({ after: auditLog.after, actor: auditLog.actor, at: auditLog.at })
    .from(auditLog)
    .where(and(eq(auditLog.targetId, bulkId), eq(auditLog.action, BULK_ACTION)))
    .limit(1)
    .get();
  if (!row?.after) return null;
  const after = JSON.parse(row.after) as { paymentIds: string[]; reason: string; notifyCustomers: boolean };
  return { bulkId, ...after, requestedBy: row.actor, requestedAt: row.at };
}

/** A bulk item's rows, found through the unique idempotency-key index (`bulk:<id>:` … `bulk:<id>;`). */
const bulkRows = (db: Db, bulkId: string) =>
  db
    .select()
    .from(refunds)
    .where(and(gte(refunds.idempotencyKey, `bulk:${bulkId}:`), lt(refunds.idempotencyKey, `bulk:${bulkId};`)))
    .orderBy(asc(refunds.createdAt))
    .all();

/** Per-payment results: a requested payment without a row has not been processed yet (pending). */
export async function bulkResults(db: Db, bulkId: string) {
  const req = await bulkRequest(db, bulkId);
  if (!req) return null;
  const byPayment = new Map((await bulkRows(db, bulkId)).map((r) => [r.paymentId, r]));
  const counts = { total: req.paymentIds.length, pending: 0, succeeded: 0, failed: 0 };
  const refunded: Record<string, number> = {};
  const results = req.paymentIds.map((paymentId) => {
    const r = byPayment.get(paymentId);
    counts[r?.status ?? "pending"] += 1;
    if (r?.status === "succeeded") refunded[r.currency] = (refunded[r.currency] ?? 0) + r.amount;
    return {
      paymentId,
      status: r?.status ?? ("pending" as const),
      refundId: r?.id ?? null,
      amount: r ? amountText(r.amount, r.currency) : null,
      amountMinor: r?.amount ?? null,
      currency: r?.currency ?? null,
      failureMessage: r?.failureMessage ?? null,
    };
  });
  return {
    bulkId,
    reason: req.reason,
    notifyCustomers: req.notifyCustomers,
    requestedBy: req.requestedBy,
    requestedAt: iso(req.requestedAt),
    counts,
    refunded: Object.entries(refunded)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([currency, minor]) => ({ currency, amount: formatMinor(minor, currency), amountMinor: minor })),
    results,
  };
}

function itemRow(m: BulkRefundItemMessage, payment: PaymentRow | undefined, createdBy: string, now: number, over: Partial<RefundRow>): RefundRow {
  return {
    id: newId("re"),
    paymentId: m.paymentId,
    amount: 0,
    currency: payment?.currency ?? NO_CURRENCY,
    reason: m.reason,
    status: "pending",
    gateway: payment?.gateway ?? null,
    gatewayRefundId: null,
    idempotencyKey: bulkKey(m.bulkId, m.paymentId),
    failureMessage: null,
    notify: m.notify,
    bulkId: m.bulkId,
    createdBy,
    createdAt: now,
    updatedAt: now,
    ...over,
  };
}

/**
 * Refunds the full remaining amount of one payment of a bulk refund, with the rules of a direct refund. Idempotent:
 * the refund row is keyed `bulk:<bulkId>:<paymentId>`, so a redelivery finds it (final → nothing to do; pending →
 * the gateway is asked again with the same key). Frozen or queue mode → retry later; nothing is reserved meanwhile.
 */
export async function processBulkRefundItem(queueS: Services, msg: BulkRefundItemMessage): Promise<BulkItemResult> {
  const s = queueS.as(REFUNDS_ACTOR);
  const db = s.db;
  const key = bulkKey(msg.bulkId, msg.paymentId);
  const existing = await refundByKey(db, key);
  if (existing && existing.status !== "pending") return { status: "done" };

  const guard = s.guard.stub;
  const admission = await guard.admit(`refund ${key}`);
  if (!admission.admitted) {
    const delaySeconds = admission.mode === "frozen" ? FROZEN_RETRY_SECONDS : QUEUE_MODE_RETRY_SECONDS;
    // A freeze can last hours: wait with fresh messages rather than spending the queue's retries (and landing in the DLQ).
    return { status: "requeue", delaySeconds, reason: `payments ${admission.mode}: ${admission.reason ?? "no reason given"}` };
  }
  try {
    const ctx = s.audit;
    const createdBy = (await bulkRequest(db, msg.bulkId))?.requestedBy ?? REFUNDS_ACTOR.id;
    // A few rounds: a concurrent refund of the same payment (or a duplicate delivery) may move the balance under us.
    for (let round = 0; round < 3; round++) {
      const row = round === 0 ? existing : await refundByKey(db, key);
      if (row && row.status !== "pending") return { status: "done" };
      const payment = await paymentById(db, msg.paymentId);
      if (row) {
        const outcome = await settle(s, row, payment!, "keep", admission);
        return outcome.kind === "error" ? { status: "retry", delaySeconds: GATEWAY_ERROR_RETRY_SECONDS, reason: outcome.message } : { status: "done" };
      }
      const why = !payment ? `payment ${msg.paymentId} does not exist` : (notRefundable(payment) ?? (remainingOf(payment) <= 0 ? `payment ${payment.id} is already fully refunded` : null));
      if (why) {
        await recordRejected(db, itemRow(msg, payment, createdBy, ctx.now, { status: "failed", failureMessage: why }), payment, ctx);
        return { status: "done" };
      }
      const fresh = itemRow(msg, payment, createdBy, ctx.now, { amount: remainingOf(payment!) });
      if ((await reserve(db, fresh, payment!, ctx)) === "reserved") {
        const outcome = await settle(s, fresh, payment!, "keep", admission);
        return outcome.kind === "error" ? { status: "retry", delaySeconds: GATEWAY_ERROR_RETRY_SECONDS, reason: outcome.message } : { status: "done" };
      }
    }
    return { status: "retry", delaySeconds: 5, reason: `payment ${msg.paymentId} kept changing; trying again` };
  } finally {
    await guard.release(admission.token);
  }
}
