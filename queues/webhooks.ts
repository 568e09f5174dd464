import { consumer } from "./dispatch";
import type { WebhookMessage } from "./messages";
import { queueNames } from "./messages";

// Applying Stripe events is built in the Payments issue; until then they are retried, never dropped.
export const consumeWebhooks = consumer<WebhookMessage>(queueNames.webhooks, {
  "stripe.event": async (m) => ({ status: "retry", delaySeconds: 300, reason: `stripe event ${m.eventId} cannot be applied yet` }),
});
