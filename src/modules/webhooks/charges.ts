import { and, eq, sql } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type Stripe from "stripe";
import type { AuditEntry } from "../../platform/audit";
import { change, merge, type ChangeSet } from "../../platform/change-set";
import { eventsCommitted } from "../../platform/events";
import { asStatements, chargeRefundedEvent, createSettled, fail, linkGatewayRefund, refundLifecycle, succeed, type RefundStatus } from "../refunds/lifecycle";
import { payments, refunds } from "../../db/schema";
import { formatMinor } from "../../domain/money";
import { newId } from "../../lib/ids";
import { iso } from "../../lib/time";
import { notificationInserts, notificationsCommitted } from "../notifications/outbox";
import { findPayment, idOf } from "./lookup";
import { settle, wait, WEBHOOK_ACTOR, type Commit, type Handler } from "./types";

type RefundRow = typeof refunds.$inferSelect;
const refundStatusOf = (s: string | null | undefined): RefundStatus =>
  s === "succeeded" ? "succeeded" : s === "failed" || s === "canceled" ? "failed" : "pending";

/**
 * The charge was refunded (in our API or in Stripe's dashboard): refund rows follow the charge's refund list (a
 * missing one is created, reason stripe_dashboard) and `amountRefunded` follows the charge. Status moves go
 * through the refund lifecycle (pending → succeeded | failed, succeeded → failed when the bank returns a refund)
 * and rows are never removed, so an older event delivered late cannot undo a newer one. Each move carries its
 * refund event; a charge with a newly succeeded refund gets one `charge.refunded` with the payment after it.
 */
export const chargeRefunded: Handler = async ({ db, now, eventId }, object) => {
  const charge = object as unknown as Stripe.Charge;
  const payment = await findPayment(db, { ids: [idOf(charge.payment_intent), charge.id], metadata: charge.metadata });
  if (!payment) return wait(`no local payment for charge ${charge.id} yet`);
  const currency = String(charge.currency ?? payment.currency).toUpperCase();
  const local = await db.select().from(refunds).where(eq(refunds.paymentId, payment.id)).all();

  type Plan =
    | { kind: "create"; row: RefundRow }
    | { kind: "move"; row: RefundRow; to: "succeeded" | "failed"; gatewayRefundId: string }
    | { kind: "link"; row: RefundRow; gatewayRefundId: string };
  const plans: Plan[] = [];
  const created = (amount: number, status: RefundStatus, gatewayRefundId: string | null, idempotencyKey: string, createdAt: number) =>
    plans.push({
      kind: "create",
      row: { id: newId("re"), paymentId: payment.id, amount, currency, reason: "stripe_dashboard", status, gateway: payment.gateway ?? "stripe", gatewayRefundId, idempotencyKey, failureMessage: null, notify: false, bulkId: null, createdBy: WEBHOOK_ACTOR.id, createdAt, updatedAt: now },
    });

  const listed = charge.refunds?.data;
  if (Array.isArray(listed)) {
    for (const r of listed) {
      const status = refundStatusOf(r.status);
      const mine = local.find((l) => l.gatewayRefundId === r.id) ?? local.find((l) => l.gatewayRefundId === null && r.metadata?.idempotencyKey && l.idempotencyKey === r.metadata.idempotencyKey);
      if (mine) {
        if (status !== mine.status && status !== "pending" && refundLifecycle.canMove(mine.status, status)) plans.push({ kind: "move", row: mine, to: status, gatewayRefundId: r.id });
        else if (mine.gatewayRefundId !== r.id) plans.push({ kind: "link", row: mine, gatewayRefundId: r.id });
      } else if (status !== "failed") {
        created(r.amount, status, r.id, `stripe_refund:${r.id}`, typeof r.created === "number" ? r.created * 1000 : now);
      }
    }
  } else {
    // Since API version 2022-11-15 a charge no longer carries its refunds: record the difference as one refund.
    const recorded = local.filter((l) => l.status !== "failed").reduce((s, l) => s + l.amount, 0);
    const missing = (charge.amount_refunded ?? 0) - recorded;
    if (missing > 0) created(missing, "succeeded", null, `stripe_charge:${charge.id}:refunded_to:${charge.amount_refunded}`, now);
  }

  // amountRefunded is what the refunds module keeps: every refund not failed (pending ones are reserved), and at
  // least what Stripe says was refunded. Computed in SQL at the end of the batch, so a refund reserved by our own
  // API meanwhile is counted, not overwritten.
  const gatewayRefunded = charge.amount_refunded ?? 0;
  const failedNow = new Set(plans.flatMap((p) => (p.kind === "move" && p.to === "failed" ? [p.row.id] : [])));
  const createdAmount = plans.reduce((s, p) => s + (p.kind === "create" && p.row.status !== "failed" ? p.row.amount : 0), 0);
  const expected = Math.max(gatewayRefunded, local.filter((l) => !failedNow.has(l.id) && l.status !== "failed").reduce((s, l) => s + l.amount, 0) + createdAmount);
  const paymentAfter = expected === payment.amountRefunded ? payment : { ...payment, amountRefunded: expected, updatedAt: now };

  const sets: ChangeSet[] = [];
  const link: BatchItem<"sqlite">[] = [];
  const audit: AuditEntry[] = [];
  let succeededNow = false;
  for (const p of plans) {
    if (p.kind === "create") {
      succeededNow ||= p.row.status === "succeeded";
      sets.push(createSettled(db, p.row, paymentAfter, { action: "refund.created_by_webhook", targetType: "refund", targetId: p.row.id, after: { paymentId: payment.id, amount: p.row.amount, currency, status: p.row.status, gatewayRefundId: p.row.gatewayRefundId, eventId } }));
    } else if (p.kind === "move") {
      const entry: AuditEntry = { action: "refund.synced_by_webhook", targetType: "refund", targetId: p.row.id, before: { status: p.row.status, gatewayRefundId: p.row.gatewayRefundId }, after: { status: p.to, gatewayRefundId: p.gatewayRefundId, eventId } };
      if (p.to === "succeeded") {
        succeededNow = true;
        sets.push(succeed(db, p.row, { gateway: p.row.gateway ?? payment.gateway ?? "stripe", gatewayRefundId: p.gatewayRefundId, paymentAfter, audit: entry }, { now }));
      } else {
        // The amount comes back through the recomputed amountRefunded below.
        sets.push(fail(db, p.row, { failureMessage: p.row.failureMessage ?? "refund failed at the gateway", gatewayRefundId: p.gatewayRefundId, giveBack: false, paymentAfter, audit: entry }, { now }));
      }
    } else {
      link.push(linkGatewayRefund(db, p.row, { gatewayRefundId: p.gatewayRefundId }, now));
      audit.push({ action: "refund.synced_by_webhook", targetType: "refund", targetId: p.row.id, before: { status: p.row.status, gatewayRefundId: p.row.gatewayRefundId }, after: { status: p.row.status, gatewayRefundId: p.gatewayRefundId, eventId } });
    }
  }

  const target = sql`max(${gatewayRefunded}, (SELECT coalesce(sum(r.amount), 0) FROM refunds r WHERE r.payment_id = ${payment.id} AND r.status <> 'failed'))`;
  const cs = merge(
    change({ statements: link, audit }),
    ...sets,
    change({
      statements: [db.update(payments).set({ amountRefunded: target, updatedAt: now }).where(and(eq(payments.id, payment.id), sql`${payments.amountRefunded} <> ${target}`))],
      audit:
        expected !== payment.amountRefunded
          ? [{ action: "payment.refund_synced_by_webhook", targetType: "payment", targetId: payment.id, before: { amountRefunded: payment.amountRefunded }, after: { amountRefunded: expected, gatewayAmountRefunded: gatewayRefunded, eventId } }]
          : [],
      events: succeededNow ? [chargeRefundedEvent(payment, paymentAfter)] : [],
    }),
  );
  const { statements, audit: entries, eventIds } = asStatements(db, cs, { now, requestId: eventId });
  const decision = settle("processed", null, statements, entries);
  if (eventIds.length) decision.afterCommit = async () => eventsCommitted(eventIds);
  return decision;
};

/** A dispute was opened: audited on the payment, and a notification queued through the outbox. */
export const disputeCreated: Handler = async ({ env, db, now, eventId }, object) => {
  const dispute = object as unknown as Stripe.Dispute;
  const payment = await findPayment(db, { ids: [idOf((dispute as { payment_intent?: unknown }).payment_intent), idOf(dispute.charge)], metadata: dispute.metadata });
  if (!payment) return wait(`no local payment for the charge of dispute ${dispute.id} yet`);
  const currency = String(dispute.currency ?? payment.currency).toUpperCase();
  const amount = typeof dispute.amount === "number" ? dispute.amount : payment.amount;
  const dueBy = dispute.evidence_details?.due_by;
  const notificationId = newId("ntf");
  const details = { disputeId: dispute.id, paymentId: payment.id, invoiceId: payment.invoiceId, amount: formatMinor(amount, currency), amountMinor: amount, currency, reason: dispute.reason ?? null, evidenceDueBy: typeof dueBy === "number" ? iso(dueBy * 1000) : null };
  const outbox = notificationInserts(
    db,
    [{ id: notificationId, kind: "payment.disputed", customerId: payment.customerId, invoiceId: payment.invoiceId, template: "payment_disputed", payload: details, dedupeKey: `dispute:${dispute.id}`, status: "queued", createdAt: now }],
    { now },
    { ignoreDuplicates: true },
  );
  const decision: Commit = settle(
    "processed",
    null,
    outbox.statements,
    [{ action: "payment.disputed", targetType: "payment", targetId: payment.id, after: { ...details, status: dispute.status ?? null, eventId, notificationId } }],
  );
  // The row and its event are committed together; a lost hand-off is swept up by the endpoints' hourly sweep.
  decision.afterCommit = async () => notificationsCommitted(outbox.eventIds);
  return decision;
};
