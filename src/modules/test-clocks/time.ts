import { eq } from "drizzle-orm";
import type { Db } from "../../db/client";
import { testClocks } from "../../db/schema";

/** "Now" for an object: its test clock's frozen time, or the real time. */
export async function nowFor(db: Db, testClockId: string | null, realNow = Date.now()): Promise<number> {
  if (!testClockId) return realNow;
  const clock = await db.select({ t: testClocks.frozenTime }).from(testClocks).where(eq(testClocks.id, testClockId)).get();
  return clock?.t ?? realNow;
}
