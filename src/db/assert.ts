import type { Db } from "./client";
import { preparedStatement } from "./prepared";

export const ASSERTION_FAILED = "batch_assertion_failed";

/** A batch statement that aborts the batch unless the statement just before it changed at least one row. */
export function assertChanged(db: Db) {
  return preparedStatement(db, ASSERT_CHANGED, []);
}
// Prepared SQL (./prepared.ts): in nearly every change's batch.
const ASSERT_CHANGED = "INSERT INTO batch_assertions (ok) SELECT 0 WHERE changes() = 0";

export function isAssertionFailure(e: unknown): boolean {
  const text = `${String(e)} ${String((e as { cause?: unknown })?.cause ?? "")}`;
  return text.includes(ASSERTION_FAILED) || text.includes("CHECK constraint failed");
}

/** True when `e` (or its cause) is a UNIQUE / PRIMARY KEY violation, optionally on `column` ("table.column"). */
export function isUniqueViolation(e: unknown, column?: string): boolean {
  const text = `${String(e)} ${String((e as { cause?: unknown })?.cause ?? "")}`;
  return text.includes("UNIQUE constraint failed") && (column === undefined || text.includes(column));
}
