import { and, eq, sql } from "drizzle-orm";
import { dbOf } from "../src/db/client";
import { commitWithAudit } from "../src/platform/audit";
import { assertChanged, isAssertionFailure } from "../src/db/assert";
import { customers, invoices, notifications } from "../src/db/schema";
import { MAX_DELIVERY_ATTEMPTS, notificationEnvelope, postNotification } from "../src/modules/notifications/delivery";
import type { Actor } from "../src/env";
import { backoffSeconds, consumer, type HandlerResult } from "./dispatch";
import type { WebhookMessage } from "./messages";
import { queueNames } from "./messages";
import { applyStripeEvent } from "../src/modules/webhooks/apply";
import { deliverScheduled, fanOut } from "../src/modules/webhook-endpoints/delivery";
import { systemActor } from "../src/platform/actor";
import { ensureLink } from "../src/modules/documents/links";
import { documentsConfig } from "../src/modules/documents/store";

const NOTIFIER: Actor = systemActor("notifications");

/**
 * Delivers one outbound notification: a signed POST to NOTIFY_WEBHOOK_URL (see notifications/delivery.ts). Sent
 * means the receiver answered 2xx. A timeout, 408, 429 or 5xx is retried with backoff until MAX_DELIVERY_ATTEMPTS;
 * a refusal (other 4xx) or missing configuration fails the notification for good, with the reason kept. A
 * notification already sent or failed is acked without another POST. Two deliveries racing both POST the same
 * `webhook-id`, which receivers dedupe on (as Standard Webhooks asks).
 */
export async function sendNotification(m: Extract<WebhookMessage, { type: "notification.send" }>, env: Env, queueAttempts = 1): Promise<HandlerResult> {
  const db = dbOf(env);
  const row = await db.select().from(notifications).where(eq(notifications.id, m.notificationId)).get();
  if (!row) {
    // Rows are committed before their message is sent, so a missing one was never written: nothing to deliver.
    console.log(JSON.stringify({ level: "warn", msg: "notification not found; message dropped", notificationId: m.notificationId }));
    return { status: "done" };
  }
  if (row.status !== "queued") return { status: "done" };
  const [customer, invoice] = await Promise.all([
    db.select({ id: customers.id, email: customers.email, name: customers.name }).from(customers).where(eq(customers.id, row.customerId)).get(),
    row.invoiceId
      ? db
          .select({ id: invoices.id, number: invoices.number, status: invoices.status, currency: invoices.currency, total: invoices.total, amountDue: invoices.amountDue, dueAt: invoices.dueAt })
          .from(invoices)
          .where(eq(invoices.id, row.invoiceId))
          .get()
      : undefined,
  ]);
  const now = Date.now();
  // Every invoice notification links to the invoice's hosted page and PDF (a live link, issued now if it has none).
  let links: { hostedUrl: string; pdfUrl: string } | null = null;
  if (invoice && invoice.status !== "draft") {
    const config = await documentsConfig(db);
    const link = await ensureLink(env, db, invoice.id, config.hostedLinkDays, { actor: NOTIFIER, now }, config.publicBaseUrl);
    links = { hostedUrl: link.url, pdfUrl: link.pdfUrl };
  }
  const outcome = await postNotification(env, notificationEnvelope(row, customer, invoice, links), now);
  const attempts = row.attempts + 1;
  const stillQueued = and(eq(notifications.id, row.id), eq(notifications.status, "queued"));

  if (outcome.kind === "retry" && attempts < MAX_DELIVERY_ATTEMPTS) {
    await db.update(notifications).set({ attempts: sql`${notifications.attempts} + 1`, lastError: outcome.error }).where(stillQueued);
    return { status: "retry", delaySeconds: backoffSeconds(queueAttempts, 30), reason: outcome.error };
  }
  const delivered = outcome.kind === "delivered";
  const lastError = delivered ? null : outcome.kind === "retry" ? `${outcome.error} (gave up after ${attempts} attempts)` : outcome.error;
  try {
    await commitWithAudit(
      db,
      [db.update(notifications).set({ status: delivered ? "sent" : "failed", sentAt: delivered ? now : null, attempts: sql`${notifications.attempts} + 1`, lastError }).where(stillQueued), assertChanged(db)],
      [
        {
          action: delivered ? "notification.sent" : "notification.failed",
          targetType: "notification",
          targetId: row.id,
          before: { status: row.status },
          after: { status: delivered ? "sent" : "failed", kind: row.kind, invoiceId: row.invoiceId, attempts, ...(delivered ? { webhookStatus: outcome.status } : { error: lastError }) },
        },
      ],
      { actor: NOTIFIER, now },
    );
  } catch (e) {
    if (!isAssertionFailure(e)) throw e; // a racing delivery recorded it first
  }
  if (!delivered) console.log(JSON.stringify({ level: "warn", msg: "notification not delivered", notificationId: row.id, error: lastError }));
  return { status: "done" };
}

// Verified Stripe events, applied in any order (an event whose payment is not known yet is retried).
export const consumeWebhooks = consumer<WebhookMessage>(queueNames.webhooks, {
  "stripe.event": (m, env) => applyStripeEvent(env, m.eventId),
  "notification.send": sendNotification,
  "events.fanout": (m, env) => fanOut(env, m.eventIds),
  "webhook.deliver": (m, env) => deliverScheduled(env, m.deliveryId),
});
