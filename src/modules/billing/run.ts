import { and, isNull, lte, ne, or, sql } from "drizzle-orm";
import type { Db } from "../../db/client";
import type { Actor } from "../../env";
import { subscriptions } from "../../db/schema";
import { finalizeDrafts } from "./finalize";
import { runDue, type StepResult } from "./renewal";

export const SYSTEM_ACTOR: Actor = { id: "system:billing", kind: "system", role: "system", scopes: [] };
const BATCH = 200;

export type RunReport = { processed: number; steps: StepResult[]; invoiceIds: string[]; finalized: string[]; errors: { subscriptionId: string; error: string }[] };

/**
 * The hourly run (and POST /invoices/generate-pending): every real-time subscription with something due runs it,
 * in time order; leftover drafts are finalized. Idempotent: a second run finds nothing due.
 */
export async function generatePending(env: Env, db: Db, now: number, actor: Actor = SYSTEM_ACTOR, requestId?: string): Promise<RunReport> {
  const due = await db
    .select({ id: subscriptions.id })
    .from(subscriptions)
    .where(
      and(
        isNull(subscriptions.testClockId),
        ne(subscriptions.status, "canceled"),
        or(lte(subscriptions.currentPeriodEnd, now), lte(subscriptions.pausedUntil, now), lte(subscriptions.pendingChangeAt, now)),
      ),
    )
    .orderBy(sql`${subscriptions.currentPeriodEnd}`)
    .limit(BATCH)
    .all();
  const report: RunReport = { processed: 0, steps: [], invoiceIds: [], finalized: [], errors: [] };
  for (const { id } of due) {
    try {
      const steps = await runDue(env, db, id, now, { actor, ...(requestId ? { requestId } : {}) });
      report.processed++;
      report.steps.push(...steps);
      for (const s of steps) if (s.invoiceId) report.invoiceIds.push(s.invoiceId);
    } catch (e) {
      report.errors.push({ subscriptionId: id, error: String(e) });
      console.log(JSON.stringify({ level: "error", msg: "billing run failed for subscription", subscriptionId: id, error: String(e) }));
    }
  }
  const finalized = await finalizeDrafts(env, db, { actor, now, ...(requestId ? { requestId } : {}) }, { testClockId: null });
  report.finalized = finalized.map((f) => f.id);
  return report;
}
