import type { BatchItem } from "drizzle-orm/batch";
import type { Db } from "../db/client";

/**
 * Bookkeeping writes that may trail the work they record, collected over one queue batch and written together in one
 * D1 round trip when the batch's messages are done, instead of a round trip each (queues/dispatch.ts). Only for
 * writes that are idempotent and monotonic (the same key written again later is harmless: the last one added wins)
 * and whose loss is repaired elsewhere: a batch that dies before its flush loses them, and nothing may depend on
 * reading them back within the batch. Today: the version a usage meter acknowledged, which the hourly meter resync
 * re-derives (a meter whose acknowledgement was lost is pushed again, a no-op for it).
 */
export class TrailingWrites {
  private readonly pending = new Map<string, BatchItem<"sqlite">>();

  /** `db` is asked for only when there is something to write. */
  constructor(private readonly db: () => Db) {}

  /** Queues `statement` under `key` (an earlier one with the same key is replaced). */
  add(key: string, statement: BatchItem<"sqlite">): void {
    this.pending.delete(key);
    this.pending.set(key, statement);
  }

  get size(): number {
    return this.pending.size;
  }

  /** Writes what is queued, in one batch (D1's batch is one round trip whatever its length). */
  async flush(): Promise<number> {
    const statements = [...this.pending.values()];
    this.pending.clear();
    if (statements.length) await this.db().batch(statements as [BatchItem<"sqlite">, ...BatchItem<"sqlite">[]]);
    return statements.length;
  }
}
