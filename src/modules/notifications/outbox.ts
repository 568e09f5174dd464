import { and, asc, eq, lt } from "drizzle-orm";
import type { Db } from "../../db/client";
import { notifications } from "../../db/schema";
import type { WebhookMessage } from "../../../queues/messages";

/**
 * Hands committed outbox rows to the webhooks queue (its consumer delivers them and marks them sent). A failed
 * send is only logged: the row stays `queued` and the hourly sweep sends it again.
 */
export async function dispatchNotifications(env: Env, ids: string[]): Promise<void> {
  for (let i = 0; i < ids.length; i += 100) {
    const batch = ids.slice(i, i + 100).map((notificationId) => ({ body: { type: "notification.send", notificationId } satisfies WebhookMessage }));
    await env.WEBHOOK_QUEUE.sendBatch(batch).catch((e) =>
      console.log(JSON.stringify({ level: "error", msg: "notification enqueue failed; the hourly sweep retries", count: batch.length, error: String(e) })),
    );
  }
}

/**
 * Hourly: rows still `queued` after `graceMs` whose message was lost or never sent are sent again. Rows with
 * attempts are left alone: their message is in a retry chain that ends with the row sent or failed.
 */
export async function sweepQueuedNotifications(env: Env, db: Db, now: number, graceMs = 15 * 60_000, limit = 1000): Promise<number> {
  const rows = await db
    .select({ id: notifications.id })
    .from(notifications)
    .where(and(eq(notifications.status, "queued"), eq(notifications.attempts, 0), lt(notifications.createdAt, now - graceMs)))
    .orderBy(asc(notifications.createdAt))
    .limit(limit)
    .all();
  await dispatchNotifications(env, rows.map((r) => r.id));
  return rows.length;
}
