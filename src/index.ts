import { app } from "./app";
import { scheduled } from "./scheduled";
import { queue } from "../queues";
import { logInvocationD1 } from "./db/round-trips";

export default {
  fetch: app.fetch,
  // Each queue batch and cron run logs its D1 round trips (the billing-run bench reads these lines).
  queue: (batch, env) => logInvocationD1(`queue:${batch.queue}`, () => queue(batch, env)),
  scheduled: (controller, env) => logInvocationD1(`cron:${controller.cron}`, () => scheduled(controller, env)),
} satisfies ExportedHandler<Env>;

export { UsageMeter } from "../durable-objects/usage-meter";
export { PaymentGuard } from "../durable-objects/payment-guard";
export { AuditAnchor } from "../durable-objects/audit-anchor";
