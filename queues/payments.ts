import { consumer } from "./dispatch";
import type { PaymentMessage } from "./messages";
import { queueNames } from "./messages";

// Payment collection is built in the Payments issue; until then attempts are retried, never dropped.
export const consumePayments = consumer<PaymentMessage>(queueNames.payments, {
  "payment.attempt": async (m) => ({ status: "retry", delaySeconds: 300, reason: `payment collection for ${m.invoiceId} is not available yet` }),
});
