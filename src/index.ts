import { app } from "./app";
import { scheduled } from "./scheduled";
import { queue } from "../queues";

export default {
  fetch: app.fetch,
  queue,
  scheduled,
} satisfies ExportedHandler<Env>;

export { UsageMeter } from "../durable-objects/usage-meter";
export { PaymentGuard } from "../durable-objects/payment-guard";
export { AuditAnchor } from "../durable-objects/audit-anchor";
export { IngestDirectory } from "../durable-objects/ingest-directory";
