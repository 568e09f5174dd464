import { and, eq, ne } from "drizzle-orm";
import { dbOf } from "../src/db/client";
import { commitWithAudit } from "../src/db/audit";
import { assertChanged, isAssertionFailure } from "../src/db/assert";
import { notifications } from "../src/db/schema";
import type { Actor } from "../src/env";
import { consumer, type HandlerResult } from "./dispatch";
import type { WebhookMessage } from "./messages";
import { queueNames } from "./messages";
import { applyStripeEvent } from "../src/modules/webhooks/apply";

const NOTIFIER: Actor = { id: "system:notifications", kind: "system", role: "system", scopes: [] };

/**
 * Delivers one outbound notification. There is no e-mail provider yet: the `notifications` row (the outbox)
 * plus this message are the integration point. A provider call belongs here, before the row is marked sent;
 * until then "sent" means handed over. Idempotent: a notification already sent is acked without change.
 */
export async function sendNotification(m: Extract<WebhookMessage, { type: "notification.send" }>, env: Env): Promise<HandlerResult> {
  const db = dbOf(env);
  const row = await db.select().from(notifications).where(eq(notifications.id, m.notificationId)).get();
  if (!row) {
    // Rows are committed before their message is sent, so a missing one was never written: nothing to deliver.
    console.log(JSON.stringify({ level: "warn", msg: "notification not found; message dropped", notificationId: m.notificationId }));
    return { status: "done" };
  }
  if (row.status === "sent") return { status: "done" };
  const now = Date.now();
  try {
    await commitWithAudit(
      db,
      [db.update(notifications).set({ status: "sent", sentAt: now }).where(and(eq(notifications.id, row.id), ne(notifications.status, "sent"))), assertChanged(db)],
      [{ action: "notification.sent", targetType: "notification", targetId: row.id, before: { status: row.status }, after: { status: "sent", kind: row.kind, invoiceId: row.invoiceId } }],
      { actor: NOTIFIER, now },
    );
  } catch (e) {
    if (!isAssertionFailure(e)) throw e; // a duplicate delivery marked it first
  }
  return { status: "done" };
}

// Verified Stripe events, applied in any order (an event whose payment is not known yet is retried).
export const consumeWebhooks = consumer<WebhookMessage>(queueNames.webhooks, {
  "stripe.event": (m, env) => applyStripeEvent(env, m.eventId),
  "notification.send": sendNotification,
});
