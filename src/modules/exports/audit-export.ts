import { retained } from "../retention/run";
import type { Services } from "../../platform/services";
import { DateOrInstant } from "../../http/openapi";
import { z } from "@hono/zod-openapi";
import { and, getTableColumns, gt, gte, lt, notLike, sql, type SQL } from "drizzle-orm";
import type { Db } from "../../db/client";
import { auditLog } from "../../db/schema";
import { commitWithAudit, GENESIS_CHAIN } from "../../platform/audit";
import { fail, notFound, ok, type Outcome } from "../../platform/failure";
import { decrypt, encrypt, keyIdOf, sha256Bytes } from "../../lib/crypto";
import { iso, startOf, endExclusiveOf } from "../../lib/time";
import { stamp } from "./dump";
import { sealAuditChain } from "../audit/verify";

export const AUDIT_EXPORT_PREFIX = "exports/audit/";
/** Plaintext ceiling: an export is built in memory and encrypted in one piece. */
export const MAX_AUDIT_EXPORT_CHARS = 64 * 1024 * 1024;
const PAGE = 500;

export const AuditExportRequest = z
  .object({
    startDate: DateOrInstant.openapi({ example: "2024-06-01" }),
    endDate: DateOrInstant.openapi({ example: "2024-06-30", description: "A bare date includes that whole day (UTC)" }),
    format: z.enum(["json", "csv"]).default("json"),
    includeSystemEvents: z.boolean().default(true).openapi({ description: "false leaves out rows whose actor starts with system:" }),
  })
  .refine((b) => Date.parse(b.startDate) <= Date.parse(b.endDate), { path: ["endDate"], message: "endDate is before startDate" });
export type AuditExportInput = z.infer<typeof AuditExportRequest>;

export const AuditExportResult = z
  .object({
    key: z.string(),
    rows: z.number().int(),
    format: z.enum(["json", "csv"]),
    sha256: z.string().openapi({ description: "SHA-256 of the plaintext" }),
    encrypted: z.literal(true),
    keyId: z.string(),
    bytes: z.number().int().openapi({ description: "Size of the encrypted object" }),
    from: z.string(),
    to: z.string().openapi({ description: "Exclusive end" }),
    chainHead: z
      .object({ seq: z.number().int(), chain: z.string() })
      .nullable()
      .openapi({ description: "The AuditAnchor's head when the export was made (sealed first); null when the trail is empty" }),
    download: z.string(),
  })
  .openapi("AuditExport");

type Row = typeof auditLog.$inferSelect & { prevChain: string | null };

export const HASH_RULE =
  'mac = hex HMAC-SHA-256(AUDIT_HMAC_KEY, canonical JSON of {id,at,actor,actorRole,action,targetType,targetId,requestId,before,after,reason} with keys sorted, no spaces); chain = hex HMAC-SHA-256(AUDIT_HMAC_KEY, prevChain + "|" + seq + "|" + mac), prevChain of seq 1 = 64 zeros; at is epoch ms and before/after are the stored strings exactly as exported; prev_hash/hash are the unkeyed chain of rows written before the keyed chain (see README)';

const CSV_COLUMNS = ["seq", "id", "at", "at_iso", "actor", "actor_role", "action", "target_type", "target_id", "request_id", "reason", "before", "after", "mac", "prev_chain", "chain", "prev_hash", "hash"] as const;

// Values are written exactly (no spreadsheet-formula escaping): the export must re-hash to the chain.
function csvField(v: string | number | null): string {
  if (v === null) return "";
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

const csvLine = (r: Row) =>
  [r.seq, r.id, r.at, iso(r.at), r.actor, r.actorRole, r.action, r.targetType, r.targetId, r.requestId, r.reason, r.before, r.after, r.mac, r.prevChain, r.chain, r.prevHash, r.hash].map(csvField).join(",");

const jsonRow = (r: Row) => ({ ...r, atIso: iso(r.at) });

/** [from, to) in epoch ms; a bare-date end includes its whole UTC day. */
export function exportRange(input: Pick<AuditExportInput, "startDate" | "endDate">): { from: number; to: number } {
  return { from: startOf(input.startDate), to: endExclusiveOf(input.endDate) };
}

async function* rowsInRange(db: Db, from: number, to: number, includeSystem: boolean): AsyncGenerator<Row> {
  let after = 0;
  for (;;) {
    const conds: (SQL | undefined)[] = [gt(auditLog.seq, after), gte(auditLog.at, from), lt(auditLog.at, to), includeSystem ? undefined : notLike(auditLog.actor, "system:%")];
    // Each row carries the previous row's chain value, so every exported row's link can be checked on its own.
    const page = await db
      .select({ ...getTableColumns(auditLog), prevChain: sql<string | null>`(SELECT p.chain FROM audit_log p WHERE p.seq = audit_log.seq - 1)` })
      .from(auditLog)
      .where(and(...conds))
      .orderBy(auditLog.seq)
      .limit(PAGE)
      .all();
    for (const r of page) yield r.seq === 1 ? { ...r, prevChain: GENESIS_CHAIN } : r;
    if (page.length < PAGE) return;
    after = page[page.length - 1]!.seq;
  }
}

/** Builds the export, encrypts it, stores it in R2 and audits it. */
export async function exportAuditLog(s: Services, input: AuditExportInput): Promise<Outcome<z.infer<typeof AuditExportResult>, "unprocessable">> {
  const { env, db, audit: ctx } = s;
  const { from, to } = exportRange(input);
  // Rows before the retention checkpoint are in R2 archives: an export of that range would be silently short.
  const kept = await retained(db, ["audit"], from, "The audit export");
  if (!kept.ok) return kept;
  // Seal first, so every row committed before the export carries its chain value and is covered by the head.
  const { head } = await sealAuditChain(env);
  const parts: string[] = [];
  let chars = 0;
  let count = 0;
  const push = (s: string) => {
    chars += s.length;
    parts.push(s);
    return chars <= MAX_AUDIT_EXPORT_CHARS;
  };
  const tooLong = () => fail("unprocessable", `the export would exceed ${MAX_AUDIT_EXPORT_CHARS} characters; export a shorter date range`);
  if (input.format === "csv") push(CSV_COLUMNS.join(",") + "\r\n");
  for await (const r of rowsInRange(db, from, to, input.includeSystemEvents)) {
    if (!push(input.format === "csv" ? csvLine(r) + "\r\n" : (count ? ",\n" : "") + JSON.stringify(jsonRow(r)))) return tooLong();
    count++;
  }
  const chainHead = head.seq > 0 ? { seq: head.seq, chain: head.chain } : null;
  const text =
    input.format === "csv"
      ? parts.join("")
      : `{"kind":"audit_export","exportedAt":${JSON.stringify(iso(ctx.now))},"exportedBy":${JSON.stringify(ctx.actor.id)},"from":${JSON.stringify(iso(from))},"to":${JSON.stringify(iso(to))},"includeSystemEvents":${input.includeSystemEvents},"chainHead":${JSON.stringify(chainHead)},"hashRule":${JSON.stringify(HASH_RULE)},"rowCount":${count},"rows":[\n${parts.join("")}\n]}\n`;
  const plain = new TextEncoder().encode(text);
  const sha256 = await sha256Bytes(plain);
  const keyId = await keyIdOf(env.EXPORT_ENCRYPTION_KEY);
  const sealed = await encrypt(env.EXPORT_ENCRYPTION_KEY, plain);
  const name = `${stamp(ctx.now)}-${input.startDate.slice(0, 10)}-${input.endDate.slice(0, 10)}.${input.format}.enc`;
  const key = `${AUDIT_EXPORT_PREFIX}${name}`;
  await env.ARCHIVE.put(key, sealed, {
    httpMetadata: { contentType: "application/octet-stream" },
    customMetadata: {
      kind: "audit_export",
      format: input.format,
      rows: String(count),
      sha256,
      keyId,
      exportedBy: ctx.actor.id,
      ...(chainHead ? { chainHeadSeq: String(chainHead.seq), chainHeadChain: chainHead.chain } : {}),
    },
  });
  const result = { key, rows: count, format: input.format, sha256, encrypted: true as const, keyId, bytes: sealed.length, from: iso(from), to: iso(to), chainHead, download: `/api/v1/audit/exports/${name}` };
  await commitWithAudit(
    db,
    [],
    [{ action: "audit.exported", targetType: "audit_export", targetId: key, after: { format: input.format, rows: count, from: result.from, to: result.to, includeSystemEvents: input.includeSystemEvents, sha256, keyId } }],
    ctx,
  );
  return ok(result);
}

/** `name` is the file name under exports/audit/ (or the whole key); only names this module writes are accepted. */
export function exportKeyOf(name: string): string | null {
  const bare = name.startsWith(AUDIT_EXPORT_PREFIX) ? name.slice(AUDIT_EXPORT_PREFIX.length) : name;
  return /^[0-9A-Za-z.-]+\.(json|csv)\.enc$/.test(bare) && !bare.includes("..") ? `${AUDIT_EXPORT_PREFIX}${bare}` : null;
}

export type DecryptedExport = { key: string; format: "json" | "csv"; body: Uint8Array<ArrayBuffer>; sha256: string; chainHead: string | null };

/** Reads and decrypts a stored export. Audited: it is access to the whole trail. */
export async function readAuditExport(s: Services, key: string): Promise<Outcome<DecryptedExport, "not_found" | "unprocessable">> {
  const { env, db, audit: ctx } = s;
  const obj = await env.ARCHIVE.get(key);
  if (!obj) return notFound("audit export", key);
  const opened = await decrypt(env.EXPORT_ENCRYPTION_KEY, new Uint8Array(await obj.arrayBuffer()));
  if (!opened.ok) return fail("unprocessable", `export ${key} cannot be decrypted (${opened.error}): it was altered or was written with another key`);
  const sha256 = await sha256Bytes(opened.value);
  const meta = obj.customMetadata ?? {};
  if (meta.sha256 && meta.sha256 !== sha256) return fail("unprocessable", `export ${key} does not match the sha256 recorded when it was written`);
  await commitWithAudit(db, [], [{ action: "audit.export_downloaded", targetType: "audit_export", targetId: key, after: { sha256 } }], ctx);
  const format = key.endsWith(".csv.enc") ? "csv" : "json";
  return ok({ key, format, body: opened.value, sha256, chainHead: meta.chainHeadSeq ? `${meta.chainHeadSeq}:${meta.chainHeadChain ?? meta.chainHeadHash}` : null });
}
