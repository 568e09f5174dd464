import { base64ToBytes, ENVELOPE_ALG, keyIdOf } from "../../lib/crypto";
import { iso } from "../../lib/time";
import { luhnValid } from "../../domain/card-numbers";

/** What a gateway token looks like: Stripe payment methods, cards and sources. */
export const TOKEN_PATTERN = /^(pm|card|src)_[A-Za-z0-9_]+$/;
// The same test in SQL, so only suspicious values leave D1.
const NON_TOKEN_SQL = (col: string) =>
  `${col} IS NOT NULL AND (NOT (${col} GLOB 'pm_?*' OR ${col} GLOB 'card_?*' OR ${col} GLOB 'src_?*') OR ${col} GLOB '*[^A-Za-z0-9_]*')`;
const MAX_FINDINGS = 100;

/** Luhn checksum over the digits of `s` once spaces and dashes are removed; true only for 13–19 digits. */
export function looksLikeCardNumber(s: string): boolean {
  const digits = s.replace(/[\s-]/g, "");
  return /^\d{13,19}$/.test(digits) && luhnValid(digits);
}

/** Never the value: its length, whether it passes Luhn, and at most its last four characters (PCI DSS truncation). */
function describeValue(v: string) {
  return { length: v.length, looksLikeCardNumber: looksLikeCardNumber(v), masked: `${"*".repeat(Math.max(0, Math.min(v.length, 16) - 4))}${v.length > 8 ? v.slice(-4) : ""}` };
}

const COLUMNS = [
  { table: "payments", column: "payment_method" },
  { table: "subscriptions", column: "payment_method" },
] as const;

async function scanColumn(d1: D1Database, table: string, column: string) {
  const where = NON_TOKEN_SQL(column);
  const counts = await d1
    .prepare(`SELECT count(${column}) AS "values", (SELECT count(*) FROM ${table} WHERE ${where}) AS nonToken FROM ${table}`)
    .first<{ values: number; nonToken: number }>();
  const rows = await d1.prepare(`SELECT id, ${column} AS v FROM ${table} WHERE ${where} ORDER BY id LIMIT ${MAX_FINDINGS}`).all<{ id: string; v: string }>();
  return {
    table,
    column,
    values: counts?.values ?? 0,
    nonToken: counts?.nonToken ?? 0,
    findings: rows.results.filter((r) => !TOKEN_PATTERN.test(r.v)).map((r) => ({ table, column, id: r.id, ...describeValue(r.v) })),
  };
}

function exportKeyStatus(b64: string | undefined) {
  if (!b64) return { configured: false, valid: false };
  try {
    return { configured: true, valid: base64ToBytes(b64).length === 32 };
  } catch {
    return { configured: true, valid: false };
  }
}

function stripeMode(key: string | undefined): "live" | "test" | "unknown" | null {
  if (!key) return null;
  if (/^(sk|rk)_live_/.test(key)) return "live";
  if (/^(sk|rk)_test_/.test(key)) return "test";
  return "unknown";
}

/** Which secrets are set (never their values), how exports are encrypted, and whether any card data sits in D1. */
export async function encryptionStatus(env: Env, now: number) {
  const exportKey = exportKeyStatus(env.EXPORT_ENCRYPTION_KEY);
  const scans = await Promise.all(COLUMNS.map((c) => scanColumn(env.DB, c.table, c.column)));
  const findings = scans.flatMap((s) => s.findings);
  const nonToken = scans.reduce((n, s) => n + s.nonToken, 0);
  return {
    checkedAt: iso(now),
    environment: env.ENVIRONMENT,
    secrets: {
      JWT_SECRET: { configured: !!env.JWT_SECRET, strongEnough: (env.JWT_SECRET?.length ?? 0) >= 32 },
      STRIPE_SECRET_KEY: { configured: !!env.STRIPE_SECRET_KEY, mode: stripeMode(env.STRIPE_SECRET_KEY), note: env.STRIPE_SECRET_KEY ? null : "not set: the sandbox gateway is used" },
      STRIPE_WEBHOOK_SECRET: { configured: !!env.STRIPE_WEBHOOK_SECRET },
      EXPORT_ENCRYPTION_KEY: { configured: exportKey.configured, valid: exportKey.valid },
    },
    exportEncryption: {
      algorithm: ENVELOPE_ALG,
      keyId: exportKey.valid ? await keyIdOf(env.EXPORT_ENCRYPTION_KEY) : null,
      appliesTo: ["audit exports (exports/audit/)", "daily backups (backups/)", "emergency exports (emergency/) unless an admin asked for plaintext"],
    },
    jwt: { algorithm: "HS256", issuer: env.JWT_ISSUER, audience: env.JWT_AUDIENCE, expiryRequired: true },
    apiKeys: { storage: "SHA-256 hashes only" },
    cardData: {
      stored: nonToken > 0,
      policy: "payment methods are gateway tokens (pm_…, card_…, src_…); card numbers, CVCs and expiry dates never reach the engine",
      columns: scans.map(({ table, column, values, nonToken }) => ({ table, column, values, nonToken })),
      findings,
      findingsTruncated: findings.length < nonToken,
    },
    transport: { tls: "Cloudflare terminates TLS at its edge for every request to the Worker; the Worker itself serves plain HTTP only inside Cloudflare (and locally under wrangler dev)" },
    atRest: "D1 and R2 are encrypted at rest by Cloudflare; exports and backups are additionally AES-256-GCM encrypted with EXPORT_ENCRYPTION_KEY",
  };
}

export type CardDataAccess = {
  id: string;
  seq: number;
  at: string;
  actor: string;
  actorRole: string;
  action: string;
  targetType: string;
  targetId: string;
  requestId: string | null;
  why: string;
  paymentMethod: string | null;
};

type AccessRow = {
  seq: number;
  id: string;
  at: number;
  actor: string;
  actor_role: string;
  action: string;
  target_type: string;
  target_id: string;
  request_id: string | null;
  after_method: string | null;
  alternate_method: string | null;
  payment_method: string | null;
};

function why(r: AccessRow): string {
  if (r.action === "gateway.tested") return "gateway test charge";
  if (r.payment_method) return "charge with a method other than the subscription's (e.g. a retry with the alternate method)";
  if (r.alternate_method !== null || r.action.startsWith("customer.")) return "customer alternate payment method set or changed";
  return "payment method set or changed";
}

/**
 * Audit entries that touched a payment method, newest first: a payment method set or changed (subscriptions,
 * a customer's metadata.alternatePaymentMethod), a charge with a method other than the subscription's, and
 * gateway test charges. Tokens only: no card data is ever stored.
 */
export async function cardDataAccess(d1: D1Database, q: { limit: number; beforeSeq: number | null; from: number | null; to: number | null }) {
  const rows = (
    await d1
      .prepare(
        `SELECT a.seq, a.id, a.at, a.actor, a.actor_role, a.action, a.target_type, a.target_id, a.request_id,
                json_extract(a.after, '$.paymentMethod') AS after_method,
                json_extract(a.after, '$.metadata.alternatePaymentMethod') AS alternate_method,
                CASE WHEN a.target_type = 'payment' AND p.payment_method IS NOT NULL AND (s.payment_method IS NULL OR p.payment_method <> s.payment_method) THEN p.payment_method END AS payment_method
         FROM audit_log a
         LEFT JOIN payments p ON a.target_type = 'payment' AND p.id = a.target_id
         LEFT JOIN invoices i ON i.id = p.invoice_id
         LEFT JOIN subscriptions s ON s.id = i.subscription_id
         WHERE (?1 IS NULL OR a.seq < ?1) AND (?2 IS NULL OR a.at >= ?2) AND (?3 IS NULL OR a.at < ?3) AND (
           a.action = 'gateway.tested'
           OR (a.action IN ('payment.processed', 'payment.failed') AND p.payment_method IS NOT NULL AND (s.payment_method IS NULL OR p.payment_method <> s.payment_method))
           OR (a.after LIKE '%aymentMethod%' AND (
                 (json_extract(a.after, '$.paymentMethod') IS NOT NULL AND json_extract(a.after, '$.paymentMethod') IS NOT json_extract(a.before, '$.paymentMethod'))
              OR json_extract(a.after, '$.metadata.alternatePaymentMethod') IS NOT json_extract(a.before, '$.metadata.alternatePaymentMethod')))
         )
         ORDER BY a.seq DESC LIMIT ?4`,
      )
      .bind(q.beforeSeq, q.from, q.to, q.limit + 1)
      .all<AccessRow>()
  ).results;
  const hasMore = rows.length > q.limit;
  const data: CardDataAccess[] = rows.slice(0, q.limit).map((r) => ({
    id: r.id,
    seq: r.seq,
    at: iso(r.at),
    actor: r.actor,
    actorRole: r.actor_role,
    action: r.action,
    targetType: r.target_type,
    targetId: r.target_id,
    requestId: r.request_id,
    why: why(r),
    paymentMethod: r.payment_method ?? r.after_method ?? r.alternate_method,
  }));
  return { data, hasMore, nextCursor: hasMore ? data[data.length - 1]!.id : null };
}
