import { consumeDeadLetters } from "./dlq";
import { consumeJobs } from "./jobs";
import { consumeTasks } from "./tasks";
import { consumePayments } from "./payments";
import { consumeWebhooks } from "./webhooks";
import { queueNames } from "./messages";

const byQueue: Record<string, (batch: MessageBatch<unknown>, env: Env) => Promise<void>> = {
  [queueNames.payments]: consumePayments,
  [queueNames.webhooks]: consumeWebhooks,
  [queueNames.jobs]: consumeJobs,
  [queueNames.tasks]: consumeTasks,
  [queueNames.dlq]: consumeDeadLetters,
  [queueNames.dlqOverflow]: consumeDeadLetters,
};

/**
 * The worker's `queue` handler: one consumer per queue name. Development's queues carry a `-dev` suffix
 * (wrangler.toml) so they never share a queue with production; both reach the same consumer.
 */
export async function queue(batch: MessageBatch<unknown>, env: Env): Promise<void> {
  const handle = byQueue[batch.queue] ?? byQueue[batch.queue.replace(/-dev$/, "")];
  if (!handle) {
    console.log(JSON.stringify({ level: "error", msg: "no consumer for queue", queue: batch.queue }));
    batch.retryAll();
    return;
  }
  await handle(batch, env);
}
