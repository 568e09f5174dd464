import { and, asc, inArray, lt, sql } from "drizzle-orm";
import type { Services } from "../../platform/services";
import { events } from "../../db/schema";
import { DAY_MS } from "../../lib/time";
import { toEvent, type EventRow } from "../../platform/events";

/** Events stay queryable (GET /api/v1/events) this long; older ones live only in the R2 archive. */
export const RETENTION_DAYS = 30;
const PAGE_SIZE = 500;
/** Pages per run (cron or job): the rest continues from the jobs queue, so no run is unbounded. */
const MAX_PAGES = 20;
/** D1 binds at most 100 parameters per statement. */
const DELETE_CHUNK = 90;

const rowid = sql<number>`${events}.rowid`;

/** Where a day's archived events go: one JSON-lines object per page and day, named by its first event. */
export const archiveKey = (createdAt: number, firstId: string) => `events/${new Date(createdAt).toISOString().slice(0, 10)}/${firstId}.jsonl`;

/**
 * Moves events older than RETENTION_DAYS to R2 (`events/YYYY-MM-DD/<first event id>.jsonl`, one event per line in
 * its public shape), oldest first, a page at a time: each page is written to R2 before its rows are deleted. A run
 * that stopped between the two writes the same page under the same key again (same oldest rows, same first id),
 * so re-running is safe. After `maxPages` pages it queues an `events.archive` job to go on.
 */
export async function archiveOldEvents(s: Services, now: number, opts: { pageSize?: number; maxPages?: number } = {}): Promise<{ archived: number; objects: number; hasMore: boolean }> {
  const { env, db } = s;
  const pageSize = opts.pageSize ?? PAGE_SIZE;
  const maxPages = opts.maxPages ?? MAX_PAGES;
  const cutoff = now - RETENTION_DAYS * DAY_MS;
  let archived = 0;
  let objects = 0;
  for (let page = 0; page < maxPages; page++) {
    const rows = await db.select().from(events).where(lt(events.createdAt, cutoff)).orderBy(asc(events.createdAt), asc(rowid)).limit(pageSize).all();
    if (!rows.length) return { archived, objects, hasMore: false };
    const byDay = new Map<string, EventRow[]>();
    for (const r of rows) {
      const day = new Date(r.createdAt).toISOString().slice(0, 10);
      byDay.set(day, [...(byDay.get(day) ?? []), r]);
    }
    for (const dayRows of byDay.values()) {
      const first = dayRows[0]!;
      const body = dayRows.map((r) => JSON.stringify({ ...toEvent(r), objectType: r.objectType, objectId: r.objectId, customerId: r.customerId })).join("\n") + "\n";
      await env.ARCHIVE.put(archiveKey(first.createdAt, first.id), body, { httpMetadata: { contentType: "application/x-ndjson" }, customMetadata: { count: String(dayRows.length) } });
      objects++;
    }
    const ids = rows.map((r) => r.id);
    const deletes = [];
    for (let i = 0; i < ids.length; i += DELETE_CHUNK) deletes.push(db.delete(events).where(and(inArray(events.id, ids.slice(i, i + DELETE_CHUNK)), lt(events.createdAt, cutoff))));
    await db.batch(deletes as [(typeof deletes)[number], ...typeof deletes]);
    archived += rows.length;
    if (rows.length < pageSize) return { archived, objects, hasMore: false };
  }
  const more = await db.select({ id: events.id }).from(events).where(lt(events.createdAt, cutoff)).limit(1).get();
  if (more) await s.queues.jobs.send({ type: "events.archive" });
  return { archived, objects, hasMore: !!more };
}
