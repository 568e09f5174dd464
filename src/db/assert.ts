import { sql } from "drizzle-orm";
import type { Db } from "./client";

export const ASSERTION_FAILED = "batch_assertion_failed";

/** A batch statement that aborts the batch unless the statement just before it changed at least one row. */
export function assertChanged(db: Db) {
  return db.run(sql`INSERT INTO batch_assertions (ok) SELECT 0 WHERE changes() = 0`);
}

export function isAssertionFailure(e: unknown): boolean {
  const text = `${String(e)} ${String((e as { cause?: unknown })?.cause ?? "")}`;
  return text.includes(ASSERTION_FAILED) || text.includes("CHECK constraint failed");
}
