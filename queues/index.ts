import { consumeDeadLetters } from "./dlq";
import { consumeJobs } from "./jobs";
import { consumePayments } from "./payments";
import { consumeWebhooks } from "./webhooks";
import { queueNames } from "./messages";

const byQueue: Record<string, (batch: MessageBatch<unknown>, env: Env) => Promise<void>> = {
  [queueNames.payments]: consumePayments,
  [queueNames.webhooks]: consumeWebhooks,
  [queueNames.jobs]: consumeJobs,
  [queueNames.dlq]: consumeDeadLetters,
};

/** The worker's `queue` handler: one consumer per queue name. */
export async function queue(batch: MessageBatch<unknown>, env: Env): Promise<void> {
  const handle = byQueue[batch.queue];
  if (!handle) {
    console.log(JSON.stringify({ level: "error", msg: "no consumer for queue", queue: batch.queue }));
    batch.retryAll();
    return;
  }
  await handle(batch, env);
}
