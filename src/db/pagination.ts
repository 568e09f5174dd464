import { and, desc, eq, lt, or, type SQL } from "drizzle-orm";
import type { SQLiteColumn } from "drizzle-orm/sqlite-core";
import { ApiError } from "../http/problem";

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
