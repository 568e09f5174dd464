import { canonicalJson } from "../lib/hash";
import { toHex } from "../lib/crypto";

// The format of retention archives in R2 (docs/retention.md): an NDJSON body (one row per line, canonical JSON) and
// a manifest beside it (`<body key>.manifest.json`) with the row count, the time range and the body's SHA-256.
// Both are functions of the rows alone (no write time), so archiving the same rows twice writes the same objects.

export const ARCHIVE_FORMAT = "billing-engine.retention/1";

/** The audit chain at an archive's edges: the chain value before its first row and at its last row. */
export type ChainEdges = { startSeq: number; prevChain: string; endSeq: number; endChain: string };

export type ArchiveManifest = {
  format: typeof ARCHIVE_FORMAT;
  kind: string;
  key: string;
  rows: number;
  bytes: number;
  sha256: string;
  /** ISO times of the oldest and newest row. */
  from: string;
  to: string;
  firstRef: string;
  lastRef: string;
  /** Audit archives only. */
  chain?: ChainEdges;
};

export const manifestKeyOf = (key: string) => `${key}.manifest.json`;

const encoder = new TextEncoder();
export const sha256Of = async (text: string) => toHex(await crypto.subtle.digest("SHA-256", encoder.encode(text)));

export const toNdjson = (rows: unknown[]) => rows.map((r) => canonicalJson(r)).join("\n") + "\n";
export const fromNdjson = <T>(body: string): T[] =>
  body
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as T);

/**
 * Writes the body (R2 checks it against its SHA-256 on upload), then the manifest, then reads the body back and
 * compares its hash and row count: only after this returns may the rows leave D1. Throws otherwise.
 */
export async function writeVerifiedArchive(bucket: R2Bucket, body: string, manifest: ArchiveManifest): Promise<void> {
  await bucket.put(manifest.key, body, {
    sha256: manifest.sha256,
    httpMetadata: { contentType: "application/x-ndjson" },
    customMetadata: { kind: manifest.kind, rows: String(manifest.rows), sha256: manifest.sha256 },
  });
  await bucket.put(manifestKeyOf(manifest.key), JSON.stringify(manifest, null, 2), { httpMetadata: { contentType: "application/json" } });
  const back = await bucket.get(manifest.key);
  if (!back) throw new Error(`archive ${manifest.key} is not readable after writing it`);
  const text = await back.text();
  const problems = checkBody(text, manifest);
  if (problems.length) throw new Error(`archive ${manifest.key} does not match its manifest after writing it: ${problems.join("; ")}`);
}

/** What is wrong with `body` against `manifest` (empty when it matches): hash, size and row count. */
export function checkBody(body: string, manifest: ArchiveManifest, hash?: string): string[] {
  const out: string[] = [];
  const lines = body.split("\n").filter((l) => l.length > 0).length;
  if (lines !== manifest.rows) out.push(`${lines} rows, the manifest says ${manifest.rows}`);
  const bytes = encoder.encode(body).length;
  if (bytes !== manifest.bytes) out.push(`${bytes} bytes, the manifest says ${manifest.bytes}`);
  if (hash !== undefined && hash !== manifest.sha256) out.push(`sha-256 ${hash}, the manifest says ${manifest.sha256}`);
  return out;
}

/** Builds the manifest of `rows` (already in archive order) for `key`. */
export async function manifestOf(
  kind: string,
  key: string,
  body: string,
  rows: number,
  range: { from: number; to: number; firstRef: string; lastRef: string },
  chain?: ChainEdges,
): Promise<ArchiveManifest> {
  return {
    format: ARCHIVE_FORMAT,
    kind,
    key,
    rows,
    bytes: encoder.encode(body).length,
    sha256: await sha256Of(body),
    from: new Date(range.from).toISOString(),
    to: new Date(range.to).toISOString(),
    firstRef: range.firstRef,
    lastRef: range.lastRef,
    ...(chain ? { chain } : {}),
  };
}

/**
 * Where the live audit chain starts once its oldest rows are archived: the edge of the newest audit archive (seq and
 * chain value of its last row). Kept in R2, outside D1, like the weekly checkpoint: verification starts from it.
 */
export const AUDIT_RETENTION_CHECKPOINT_KEY = "retention/audit/checkpoint.json";
export type AuditRetentionCheckpoint = { seq: number; chain: string; archiveKey: string };

export async function readAuditRetentionCheckpoint(bucket: R2Bucket): Promise<AuditRetentionCheckpoint | null> {
  const obj = await bucket.get(AUDIT_RETENTION_CHECKPOINT_KEY);
  return obj ? ((await obj.json()) as AuditRetentionCheckpoint) : null;
}

export async function writeAuditRetentionCheckpoint(bucket: R2Bucket, cp: AuditRetentionCheckpoint): Promise<void> {
  await bucket.put(AUDIT_RETENTION_CHECKPOINT_KEY, JSON.stringify(cp), { httpMetadata: { contentType: "application/json" } });
}

/** Invoice lines archived by retention live in a page's NDJSON (key ending `.ndjson`), one line row per line. */
export const isRetentionArchive = (key: string) => key.endsWith(".ndjson");

export async function archivedRowsOf<T extends Record<string, unknown>>(bucket: R2Bucket, key: string, match: (row: T) => boolean): Promise<T[] | null> {
  const obj = await bucket.get(key);
  if (!obj) return null;
  return fromNdjson<T>(await obj.text()).filter(match);
}
