import type { Actor } from "../src/env";
import type { VerifyProgress } from "../src/modules/audit/verify";
import type { RetryFailedCursor, RetryFailedInput } from "../src/modules/subscriptions/retry-failed";

/** Every message on our queues; `type` picks the handler. */
export type JobMessage =
  | { type: "meters.resync" }
  | { type: "idempotency.purge" }
  | { type: "audit.verify"; reportKey: string }
  | { type: "billing.run_due"; subscriptionId: string }
  /** The next pages of events past retention (archived to R2, then deleted). */
  | { type: "events.archive" }
  /** After a finalization or void committed: render the invoice's PDF to R2 and make sure it has a hosted link. */
  | { type: "invoice.document"; invoiceId: string }
  /** After a credit note was issued: its PDF to R2. */
  | { type: "credit_note.document"; creditNoteId: string };

export type PaymentMessage =
  | { type: "payment.attempt"; invoiceId: string; attempt: number }
  | { type: "refund.bulk_item"; bulkId: string; paymentId: string; reason: string; notify: boolean }
  /** The next page of parked charges after a resume (each page releases its charges exactly once). */
  | { type: "payments.release_parked" };
/** Inbound Stripe events and webhook endpoint deliveries (customer notifications are one endpoint: we_notifications). */
export type WebhookMessage =
  | { type: "stripe.event"; eventId: string }
  /** Sent before notifications became events: gives the notification its `customer.notification` event if missing. */
  | { type: "notification.send"; notificationId: string }
  /** Committed events to fan out: one `webhook_deliveries` row per subscribed endpoint. */
  | { type: "events.fanout"; eventIds: string[] }
  /** One attempt of a delivery when it is due (retries are fresh delayed messages, up to 12 h each). */
  | { type: "webhook.deliver"; deliveryId: string };

/**
 * Bounded units of the billing run, one per invocation (the tasks queue delivers one message per batch): a cron
 * task, the next page of a paging job (keyset cursor `after`), the next stretch of a test-clock advance.
 */
export type TaskMessage =
  /** `after`: where a paged task goes on (its previous invocation's cursor). */
  | { type: "cron.task"; cron: string; task: string; scheduledTime: number; after?: string; /** Pages done before this one (a continuation's number; absent on the first). */ step?: number }
  /** Due subscriptions after `after` (by id) at `now` go to the jobs queue as billing.run_due, a few pages per message. */
  | { type: "billing.enqueue_due"; now: number; after: string | null }
  /** Drafts after `after` (by id) of real time (`testClockId` null) or of one clock are finalized, a page per message. */
  | { type: "invoices.finalize_drafts"; now: number; after: string | null; testClockId: string | null }
  /** customer.subscription.trial_will_end for real-time trials ending within three days of `now`, a page per message. */
  | { type: "subscriptions.trial_will_end"; now: number }
  /** invoice.upcoming for live subscriptions renewing soon after `now`, a page (by id after `after`) per message. */
  | { type: "invoices.upcoming"; now: number; after: string | null }
  /** The next steps of a test clock moving to `target` (epoch ms). */
  | { type: "test_clock.advance"; clockId: string; target: number; meterAfter?: string }
  /** The rest of a retry-failed run (src/modules/subscriptions/retry-failed.ts), from its cursor, at the request's time, as its requester (`actor`; absent on messages queued before it was carried). */
  | { type: "invoices.retry_failed"; input: RetryFailedInput; cursor: RetryFailedCursor; now: number; actor?: Actor; /** Steps done before this one (platform/continuations.ts). */ step?: number }
  /** The next stretch of the weekly audit verification (src/modules/audit/verify.ts), carrying where it stands. */
  | { type: "audit.verify_continue"; reportKey: string; progress: VerifyProgress; startedAt: number; rowsPerInvocation: number }
  /** The next pages of a retention run (src/modules/retention): rows of `kind` after `after` move to R2. */
  | { type: "retention.run"; runId: string; kind: "events" | "invoice_lines" | "payment_attempts" | "audit"; after: string | null }
  /** The next slice of a backup or emergency export (src/modules/exports/dump.ts) writing under `prefix`. */
  | { type: "dump.continue"; prefix: string; runId: string; step: number }
  /** The next step of a reconciliation run (src/modules/reconciliation/run.ts); a duplicate or late step does nothing. */
  | { type: "reconciliation.continue"; runId: string; step: number }
  /** The rest of POST /admin/payments/queue-failed: failed payments after `after` (created_at, id), oldest first. */
  | { type: "payments.requeue_failed"; after: { createdAt: number; id: string }; now: number; actor: Actor; /** Steps done before this one (platform/continuations.ts). */ step?: number }
  /** The rest of POST /api/v1/invoices/send-reminders: overdue invoices after `after` (by id), at the request's time. */
  | { type: "invoices.send_reminders"; input: { daysOverdue: number; template: string }; after: string; now: number; actor: Actor; /** Steps done before this one (platform/continuations.ts). */ step?: number }
  /** The rest of POST /admin/notifications/payment-issue: affected customers after `after` (by id). */
  | { type: "notifications.payment_issue"; input: { template: string; affectedGateway: "stripe" | "sandbox" }; after: string; now: number; actor: Actor; /** Steps done before this one (platform/continuations.ts). */ step?: number };

export type QueueMessage = JobMessage | PaymentMessage | WebhookMessage | TaskMessage;

export const queueNames = {
  payments: "billing-payments",
  webhooks: "billing-webhooks",
  jobs: "billing-jobs",
  tasks: "billing-tasks",
  dlq: "billing-dlq",
  /** Where a dead letter goes when the DLQ consumer cannot store it (its consumer's own dead-letter queue is billing-dlq). */
  dlqOverflow: "billing-dlq-overflow",
} as const;
