import type { Services } from "../../platform/services";
import { configuredGateways } from "../../gateways";
import { DAY_MS, iso } from "../../lib/time";
import type { Actor } from "../../env";
import { BASIS, dayBounds, isPastCap, reconcileDay, type Reconciliation } from "./service";
import { startReconciliationRun } from "./run";
import { systemActor } from "../../platform/actor";
import { ok, valueOrThrow, type Outcome } from "../../platform/failure";

export const RECONCILIATION_ACTOR: Actor = systemActor("reconciliation");

export const reportKey = (date: string) => `reports/reconciliation/${date}.json`;

type GatewaySection = Omit<Reconciliation, "date" | "basis" | "discrepancies" | "matchedItems"> & Partial<Pick<Reconciliation, "discrepancies" | "matchedItems">>;
export type ReconciliationReport = {
  date: string;
  generatedAt: string;
  includeDetails: boolean;
  basis: string;
  gateways: (GatewaySection | RunSection | { gateway: string; error: string })[];
};
/** A gateway whose day is past one invocation's caps: reconciled by a run in the background; the report says where. */
type RunSection = { gateway: string; runId: string; status: "running"; note: string };

/** The section of one gateway; details (each discrepancy and each matched pair) only when asked for. */
function section(r: Reconciliation, includeDetails: boolean): GatewaySection {
  const { date: _d, basis: _b, discrepancies, matchedItems, ...summary } = r;
  return includeDetails ? { ...summary, discrepancies, matchedItems } : summary;
}

/**
 * Reconciles `date` for every configured gateway and stores the report in R2 at reports/reconciliation/<date>.json
 * (a re-run replaces it). A gateway that fails is reported with its error and does not stop the others. A gateway
 * whose day is past what one invocation reconciles gets a run instead (run.ts, or the one already going), and its
 * section names the run: its results are at GET /api/v1/reconciliation/runs/{runId} once complete, not in this report.
 */
export async function writeReconciliationReport(s: Services, date: string, includeDetails: boolean): Promise<Outcome<{ key: string; report: ReconciliationReport }, "validation_failed">> {
  const { env, audit: ctx } = s;
  const bounds = dayBounds(date);
  if (!bounds.ok) return bounds;
  const gateways: ReconciliationReport["gateways"] = [];
  for (const gateway of configuredGateways(env)) {
    try {
      const choice = { gateway, selection: "requested" as const, note: `gateway ${gateway} (every configured gateway is reconciled)` };
      const r = await reconcileDay(s, date, choice);
      if (r.ok) gateways.push(section(r.value, includeDetails));
      else if (isPastCap(r.error)) {
        const run = await startReconciliationRun(s, date, choice);
        gateways.push(
          run.ok
            ? { gateway, runId: run.value.run.id, status: "running", note: `the day is past one invocation's caps (${r.error.detail.split(";")[0]}): reconciled by run ${run.value.run.id} in the background; results at GET /api/v1/reconciliation/runs/${run.value.run.id}` }
            : { gateway, error: run.error.detail },
        );
      } else gateways.push({ gateway, error: r.error.detail });
    } catch (e) {
      gateways.push({ gateway, error: e instanceof Error ? e.message : String(e) });
    }
  }
  const report: ReconciliationReport = { date, generatedAt: iso(ctx.now), includeDetails, basis: BASIS, gateways };
  const key = reportKey(date);
  await env.ARCHIVE.put(key, JSON.stringify(report, null, 2), { httpMetadata: { contentType: "application/json" }, customMetadata: { kind: "reconciliation", date } });
  return ok({ key, report });
}

/** Daily cron: yesterday (UTC) for every configured gateway, with details; throws after writing if a gateway failed (a day past the caps starts a run: not a failure). */
/** `s` acts at the cron's time; the report is written as the reconciliation actor. */
export async function runDailyReconciliation(s: Services) {
  const now = s.audit.now;
  const date = new Date(now - DAY_MS).toISOString().slice(0, 10);
  const { key, report } = valueOrThrow(await writeReconciliationReport(s.withAudit({ actor: RECONCILIATION_ACTOR, now }), date, true));
  const failed = report.gateways.filter((g): g is { gateway: string; error: string } => "error" in g);
  if (failed.length) throw new Error(`reconciliation of ${date} failed for ${failed.map((g) => `${g.gateway}: ${g.error}`).join("; ")} (report at ${key})`);
  return {
    date,
    key,
    gateways: report.gateways.map((g) => ("error" in g ? g : "runId" in g ? { gateway: g.gateway, runId: g.runId } : { gateway: g.gateway, matched: g.matched, discrepancies: g.discrepancyCounts })),
  };
}
