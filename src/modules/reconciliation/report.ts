import type { Services } from "../../platform/services";
import { configuredGateways } from "../../gateways";
import { DAY_MS, iso } from "../../lib/time";
import type { Actor } from "../../env";
import { BASIS, dayBounds, reconcileDay, type Reconciliation } from "./service";
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
  gateways: (GatewaySection | { gateway: string; error: string })[];
};

/** The section of one gateway; details (each discrepancy and each matched pair) only when asked for. */
function section(r: Reconciliation, includeDetails: boolean): GatewaySection {
  const { date: _d, basis: _b, discrepancies, matchedItems, ...summary } = r;
  return includeDetails ? { ...summary, discrepancies, matchedItems } : summary;
}

/**
 * Reconciles `date` for every configured gateway and stores the report in R2 at reports/reconciliation/<date>.json
 * (a re-run replaces it). A gateway that fails is reported with its error and does not stop the others.
 */
export async function writeReconciliationReport(s: Services, date: string, includeDetails: boolean): Promise<Outcome<{ key: string; report: ReconciliationReport }, "validation_failed">> {
  const { env, audit: ctx } = s;
  const bounds = dayBounds(date);
  if (!bounds.ok) return bounds;
  const gateways: ReconciliationReport["gateways"] = [];
  for (const gateway of configuredGateways(env)) {
    try {
      const r = await reconcileDay(s, date, { gateway, selection: "requested", note: `gateway ${gateway} (every configured gateway is reconciled)` });
      gateways.push(r.ok ? section(r.value, includeDetails) : { gateway, error: r.error.detail });
    } catch (e) {
      gateways.push({ gateway, error: e instanceof Error ? e.message : String(e) });
    }
  }
  const report: ReconciliationReport = { date, generatedAt: iso(ctx.now), includeDetails, basis: BASIS, gateways };
  const key = reportKey(date);
  await env.ARCHIVE.put(key, JSON.stringify(report, null, 2), { httpMetadata: { contentType: "application/json" }, customMetadata: { kind: "reconciliation", date } });
  return ok({ key, report });
}

/** Daily cron: yesterday (UTC) for every configured gateway, with details; throws after writing if a gateway failed. */
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
    gateways: report.gateways.map((g) => ("error" in g ? g : { gateway: g.gateway, matched: g.matched, discrepancies: g.discrepancyCounts })),
  };
}
