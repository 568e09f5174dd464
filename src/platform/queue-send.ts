import { CLOUDFLARE_LIMITS } from "./limits";

const ATTEMPTS = 3;

/**
 * Sends `bodies` in sendBatch calls of at most 100 messages (Cloudflare's cap per call), retrying a failed call twice
 * with a short backoff before throwing, so a transient refusal neither drops a page nor goes unnoticed. A throw leaves
 * the caller's own message to be retried by its queue; the receivers are idempotent, so a page sent twice is harmless.
 */
export async function sendAll<T>(queue: Queue, bodies: T[], options?: QueueSendBatchOptions): Promise<number> {
  for (let i = 0; i < bodies.length; i += CLOUDFLARE_LIMITS.sendBatchMessages) {
    const chunk = bodies.slice(i, i + CLOUDFLARE_LIMITS.sendBatchMessages).map((body) => ({ body }));
    for (let attempt = 1; ; attempt++) {
      try {
        await queue.sendBatch(chunk, options);
        break;
      } catch (e) {
        if (attempt >= ATTEMPTS) throw new Error(`sendBatch of ${chunk.length} messages failed ${ATTEMPTS} times: ${String(e)}`);
        console.log(JSON.stringify({ level: "warn", msg: "sendBatch failed; retrying", attempt, messages: chunk.length, error: String(e) }));
        await new Promise((r) => setTimeout(r, 50 * 2 ** attempt));
      }
    }
  }
  return bodies.length;
}
