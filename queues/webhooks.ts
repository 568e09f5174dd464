import { messageServices, type Services } from "../src/platform/services";
import { adoptNotificationsWithoutEvent } from "../src/modules/notifications/outbox";
import { consumer, type HandlerResult } from "./dispatch";
import type { WebhookMessage } from "./messages";
import { queueNames } from "./messages";
import { applyStripeEvent } from "../src/modules/webhooks/apply";
import { deliverScheduled, fanOut } from "../src/modules/webhook-endpoints/delivery";

/**
 * `notification.send` is how notifications were delivered before they became `customer.notification` events: a
 * message still in the queue from then gets its notification an event (when it has none), which the built-in
 * endpoint delivers.
 */
async function adoptNotification(m: Extract<WebhookMessage, { type: "notification.send" }>, s: Services): Promise<HandlerResult> {
  await adoptNotificationsWithoutEvent(s.db, s.clock.wall, 1, [m.notificationId]);
  return { status: "done" };
}

// Verified Stripe events, applied in any order (an event whose payment is not known yet is retried).
export const consumeWebhooks = consumer<WebhookMessage>(queueNames.webhooks, {
  "stripe.event": (m, s) => applyStripeEvent(s, m.eventId),
  "notification.send": adoptNotification,
  "events.fanout": (m, s) => fanOut(s, m.eventIds),
  "webhook.deliver": (m, s) => deliverScheduled(s, m.deliveryId),
}, { services: messageServices, concurrency: 6 }); // deliveries are outbound fetches: Cloudflare opens six connections per invocation at a time
