import { eq } from "drizzle-orm";
import type { Services } from "../../platform/services";
import type { BatchItem } from "drizzle-orm/batch";
import type { AuditContext, AuditEntry } from "../../platform/audit";
import { customers, invoices, payments } from "../../db/schema";
import { change, type ChangeSet } from "../../platform/change-set";
import type { EventDraft } from "../../platform/events";
import { invoicePaymentFailed } from "../invoices/lifecycle";
import { subscriptionAfterPayment } from "../subscriptions/transitions";
import { formatMinor } from "../../domain/money";
import { newId } from "../../lib/ids";
import { MAX_QUEUE_DELAY_SECONDS, retryConfig, retryDelaySeconds } from "./config";
import { notificationInserts, notificationsCommitted } from "../notifications/outbox";

type PaymentRow = typeof payments.$inferSelect;
type InvoiceRow = typeof invoices.$inferSelect;

export type Failure = { code: string; message: string; retryable: boolean };

export type FailurePlan = {
  /** When the next attempt is due, or null when collection gives up. */
  nextRetryAt: number | null;
  /** Invoice, subscription and notice statements for the caller's batch (the payment row is the caller's). */
  statements: BatchItem<"sqlite">[];
  audit: AuditEntry[];
  /** Events of the subscription's side (drafts, for a caller that commits with `commit`); the invoice's are inline in `statements`. */
  events: EventDraft[];
  /** After the batch committed: sends the next attempt (delays beyond a queue's 12 h go through the hourly cron) or the failure notice. */
  scheduleRetry: (s: Pick<Services, "queues">) => Promise<void>;
};

/**
 * What a declined attempt means, whoever reports it (the charge itself or a Stripe webhook): the next attempt with
 * the configured backoff, or — after the last one — the subscription past_due and one failure notice per attempt.
 */
export async function planFailure(s: Services, inv: InvoiceRow | undefined, payment: PaymentRow, failure: Failure, ctx: AuditContext, eventId?: string): Promise<FailurePlan> {
  const { db } = s;
  const realNow = ctx.now;
  // A test clock's invoice fails, waits and gives up in its clock's time: its retries and "uncollectible" move
  // only when the clock is advanced (see invoices/dunning.ts), never through a real-time queue delay.
  const onClock = Boolean(inv?.testClockId);
  const now = onClock ? ((await s.clock.frozen(inv!.testClockId)) ?? realNow) : realNow;
  const config = await retryConfig(db);
  const next = payment.attempt + 1;
  const retry = failure.retryable && next <= config.maxAttempts;
  const delay = retry ? retryDelaySeconds(config, next) : 0;
  const nextRetryAt = retry ? now + delay * 1000 : null;
  // The invoice's side (attempt count, last error, invoice.payment_failed while it is open) is its owner's.
  const invoiceSide = inv ? await invoicePaymentFailed(db, inv, { attempt: payment.attempt, error: `${failure.code}: ${failure.message}` }, { ...ctx, now }) : change();
  const statements: BatchItem<"sqlite">[] = [...invoiceSide.statements];
  const audit: AuditEntry[] = [
    { action: "payment.failed", targetType: "payment", targetId: payment.id, before: { status: payment.status }, after: { invoiceId: payment.invoiceId, attempt: payment.attempt, code: failure.code, nextRetryAt, ...(eventId ? { eventId } : {}) } },
  ];
  let noticeEventIds: string[] = [];
  let subscriptionSide: ChangeSet = change();
  if (!retry && inv?.status === "open") {
    // The subscription's side (active → past_due) is its owner's; its after-commit effects run with this plan's.
    if (inv.subscriptionId) {
      const sub = subscriptionAfterPayment(db, inv.subscriptionId, "failed_final", { ...ctx, now });
      statements.push(...sub.statements);
      audit.push(...sub.audit);
      subscriptionSide = sub;
    }
    const customer = await db.select({ email: customers.email }).from(customers).where(eq(customers.id, inv.customerId)).get();
    const outbox = notificationInserts(
      db,
      [
        {
          id: newId("ntf"),
          kind: "payment.failed_final",
          customerId: inv.customerId,
          invoiceId: inv.id,
          template: "payment_failed",
          payload: { invoiceNumber: inv.number, amountDue: formatMinor(inv.amountDue, inv.currency), amountDueMinor: inv.amountDue, currency: inv.currency, email: customer?.email ?? null, reason: failure.message, graceDays: config.gracePeriodDays },
          // One notice per attempt, whichever path reports the failure.
          dedupeKey: `payment_failed:${inv.id}:${payment.attempt}`,
          status: "queued",
          createdAt: now,
        },
      ],
      { ...ctx, now },
      { ignoreDuplicates: true },
    );
    statements.push(...outbox.statements);
    noticeEventIds = outbox.eventIds;
    audit.push({ action: "invoice.collection_exhausted", targetType: "invoice", targetId: inv.id, after: { attempts: payment.attempt, subscription: inv.subscriptionId ? "past_due" : null, uncollectibleAfterDays: config.gracePeriodDays } });
  }
  return {
    nextRetryAt,
    statements,
    audit,
    events: subscriptionSide.events,
    scheduleRetry: async (s) => {
      for (const effect of [...invoiceSide.after, ...subscriptionSide.after]) await effect();
      if (retry && delay <= MAX_QUEUE_DELAY_SECONDS && !onClock) {
        await s.queues.payments.send({ type: "payment.attempt", invoiceId: payment.invoiceId, attempt: next }, { delaySeconds: delay });
      }
      // A notice that lost the dedupe race was not inserted, nor its event: fan-out skips an unknown event id.
      notificationsCommitted(noticeEventIds);
    },
  };
}
