import { eq } from "drizzle-orm";
import type { Db } from "../db/client";
import { testClocks } from "../db/schema";

/** A test clock's frozen time; null off a clock (or for a clock that no longer exists). */
export async function clockTimeOf(db: Db, testClockId: string | null): Promise<number | null> {
  if (!testClockId) return null;
  const clock = await db.select({ t: testClocks.frozenTime }).from(testClocks).where(eq(testClocks.id, testClockId)).get();
  return clock?.t ?? null;
}

/** "Now" for an object: its test clock's frozen time, or the real time. */
export async function nowFor(db: Db, testClockId: string | null, realNow = Date.now()): Promise<number> {
  return (await clockTimeOf(db, testClockId)) ?? realNow;
}
