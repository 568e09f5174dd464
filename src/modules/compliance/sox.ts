import { retained } from "../retention/run";
import type { Services } from "../../platform/services";
import { z } from "@hono/zod-openapi";
import { commitWithAudit } from "../../platform/audit";
import { ok, valueOrThrow, type Outcome } from "../../platform/failure";
import { iso } from "../../lib/time";
import { verifyIntegrity, type VerifyResult } from "../audit/verify";
import { periodBounds } from "../tax/report";

/**
 * The quarterly SOX evidence pack: everything is read from the audit chain and the money tables; nothing is
 * self-declared. A quarter is [first day 00:00 UTC, first day of the next quarter) on audit `at` / row `created_at`.
 */

export const SoxReportRequest = z.object({
  quarter: z.string().regex(/^Q[1-4]-\d{4}$/, "expected Q1-2024 … Q4-2024").openapi({ example: "Q2-2024" }),
  includeControls: z.boolean().default(false),
});

/** Actions that change how money is computed or who may act: settings and flags, prices, tax rates, API keys. */
export const CONFIGURATION_SQL = "(action LIKE 'config.%' OR action LIKE 'api\\_key.%' ESCAPE '\\' OR action LIKE 'plan.%' OR action = 'tax.rate_updated')";
export const isConfigurationAction = (a: string) => a.startsWith("config.") || a.startsWith("api_key.") || a.startsWith("plan.") || a === "tax.rate_updated";
/** Actions that move money or write it off. */
export const MONEY_ACTIONS = [
  "payment.processed",
  "payment.requeued",
  "invoice.retry_requested",
  "refund.requested",
  "refund.bulk_requested",
  "refund.processed",
  "invoice.voided",
  "invoice.marked_uncollectible",
  "gateway.tested",
] as const;
const MONEY_SQL = `action IN (${MONEY_ACTIONS.map((a) => `'${a}'`).join(", ")})`;
const MONEY_ROLES = ["admin", "finance", "system"];
/** Long lists are cut here; the counts next to them stay exact. */
export const LIST_CAP = 1000;

type Control = { name: string; description: string; evidence: string; status: "pass" | "fail" };
const control = (name: string, description: string, passed: boolean, evidence: string): Control => ({ name, description, evidence, status: passed ? "pass" : "fail" });
const parse = (s: string | null) => (s === null ? null : (JSON.parse(s) as unknown));

async function all<T>(d1: D1Database, sql: string, ...params: unknown[]): Promise<T[]> {
  return (await d1.prepare(sql).bind(...params).all<T>()).results;
}
async function one<T>(d1: D1Database, sql: string, ...params: unknown[]): Promise<T> {
  return (await d1.prepare(sql).bind(...params).first<T>())!;
}

type Finding = { actor: string; actorRole: string; configurationChanges: number; moneyMovements: number; configurationActions: string[]; moneyActions: string[] };

async function segregationFindings(d1: D1Database, from: number, to: number): Promise<Finding[]> {
  const rows = await all<{ actor: string; role: string; action: string; n: number }>(
    d1,
    `SELECT actor, actor_role AS role, action, count(*) AS n FROM audit_log
     WHERE at >= ?1 AND at < ?2 AND actor NOT LIKE 'system:%' AND (${CONFIGURATION_SQL} OR ${MONEY_SQL})
     GROUP BY actor, actor_role, action ORDER BY actor, action`,
    from,
    to,
  );
  const byActor = new Map<string, Finding>();
  for (const r of rows) {
    const f = byActor.get(r.actor) ?? { actor: r.actor, actorRole: r.role, configurationChanges: 0, moneyMovements: 0, configurationActions: [], moneyActions: [] };
    if (isConfigurationAction(r.action)) {
      f.configurationChanges += r.n;
      f.configurationActions.push(r.action);
    } else {
      f.moneyMovements += r.n;
      f.moneyActions.push(r.action);
    }
    byActor.set(r.actor, f);
  }
  return [...byActor.values()].filter((f) => f.configurationChanges > 0 && f.moneyMovements > 0);
}

async function controls(d1: D1Database, from: number, to: number, chain: VerifyResult, sod: Finding[]): Promise<Control[]> {
  const voids = await one<{ n: number; missing: number }>(
    d1,
    "SELECT count(*) AS n, coalesce(sum(CASE WHEN void_reason IS NULL OR trim(void_reason) = '' THEN 1 ELSE 0 END), 0) AS missing FROM invoices WHERE status = 'void' AND voided_at >= ?1 AND voided_at < ?2",
    from,
    to,
  );
  const voidAudit = await one<{ n: number; missing: number }>(
    d1,
    "SELECT count(*) AS n, coalesce(sum(CASE WHEN reason IS NULL OR trim(reason) = '' THEN 1 ELSE 0 END), 0) AS missing FROM audit_log WHERE action = 'invoice.voided' AND at >= ?1 AND at < ?2",
    from,
    to,
  );
  const refundReasons = await one<{ n: number; missing: number }>(
    d1,
    "SELECT count(*) AS n, coalesce(sum(CASE WHEN trim(reason) = '' THEN 1 ELSE 0 END), 0) AS missing FROM refunds WHERE created_at >= ?1 AND created_at < ?2",
    from,
    to,
  );
  // Every payment refunded this quarter, with all its live refunds (whenever made) against what it captured.
  const overRefunded = await all<{ id: string; amount: number; refunded: number; recorded: number; status: string; currency: string }>(
    d1,
    `SELECT p.id, p.amount, p.currency, p.status, p.amount_refunded AS recorded,
            coalesce(sum(CASE WHEN r.status IN ('pending', 'succeeded') THEN r.amount ELSE 0 END), 0) AS refunded
     FROM payments p JOIN refunds r ON r.payment_id = p.id
     WHERE p.id IN (SELECT payment_id FROM refunds WHERE created_at >= ?1 AND created_at < ?2)
     GROUP BY p.id
     HAVING refunded > p.amount OR p.amount_refunded > p.amount OR (refunded > 0 AND p.status <> 'succeeded')`,
    from,
    to,
  );
  const refundedPayments = await one<{ n: number }>(d1, "SELECT count(DISTINCT payment_id) AS n FROM refunds WHERE created_at >= ?1 AND created_at < ?2", from, to);
  const keys = await one<{ payments: number; refunds: number; missing: number }>(
    d1,
    `SELECT (SELECT count(*) FROM payments WHERE created_at >= ?1 AND created_at < ?2) AS payments,
            (SELECT count(*) FROM refunds WHERE created_at >= ?1 AND created_at < ?2) AS refunds,
            (SELECT count(*) FROM payments WHERE created_at >= ?1 AND created_at < ?2 AND (idempotency_key IS NULL OR idempotency_key = ''))
          + (SELECT count(*) FROM refunds WHERE created_at >= ?1 AND created_at < ?2 AND (idempotency_key IS NULL OR idempotency_key = '')) AS missing`,
    from,
    to,
  );
  // The same gateway charge recorded as two payments would be a double charge the keys failed to prevent.
  const doubled = await one<{ n: number }>(
    d1,
    `SELECT count(*) AS n FROM (SELECT gateway_payment_id FROM payments WHERE gateway_payment_id IS NOT NULL AND created_at >= ?1 AND created_at < ?2
     GROUP BY gateway, gateway_payment_id HAVING count(*) > 1)`,
    from,
    to,
  );
  const roles = await all<{ role: string; action: string; n: number }>(
    d1,
    `SELECT actor_role AS role, action, count(*) AS n FROM audit_log WHERE at >= ?1 AND at < ?2 AND ${MONEY_SQL}
     AND actor_role NOT IN (${MONEY_ROLES.map((r) => `'${r}'`).join(", ")}) GROUP BY actor_role, action`,
    from,
    to,
  );
  const over = overRefunded.slice(0, 20).map((p) => `${p.id} (${p.status}, captured ${p.amount}, refunded ${p.refunded}, recorded ${p.recorded} ${p.currency} minor units)`);
  return [
    control(
      "audit chain intact",
      "Every audit row's hash links to the previous row from the genesis; no row was changed or removed",
      chain.valid,
      chain.valid ? `${chain.checked} rows verified; head hash ${chain.headHash}` : `broken at seq ${chain.firstBrokenRow?.seq}: ${chain.firstBrokenRow?.problem} (${chain.checked} rows verified before it)`,
    ),
    control(
      "every void has a reason",
      "Invoices voided in the quarter carry a void reason, on the invoice and on its audit row",
      voids.missing === 0 && voidAudit.missing === 0,
      `${voids.n} invoices voided, ${voids.missing} without a reason; ${voidAudit.n} invoice.voided audit rows, ${voidAudit.missing} without a reason`,
    ),
    control("every refund has a reason", "Refunds created in the quarter carry a reason", refundReasons.missing === 0, `${refundReasons.n} refunds, ${refundReasons.missing} without a reason`),
    control(
      "refunds never exceed captured",
      "For each payment refunded in the quarter, pending and succeeded refunds stay within the captured amount of a succeeded payment",
      overRefunded.length === 0,
      `${refundedPayments.n} refunded payments checked, ${overRefunded.length} over the captured amount or not captured${over.length ? `: ${over.join("; ")}` : ""}`,
    ),
    control(
      "idempotency keys on money-moving requests",
      "Every payment attempt and refund carries its own idempotency key, sent to the gateway, and no gateway charge is recorded twice",
      keys.missing === 0 && doubled.n === 0,
      `${keys.payments} payment attempts and ${keys.refunds} refunds, ${keys.missing} without a key (the column is NOT NULL and unique); ${doubled.n} gateway charges recorded more than once`,
    ),
    control(
      "money moved only by authorised roles",
      `Money-moving actions (${MONEY_ACTIONS.join(", ")}) were taken by ${MONEY_ROLES.join(", ")} only`,
      roles.length === 0,
      roles.length ? roles.map((r) => `${r.n} × ${r.action} by role ${r.role}`).join("; ") : "no money-moving action by another role",
    ),
    control(
      "segregation of duties",
      "No person both changed configuration (settings, flags, prices, tax rates, API keys) and moved money in the quarter",
      sod.length === 0,
      sod.length ? `${sod.length} actors did both: ${sod.map((f) => `${f.actor} (${f.actorRole}: ${f.configurationChanges} configuration changes, ${f.moneyMovements} money movements)`).join("; ")}` : "no actor did both",
    ),
  ];
}

export type SoxReport = Extract<Awaited<ReturnType<typeof buildSoxReport>>, { ok: true }>["value"];

/** Builds the report for `quarter`; `ctx.now` decides whether the quarter is complete. */
export async function buildSoxReport(s: Services, input: z.infer<typeof SoxReportRequest>) {
  const { env, db, audit: ctx } = s;
  const d1 = env.DB;
  const { from, to } = periodBounds(input.quarter);
  // A quarter whose audit rows were archived to R2 would report fewer actions, not an error: refuse it instead.
  const kept = await retained(db, ["audit"], from, "The SOX report");
  if (!kept.ok) return kept;
  // Not asked in full: the check covers what one request can, and never refuses.
  const chain = valueOrThrow(await verifyIntegrity(env));
  const byAction = await all<{ action: string; count: number }>(d1, "SELECT action, count(*) AS count FROM audit_log WHERE at >= ?1 AND at < ?2 GROUP BY action ORDER BY count DESC, action", from, to);
  const byActorRole = await all<{ role: string; count: number }>(d1, "SELECT actor_role AS role, count(*) AS count FROM audit_log WHERE at >= ?1 AND at < ?2 GROUP BY actor_role ORDER BY count DESC, role", from, to);
  const sod = await segregationFindings(d1, from, to);
  const voidRows = await all<{ at: number; actor: string; actor_role: string; target_id: string; reason: string | null }>(
    d1,
    `SELECT at, actor, actor_role, target_id, reason FROM audit_log WHERE action = 'invoice.voided' AND at >= ?1 AND at < ?2 ORDER BY seq LIMIT ${LIST_CAP + 1}`,
    from,
    to,
  );
  const refundRows = await all<{ id: string; payment_id: string; amount: number; currency: string; reason: string; status: string; created_by: string; created_at: number }>(
    d1,
    `SELECT id, payment_id, amount, currency, reason, status, created_by, created_at FROM refunds WHERE created_at >= ?1 AND created_at < ?2 ORDER BY created_at, id LIMIT ${LIST_CAP + 1}`,
    from,
    to,
  );
  const configRows = await all<{ at: number; actor: string; actor_role: string; action: string; target_type: string; target_id: string; before: string | null; after: string | null; reason: string | null }>(
    d1,
    `SELECT at, actor, actor_role, action, target_type, target_id, before, after, reason FROM audit_log WHERE at >= ?1 AND at < ?2 AND ${CONFIGURATION_SQL} ORDER BY seq LIMIT ${LIST_CAP + 1}`,
    from,
    to,
  );
  const total = byAction.reduce((n, a) => n + a.count, 0);
  const report = {
    quarter: input.quarter,
    from: iso(from),
    to: iso(to),
    complete: to <= ctx.now,
    generatedAt: iso(ctx.now),
    generatedBy: ctx.actor.id,
    reportKey: `reports/compliance/sox-${input.quarter}.json`,
    auditChain: chain,
    stateChanges: { total, byAction, byActorRole },
    segregationOfDuties: {
      rule: "actors (other than system) who both changed configuration and moved money in the quarter",
      configurationActions: "config.*, api_key.*, plan.*, tax.rate_updated",
      moneyActions: [...MONEY_ACTIONS],
      findings: sod,
    },
    voids: {
      truncated: voidRows.length > LIST_CAP,
      items: voidRows.slice(0, LIST_CAP).map((r) => ({ invoiceId: r.target_id, at: iso(r.at), actor: r.actor, actorRole: r.actor_role, reason: r.reason })),
    },
    refunds: {
      truncated: refundRows.length > LIST_CAP,
      items: refundRows.slice(0, LIST_CAP).map((r) => ({ refundId: r.id, paymentId: r.payment_id, at: iso(r.created_at), createdBy: r.created_by, amountMinor: r.amount, currency: r.currency, status: r.status, reason: r.reason })),
    },
    configurationChanges: {
      truncated: configRows.length > LIST_CAP,
      items: configRows.slice(0, LIST_CAP).map((r) => ({ at: iso(r.at), actor: r.actor, actorRole: r.actor_role, action: r.action, targetType: r.target_type, targetId: r.target_id, before: parse(r.before), after: parse(r.after), reason: r.reason })),
    },
    ...(input.includeControls ? { controls: await controls(d1, from, to, chain, sod) } : {}),
  };
  return ok(report);
}

/** Builds the report, stores it at reports/compliance/sox-<quarter>.json (replacing an older run) and audits it. */
export async function generateSoxReport(s: Services, input: z.infer<typeof SoxReportRequest>): Promise<Outcome<SoxReport, "unprocessable">> {
  const { env, db, audit: ctx } = s;
  const built = await buildSoxReport(s, input);
  if (!built.ok) return built;
  const report = built.value;
  await env.ARCHIVE.put(report.reportKey, JSON.stringify(report, null, 2), {
    httpMetadata: { contentType: "application/json" },
    customMetadata: { kind: "sox_report", quarter: input.quarter, generatedAt: report.generatedAt, generatedBy: ctx.actor.id },
  });
  const failed = report.controls?.filter((c) => c.status === "fail").map((c) => c.name) ?? [];
  await commitWithAudit(
    db,
    [],
    [
      {
        action: "compliance.sox_report_generated",
        targetType: "compliance_report",
        targetId: report.reportKey,
        after: { quarter: input.quarter, includeControls: input.includeControls, chainValid: report.auditChain.valid, stateChanges: report.stateChanges.total, findings: report.segregationOfDuties.findings.length, failedControls: failed },
      },
    ],
    ctx,
  );
  return ok(report);
}
