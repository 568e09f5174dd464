import { sql as dsql } from "drizzle-orm";
import type { Db } from "../../db/client";
import { builtOnce } from "../../db/prepared";
import { usageRollups } from "../../db/schema";

/** One meter's aggregate of one period as D1's `usage_rollups` holds it (written by the meter, or by a renewal). */
export type RollupValues = {
  subscriptionId: string;
  meterId: string;
  periodStart: number;
  periodEnd: number;
  value: string;
  eventCount: number;
  closed: boolean;
  updatedAt: number;
};

/**
 * A closed period's rollup as its meter holds it, for the caller's D1 batch: `rev` is the aggregate's revision, which
 * the caller hands back to the meter (`configure`) once the batch committed, so the meter does not write it again.
 */
export type ClosedRollup = { rev: number; values: RollupValues };

/**
 * The rollup's upsert, newer writes winning (`updatedAt`): built by drizzle once per isolate (every renewal writes
 * its closed period's).
 */
const upsert = builtOnce((db: Db) => {
  const p = (name: string) => dsql.placeholder(name);
  return [
    db
      .insert(usageRollups)
      .values({ subscriptionId: p("subscriptionId"), meterId: p("meterId"), periodStart: p("periodStart"), periodEnd: p("periodEnd"), value: p("value"), eventCount: p("eventCount"), closed: p("closed"), updatedAt: p("updatedAt") })
      .onConflictDoUpdate({
        target: [usageRollups.subscriptionId, usageRollups.meterId, usageRollups.periodStart],
        // The row being inserted (`excluded`) carries the same values.
        set: { value: dsql`excluded.value`, eventCount: dsql`excluded.event_count`, closed: dsql`excluded.closed`, periodEnd: dsql`excluded.period_end`, updatedAt: dsql`excluded.updated_at` },
        setWhere: dsql`${usageRollups.updatedAt} <= ${p("updatedAt")}`,
      }),
  ] as const;
});

export const rollupUpsert = (db: Db, values: RollupValues) => upsert(db, values)[0];
