import { and, eq } from "drizzle-orm";
import type { Services } from "../../platform/services";
import { retentionArchives } from "../../db/schema";
import { auditKey, auditRowMac, chainLink, GENESIS_CHAIN, type AuditRow } from "../../platform/audit";
import { checkBody, fromNdjson, manifestKeyOf, sha256Of, type ArchiveManifest } from "../../platform/archives";

export type ArchiveVerification = {
  key: string;
  ok: boolean;
  kind: string | null;
  rows: number | null;
  sha256: string | null;
  /** Everything found wrong, in words (empty when ok). */
  problems: string[];
  /** Audit archives: the chain edges checked. */
  chain: { startSeq: number; endSeq: number; linksChecked: number } | null;
};

type Timed = { createdAt?: number | string; at?: number };
const timeOf = (r: Timed) => (typeof r.at === "number" ? r.at : typeof r.createdAt === "number" ? r.createdAt : Date.parse(String(r.createdAt)));

/**
 * Checks an archive against its manifest (hash, size, row count, every row inside the manifest's time range) and
 * against D1's record of it; for audit rows, every row's MAC and every chain link from the manifest's start value to
 * its end value, and that the start value is the end of the previous archive (or the genesis value at row 1).
 */
export async function verifyArchive(s: Services, key: string): Promise<ArchiveVerification> {
  const { env, db } = s;
  const out: ArchiveVerification = { key, ok: false, kind: null, rows: null, sha256: null, problems: [], chain: null };
  const [manifestObj, bodyObj, record] = await Promise.all([
    env.ARCHIVE.get(manifestKeyOf(key)),
    env.ARCHIVE.get(key),
    db.select().from(retentionArchives).where(eq(retentionArchives.key, key)).get(),
  ]);
  if (!manifestObj) out.problems.push("no manifest in R2");
  if (!bodyObj) out.problems.push("no archive body in R2");
  if (!manifestObj || !bodyObj) return out;
  const manifest = (await manifestObj.json()) as ArchiveManifest;
  const body = await bodyObj.text();
  const hash = await sha256Of(body);
  out.kind = manifest.kind;
  out.rows = manifest.rows;
  out.sha256 = hash;
  out.problems.push(...checkBody(body, manifest, hash));
  if (manifest.key !== key) out.problems.push(`the manifest names ${manifest.key}`);
  if (!record) out.problems.push("D1 has no record of this archive (its rows may still be in D1: the run that wrote it did not finish)");
  else if (record.sha256 !== manifest.sha256 || record.rows !== manifest.rows) out.problems.push("D1's record of this archive differs from its manifest");
  const rows = fromNdjson<Timed & Record<string, unknown>>(body);
  const from = Date.parse(manifest.from);
  const to = Date.parse(manifest.to);
  const outside = rows.filter((r) => timeOf(r) < from || timeOf(r) > to).length;
  if (outside) out.problems.push(`${outside} rows outside the manifest's time range`);
  if (manifest.kind === "audit") out.problems.push(...(await checkChain(s, manifest, rows as unknown as AuditRow[], out)));
  out.ok = out.problems.length === 0;
  return out;
}

async function checkChain(s: Services, manifest: ArchiveManifest, rows: AuditRow[], out: ArchiveVerification): Promise<string[]> {
  const { env, db } = s;
  const edges = manifest.chain;
  if (!edges) return ["an audit archive without chain edges in its manifest"];
  const problems: string[] = [];
  if (edges.startSeq === 1) {
    if (edges.prevChain !== GENESIS_CHAIN) problems.push("starts at row 1 but not from the genesis chain value");
  } else {
    const prev = await db
      .select({ endChain: retentionArchives.endChain })
      .from(retentionArchives)
      .where(and(eq(retentionArchives.kind, "audit"), eq(retentionArchives.endSeq, edges.startSeq - 1)))
      .get();
    if (!prev) problems.push(`no archive ends at row ${edges.startSeq - 1}, where this one starts`);
    else if (prev.endChain !== edges.prevChain) problems.push(`its start value differs from the end of the archive before it (row ${edges.startSeq - 1})`);
  }
  const key = await auditKey(env.AUDIT_HMAC_KEY);
  let chain = edges.prevChain;
  let expected = edges.startSeq;
  let links = 0;
  for (const r of rows) {
    if (r.seq !== expected) {
      problems.push(`row ${expected} is missing (found ${r.seq})`);
      break;
    }
    if (r.mac === null || (await auditRowMac(key, r)) !== r.mac) {
      problems.push(`row ${r.seq}: content does not match its MAC`);
      break;
    }
    chain = await chainLink(key, chain, r.seq, r.mac);
    if (chain !== r.chain) {
      problems.push(`row ${r.seq}: the chain breaks here`);
      break;
    }
    links++;
    expected++;
  }
  if (!problems.length && (expected - 1 !== edges.endSeq || chain !== edges.endChain)) problems.push("the chain does not end at the manifest's end value");
  out.chain = { startSeq: edges.startSeq, endSeq: edges.endSeq, linksChecked: links };
  return problems;
}
