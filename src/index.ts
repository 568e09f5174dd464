import { app } from "./app";
import { scheduled } from "./scheduled";
import { queue } from "../queues";
import { withLimits } from "./platform/limits";

// Each invocation runs under Cloudflare's per-invocation limits, counted when LIMITS is set (src/platform/limits.ts).
export default {
  fetch: (req, env, ctx) => withLimits(env, `${req.method} ${new URL(req.url).pathname}`, (e) => Promise.resolve(app.fetch(req, e, ctx))),
  queue: (batch, env) => withLimits(env, `queue ${batch.queue} (${batch.messages.length} messages)`, (e) => queue(batch, e)),
  scheduled: (controller, env) => withLimits(env, `cron ${controller.cron}`, (e) => scheduled(controller, e)),
} satisfies ExportedHandler<Env>;

export { UsageMeter } from "../durable-objects/usage-meter";
export { PaymentGuard } from "../durable-objects/payment-guard";
export { AuditAnchor } from "../durable-objects/audit-anchor";
