import { eq } from "drizzle-orm";
import type { Db } from "../db/client";
import { commitWithAudit, type AuditContext } from "./audit";
import { settings } from "../db/schema";

const CACHE_MS = 30_000;
// Per-isolate cache; POST /admin/config/reload (and any write here) drops it.
const cache = new Map<string, { value: unknown; at: number }>();

export function dropSettingsCache(): void {
  cache.clear();
}

/** The stored value of `key` merged over `defaults` (stored fields win). */
export async function getSetting<T extends object>(db: Db, key: string, defaults: T): Promise<T> {
  const hit = cache.get(key);
  if (hit && Date.now() - hit.at < CACHE_MS) return { ...defaults, ...(hit.value as Partial<T>) };
  const row = await db.select().from(settings).where(eq(settings.key, key)).get();
  cache.set(key, { value: row?.value ?? {}, at: Date.now() });
  return { ...defaults, ...((row?.value ?? {}) as Partial<T>) };
}

/** Writes `key` with an audit row (before/after) in one batch. */
export async function putSetting<T extends object>(db: Db, key: string, value: T, ctx: AuditContext, reason?: string): Promise<T> {
  const before = await db.select().from(settings).where(eq(settings.key, key)).get();
  await commitWithAudit(
    db,
    [
      db
        .insert(settings)
        .values({ key, value, updatedBy: ctx.actor.id, updatedAt: ctx.now })
        .onConflictDoUpdate({ target: settings.key, set: { value, updatedBy: ctx.actor.id, updatedAt: ctx.now } }),
    ],
    [{ action: "config.updated", targetType: "setting", targetId: key, before: before?.value ?? null, after: value, ...(reason ? { reason } : {}) }],
    ctx,
  );
  cache.delete(key);
  return value;
}
