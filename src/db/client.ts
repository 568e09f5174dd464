import { drizzle, type DrizzleD1Database } from "drizzle-orm/d1";
import * as schema from "./schema";
import { countedD1 } from "./round-trips";

export type Db = DrizzleD1Database<typeof schema>;

const cache = new WeakMap<D1Database, Db>();

/**
 * One drizzle client per D1 binding (per isolate). Round trips are counted (src/db/round-trips.ts) only where the
 * tests ask for it (`COUNT_ROUND_TRIPS`, set in vitest.config.ts): elsewhere every statement would pay for a proxy.
 */
export function dbOf(env: { DB: D1Database; COUNT_ROUND_TRIPS?: string }): Db {
  let db = cache.get(env.DB);
  if (!db) {
    db = drizzle(env.COUNT_ROUND_TRIPS ? countedD1(env.DB) : env.DB, { schema });
    cache.set(env.DB, db);
  }
  return db;
}
