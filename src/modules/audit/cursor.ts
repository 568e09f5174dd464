import { eq } from "drizzle-orm";
import type { Db } from "../../db/client";
import { auditLog } from "../../db/schema";
import { fail, ok, type Outcome } from "../../platform/failure";

/** The seq of the audit entry a page starts after; an unknown id is a bad query (400), not a missing resource. */
export async function auditCursorSeq(db: Db, startingAfter: string): Promise<Outcome<number, "validation_failed">> {
  const cur = await db.select({ seq: auditLog.seq }).from(auditLog).where(eq(auditLog.id, startingAfter)).get();
  return cur ? ok(cur.seq) : fail("validation_failed", `startingAfter: no audit entry ${startingAfter}`, [{ path: "startingAfter", message: "unknown id" }]);
}
