import { and, inArray, lt } from "drizzle-orm";
import { commitWithAudit, type AuditContext } from "../../platform/audit";
import type { Services } from "../../platform/services";
import { webhookEvents } from "../../db/schema";
import { iso, DAY_MS } from "../../lib/time";


const CHUNK = 500;

export type CleanupResult = { deleted: number; olderThanDays: number; cutoff: string };

/**
 * Deletes processed and ignored events received more than `olderThanDays` days before `now`, in chunks (a
 * single huge DELETE would hold D1 too long). Received and failed events stay: they still need attention.
 */
export async function cleanupWebhookEvents(s: Services, olderThanDays: number, ctx: AuditContext = s.audit): Promise<CleanupResult> {
  const { db } = s;
  const now = ctx.now;
  const cutoff = now - olderThanDays * DAY_MS;
  const old = and(inArray(webhookEvents.status, ["processed", "ignored"]), lt(webhookEvents.receivedAt, cutoff));
  let deleted = 0;
  for (;;) {
    const chunk = db.select({ id: webhookEvents.id }).from(webhookEvents).where(old).limit(CHUNK);
    const r = await db.delete(webhookEvents).where(and(inArray(webhookEvents.id, chunk), old)).run();
    deleted += r.meta.changes;
    if (r.meta.changes < CHUNK) break;
  }
  await commitWithAudit(db, [], [{ action: "webhooks.cleanup", targetType: "webhook_events", targetId: "stripe", after: { deleted, olderThanDays, cutoff: iso(cutoff) } }], ctx);
  return { deleted, olderThanDays, cutoff: iso(cutoff) };
}
