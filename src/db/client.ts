import { drizzle, type DrizzleD1Database } from "drizzle-orm/d1";
import * as schema from "./schema";
import { countedD1 } from "./round-trips";

export type Db = DrizzleD1Database<typeof schema>;

const cache = new WeakMap<D1Database, Db>();

/** One drizzle client per D1 binding (per isolate). */
export function dbOf(env: { DB: D1Database }): Db {
  let db = cache.get(env.DB);
  if (!db) {
    db = drizzle(countedD1(env.DB), { schema });
    cache.set(env.DB, db);
  }
  return db;
}
