import { and, desc, eq, lt, or, type SQL } from "drizzle-orm";
import type { SQLiteColumn, SQLiteTable } from "drizzle-orm/sqlite-core";
import { ApiError } from "./errors";
import type { Db } from "../db/client";

export type Page<T> = { data: T[]; hasMore: boolean; nextCursor: string | null };
export type Cursor = { createdAt: number; id: string };

/** Newest first, ties broken by id: `WHERE (created_at, id) < cursor`. */
export function afterCursor(createdAt: SQLiteColumn, id: SQLiteColumn, cursor: Cursor | undefined): SQL | undefined {
  if (!cursor) return undefined;
  return or(lt(createdAt, cursor.createdAt), and(eq(createdAt, cursor.createdAt), lt(id, cursor.id)));
}

export const newestFirst = (createdAt: SQLiteColumn, id: SQLiteColumn) => [desc(createdAt), desc(id)];

/** Resolves `startingAfter` (an object id, as Stripe's) to its cursor, or a 400 naming the field. */
export async function resolveCursor(startingAfter: string | undefined, lookup: (id: string) => Promise<Cursor | undefined>): Promise<Cursor | undefined> {
  if (!startingAfter) return undefined;
  const cursor = await lookup(startingAfter);
  if (!cursor) {
    throw new ApiError("validation_failed", `startingAfter: no object with id ${startingAfter}`, [
      { path: "startingAfter", message: "unknown id" },
    ]);
  }
  return cursor;
}

/** Rows were fetched with `limit + 1`; the extra one only says there is more. */
export function toPage<R extends { id: string }, T>(rows: R[], limit: number, map: (r: R) => T): Page<T> {
  const hasMore = rows.length > limit;
  const kept = hasMore ? rows.slice(0, limit) : rows;
  return { data: kept.map(map), hasMore, nextCursor: hasMore ? kept[kept.length - 1]!.id : null };
}

export type PageQuery = { limit: number; startingAfter?: string | undefined };

/**
 * One page of a list, newest first, for every `GET` list route: `startingAfter` resolved to its cursor (a 400 when
 * unknown), `filters` applied, `limit + 1` rows read to know whether there is more. `scope` restricts both the
 * cursor lookup and the list (e.g. only the latest plan versions); `createdAt` is whichever column orders the list.
 */
export async function newestFirstPage<T extends SQLiteTable, V>(
  db: Db,
  source: { table: T; id: SQLiteColumn; createdAt: SQLiteColumn; scope?: SQL },
  q: PageQuery,
  filters: (SQL | undefined)[],
  map: (row: T["$inferSelect"]) => V,
): Promise<Page<V>> {
  const { table, id, createdAt, scope } = source;
  const cursor = await resolveCursor(q.startingAfter, async (key) =>
    (await db.select({ id, createdAt }).from(table as SQLiteTable).where(and(eq(id, key), scope)).get()) as Cursor | undefined,
  );
  const rows = (await db
    .select()
    .from(table as SQLiteTable)
    .where(and(scope, afterCursor(createdAt, id, cursor), ...filters))
    .orderBy(...newestFirst(createdAt, id))
    .limit(q.limit + 1)
    .all()) as (T["$inferSelect"] & { id: string })[];
  return toPage(rows, q.limit, map);
}
