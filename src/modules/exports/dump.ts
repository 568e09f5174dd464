import { bytesToBase64, decrypt, encrypt, keyIdOf, sha256Bytes } from "../../lib/crypto";

import type { Actor } from "../../env";
import type { Services } from "../../platform/services";
import { and, eq } from "drizzle-orm";
import { commitWithAudit, type AuditEntry } from "../../platform/audit";
import { auditLog } from "../../db/schema";

/**
 * Table-by-table dumps of D1 into R2 (emergency exports and daily backups), and their verification.
 *
 * R2 layout under a prefix (`backups/2024-06-24/`, `emergency/20240624T101500.000Z/`):
 *   <table>.json[.enc]     {"table","columns":[…],"rows":[[…],…]} (values as D1 returns them; blobs as {"$base64"})
 *   <table>.<n>.json[.enc] part n (2, 3, …) of a table larger than one part, same shape, rows in rowid order
 *   progress.json          while the dump runs: where it stands (deleted when it finishes)
 *   manifest.json          written last, so a folder without one is an unfinished dump
 * `sha256` in the manifest is of each file's plaintext; `bytes` is the stored object's size.
 *
 * A dump is bounded per invocation (DUMP_BUDGET): the request that asks for it writes what fits, and the rest goes on
 * in `dump.continue` messages on the tasks queue, one slice per invocation, whatever the size of the database.
 */

export const MANIFEST = "manifest.json";
export const PROGRESS = "progress.json";
export const ARCHIVE_BUCKET = "billing-archive";
// D1 has no read snapshot across queries: each table is read in pages while writes go on.
const CONSISTENCY =
  "table-by-table read without a global snapshot: rows written during the dump may be in one table and not another; for point-in-time recovery use `wrangler d1 time-travel restore`";

/**
 * What one invocation may do: rows read (a D1 query per page), files written (an R2 put each) and the size of one
 * file in memory. 20,000 rows is 40 page queries; 60 files stays far below the subrequest limit.
 */
export const DUMP_BUDGET = { pageRows: 500, partRows: 5_000, partBytes: 8 * 1024 * 1024, rowsPerInvocation: 20_000, filesPerInvocation: 60 };
export type DumpBudget = typeof DUMP_BUDGET;

export type DumpFile = { table: string; key: string; rows: number; bytes: number; sha256: string; part: number };
export type Manifest = {
  version: 1;
  kind: "backup" | "emergency";
  createdAt: string;
  createdBy: string;
  bucket: string;
  prefix: string;
  encrypted: boolean;
  keyId: string | null;
  destination: string | null;
  consistency: string;
  /** One entry per file, in table order then part order: a large table has several. */
  tables: DumpFile[];
  totalRows: number;
  totalBytes: number;
  /** CREATE TABLE statements, so a restore can check the target has the same columns. */
  schema: { table: string; sql: string }[];
};

export type DumpOptions = { prefix: string; kind: Manifest["kind"]; encrypt: boolean; now: number; actor: Actor; destination?: string | null };

/**
 * Where a running dump stands (`progress.json`). `runId` tells this run's messages from an earlier run's into the same
 * folder; `step` numbers its slices, and only the holder of `step` may advance it (R2 conditional put).
 */
type Progress = {
  version: 1;
  runId: string;
  kind: Manifest["kind"];
  prefix: string;
  encrypt: boolean;
  keyId: string | null;
  now: number;
  actor: Actor;
  destination: string | null;
  schema: { table: string; sql: string }[];
  /** The next table to read (index into `schema`), after `after` (a rowid), writing part `part` next. */
  table: number;
  after: number | null;
  part: number;
  files: DumpFile[];
  step: number;
  /** Every table is written: the manifest, audit row and clean-up are under way (a retry finishes them). */
  finishing: boolean;
};

/** A dump's files so far (all of them once `done`: its manifest lists the same). */
export type DumpState = { done: boolean; prefix: string; files: DumpFile[]; keyId: string | null; createdAt: string };

/** What a list of dump files holds: distinct tables, rows, stored bytes. */
export function totalsOf(files: readonly DumpFile[]): { tables: number; rows: number; bytes: number } {
  return { tables: new Set(files.map((f) => f.table)).size, rows: files.reduce((n, f) => n + f.rows, 0), bytes: files.reduce((n, f) => n + f.bytes, 0) };
}

const quoteIdent = (name: string) => `"${name.replaceAll('"', '""')}"`;

/** Application tables: everything but SQLite's, D1's and Cloudflare's internal ones. */
export async function listTables(db: D1Database): Promise<{ name: string; sql: string }[]> {
  const r = await db
    .prepare(
      "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name <> 'd1_migrations' ORDER BY name",
    )
    .all<{ name: string; sql: string }>();
  return r.results;
}

function jsonSafe(v: unknown): unknown {
  if (v instanceof ArrayBuffer) return { $base64: bytesToBase64(new Uint8Array(v)) };
  if (ArrayBuffer.isView(v)) return { $base64: bytesToBase64(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)) };
  if (Array.isArray(v)) return { $base64: bytesToBase64(Uint8Array.from(v as number[])) };
  return v;
}

/** One page of `table` after rowid `after` (all tables here are rowid tables), columns in table order. */
async function readPage(db: D1Database, table: string, after: number | null, limit: number): Promise<{ columns: string[]; rows: unknown[][]; last: number | null }> {
  const stmt = db.prepare(`SELECT rowid AS __dump_rowid__, * FROM ${quoteIdent(table)}${after === null ? "" : " WHERE rowid > ?1"} ORDER BY rowid LIMIT ${limit}`);
  const [names, ...page] = await (after === null ? stmt : stmt.bind(after)).raw({ columnNames: true });
  const rows = page.map((r) => r.slice(1).map(jsonSafe));
  return { columns: names ? (names as string[]).slice(1) : [], rows, last: page.length ? (page[page.length - 1]![0] as number) : null };
}

async function columnsOf(db: D1Database, table: string): Promise<string[]> {
  const info = await db.prepare(`SELECT name FROM pragma_table_info(?1) ORDER BY cid`).bind(table).all<{ name: string }>();
  return info.results.map((c) => c.name);
}

/**
 * A part's key. The request's slice (step 0) writes `<table>.json`, `<table>.<n>.json`; a queued slice adds a token of
 * its own delivery, so a duplicate delivery of the same step (which loses the progress race) never overwrites a file
 * the winner's progress points to. The manifest lists the keys; nothing guesses them.
 */
const partKey = (p: { prefix: string; encrypt: boolean; step: number }, table: string, part: number, token: string) =>
  `${p.prefix}${table}${part === 1 ? "" : `.${part}`}${p.step === 0 ? "" : `.${token}`}.json${p.encrypt ? ".enc" : ""}`;

/**
 * Reads the next part of the current table (up to partRows rows or partBytes of JSON) and writes it as one file.
 * Returns the file and whether the table is finished.
 */
async function writePart(env: Env, p: Progress, budget: DumpBudget, token: string): Promise<{ file: DumpFile; tableDone: boolean; last: number | null }> {
  const table = p.schema[p.table]!.table;
  const chunks: string[] = [];
  let columns: string[] = [];
  let rows = 0;
  let bytes = 0;
  let after = p.after;
  let tableDone = false;
  while (rows < budget.partRows && bytes < budget.partBytes) {
    const limit = Math.min(budget.pageRows, budget.partRows - rows);
    const page = await readPage(env.DB, table, after, limit);
    if (page.columns.length) columns = page.columns;
    for (const r of page.rows) {
      const json = JSON.stringify(r);
      chunks.push(json);
      bytes += json.length + 1;
    }
    rows += page.rows.length;
    if (page.last !== null) after = page.last;
    if (page.rows.length < limit) {
      tableDone = true;
      break;
    }
  }
  if (columns.length === 0) columns = await columnsOf(env.DB, table);
  const plain = new TextEncoder().encode(`{"table":${JSON.stringify(table)},"columns":${JSON.stringify(columns)},"rows":[${chunks.join(",")}]}`);
  const body = p.encrypt ? await encrypt(env.EXPORT_ENCRYPTION_KEY, plain) : plain;
  const key = partKey(p, table, p.part, token);
  const sha256 = await sha256Bytes(plain);
  await env.ARCHIVE.put(key, body, {
    httpMetadata: { contentType: p.encrypt ? "application/octet-stream" : "application/json" },
    customMetadata: { kind: p.kind, table, part: String(p.part), rows: String(rows), sha256, encrypted: String(p.encrypt), ...(p.keyId ? { keyId: p.keyId } : {}) },
  });
  return { file: { table, key, rows, bytes: body.length, sha256, part: p.part }, tableDone, last: after };
}

/** Writes parts until the tables are done or the invocation's budget is spent; moves `p` along. */
async function runSlice(env: Env, p: Progress, budget: DumpBudget): Promise<boolean> {
  let rows = 0;
  let files = 0;
  const token = crypto.randomUUID().slice(0, 8);
  while (p.table < p.schema.length) {
    if (rows + budget.partRows > budget.rowsPerInvocation && files > 0) return false;
    if (files >= budget.filesPerInvocation) return false;
    const { file, tableDone, last } = await writePart(env, p, budget, token);
    p.files.push(file);
    rows += file.rows;
    files++;
    if (tableDone) {
      p.table++;
      p.after = null;
      p.part = 1;
    } else {
      p.after = last;
      p.part++;
    }
  }
  return true;
}

function manifestOf(p: Progress): Manifest {
  return {
    version: 1,
    kind: p.kind,
    createdAt: new Date(p.now).toISOString(),
    createdBy: p.actor.id,
    bucket: ARCHIVE_BUCKET,
    prefix: p.prefix,
    encrypted: p.encrypt,
    keyId: p.keyId,
    destination: p.destination,
    consistency: CONSISTENCY,
    tables: p.files,
    totalRows: totalsOf(p.files).rows,
    totalBytes: totalsOf(p.files).bytes,
    schema: p.schema,
  };
}

/** The audit row of a finished dump, by the actor who asked for it. */
function completionAudit(m: Manifest): AuditEntry {
  const { tables } = totalsOf(m.tables);
  if (m.kind === "backup") {
    return { action: "backup.created", targetType: "backup", targetId: m.prefix, after: backupSummaryOf(m) };
  }
  return {
    action: m.encrypted ? "emergency.exported" : "emergency.exported_unencrypted",
    targetType: "emergency_export",
    targetId: m.prefix,
    after: { prefix: m.prefix, destination: m.destination, encrypted: m.encrypted, keyId: m.keyId, tables, files: m.tables.length, totalRows: m.totalRows, totalBytes: m.totalBytes },
    ...(m.encrypted ? {} : { reason: "plaintext export of every table requested (encrypt: false)" }),
  };
}

/** A backup's summary from its manifest (the API's Backup). */
export function backupSummaryOf(m: Manifest) {
  return { date: m.prefix.split("/").at(-2) ?? "", prefix: m.prefix, createdAt: m.createdAt, tables: totalsOf(m.tables).tables, rows: m.totalRows, bytes: m.totalBytes, keyId: m.keyId };
}

/**
 * Writes the manifest, audits the dump as its requester (once: a retried finish finds its row), then removes the
 * progress file and the step markers. Each step may be redone, so a finish that died half-way is finished by the retry.
 */
async function finish(s: Services, p: Progress): Promise<DumpState> {
  const manifest = manifestOf(p);
  await s.env.ARCHIVE.put(`${p.prefix}${MANIFEST}`, JSON.stringify(manifest, null, 2), {
    httpMetadata: { contentType: "application/json" },
    customMetadata: { kind: p.kind, encrypted: String(p.encrypt), totalRows: String(manifest.totalRows) },
  });
  const entry = completionAudit(manifest);
  const done = await s.db.select({ id: auditLog.id }).from(auditLog).where(and(eq(auditLog.targetId, p.prefix), eq(auditLog.action, entry.action))).get();
  if (!done) {
    const as = s.as(p.actor);
    await commitWithAudit(as.db, [], [entry], as.audit);
  }
  // A newer run into the same folder owns its progress file: leave it.
  const current = await readProgress(s.env.ARCHIVE, p.prefix);
  if (current?.progress.runId === p.runId) await s.env.ARCHIVE.delete([`${p.prefix}${PROGRESS}`, sentMarker(p, p.step), sentMarker(p, p.step - 1)]);
  return stateOf(p, true);
}

const stateOf = (p: Progress, done: boolean): DumpState => ({ done, prefix: p.prefix, files: p.files, keyId: p.keyId, createdAt: new Date(p.now).toISOString() });

/** Whether the message of a step was sent: a tiny object of its own, so writing it never moves progress.json's etag. */
const sentMarker = (p: { prefix: string; runId: string }, step: number) => `${p.prefix}steps/${p.runId}-${step}`;

async function readProgress(archive: R2Bucket, prefix: string): Promise<{ progress: Progress; etag: string } | null> {
  const obj = await archive.get(`${prefix}${PROGRESS}`);
  return obj ? { progress: (await obj.json()) as Progress, etag: obj.etag } : null;
}

async function sendStep(s: Services, p: Progress): Promise<void> {
  await s.queues.tasks.send({ type: "dump.continue", prefix: p.prefix, runId: p.runId, step: p.step });
  await s.env.ARCHIVE.put(sentMarker(p, p.step), "");
  await s.env.ARCHIVE.delete(sentMarker(p, p.step - 1));
}

/**
 * Saves `p` at its next step only if nobody moved the progress file since `etag` was read (R2's conditional put),
 * then sends the message for that step. False when another delivery got there first.
 */
async function advance(s: Services, p: Progress, etag: string | null): Promise<boolean> {
  p.step++;
  const saved = await s.env.ARCHIVE.put(`${p.prefix}${PROGRESS}`, JSON.stringify(p), etag ? { onlyIf: { etagMatches: etag } } : {});
  if (!saved) return false;
  await sendStep(s, p);
  return true;
}

/**
 * Starts a dump of every application table under `opts.prefix`: writes what fits in this invocation and, when that
 * is everything, the manifest (and audit row); otherwise the rest continues on the tasks queue. An emergency export
 * is audited when it starts too: a plaintext one writes readable files from its first slice on.
 */
export async function startDump(s: Services, opts: DumpOptions, budget: DumpBudget = DUMP_BUDGET): Promise<DumpState> {
  const { env } = s;
  // A re-run into the same folder (e.g. a retried cron, a second backup the same day) must not leave an old manifest
  // over new files; an earlier run still going stops at its next message (another runId).
  await env.ARCHIVE.delete([`${opts.prefix}${MANIFEST}`, `${opts.prefix}${PROGRESS}`]);
  const tables = await listTables(env.DB);
  const p: Progress = {
    version: 1,
    runId: crypto.randomUUID(),
    kind: opts.kind,
    prefix: opts.prefix,
    encrypt: opts.encrypt,
    keyId: opts.encrypt ? await keyIdOf(env.EXPORT_ENCRYPTION_KEY) : null,
    now: opts.now,
    actor: opts.actor,
    destination: opts.destination ?? null,
    schema: tables.map((t) => ({ table: t.name, sql: t.sql })),
    table: 0,
    after: null,
    part: 1,
    files: [],
    step: 0,
    finishing: false,
  };
  if (opts.kind === "emergency") {
    const started = { prefix: p.prefix, destination: p.destination, encrypted: p.encrypt, keyId: p.keyId, tables: tables.length };
    await commitWithAudit(s.db, [], [{ action: "emergency.export_started", targetType: "emergency_export", targetId: p.prefix, after: started }], s.audit);
  }
  if (await runSlice(env, p, budget)) return finish(s, p);
  await advance(s, p, null);
  return stateOf(p, false);
}

/**
 * One `dump.continue` message: the slice numbered `step` of run `runId`. A duplicate, late or foreign delivery does
 * nothing; a retry of a slice whose progress was saved but whose message may not have been sent sends it again; a
 * retry of a finish that died half-way finishes it. Returns null when this delivery had nothing to do.
 */
export async function continueDump(s: Services, prefix: string, runId: string, step: number, budget: DumpBudget = DUMP_BUDGET): Promise<DumpState | null> {
  const read = await readProgress(s.env.ARCHIVE, prefix);
  if (!read || read.progress.runId !== runId) return null; // finished, or replaced by a newer run into the folder
  const { progress: p, etag } = read;
  if (p.step === step + 1) {
    if (p.finishing) return finish(s, p);
    if (!(await s.env.ARCHIVE.head(sentMarker(p, p.step)))) await sendStep(s, p);
    return null;
  }
  if (p.step > step) return null;
  // The message for this step arrived before its slice's save was visible: retry later.
  if (p.step < step) throw new Error(`dump ${prefix} is at step ${p.step}, message is for step ${step}`);
  if (await runSlice(s.env, p, budget)) {
    // Only the holder of the current progress may finish: a concurrent duplicate loses this conditional put.
    p.step++;
    p.finishing = true;
    const claimed = await s.env.ARCHIVE.put(`${prefix}${PROGRESS}`, JSON.stringify(p), { onlyIf: { etagMatches: etag } });
    if (!claimed) return null;
    return finish(s, p);
  }
  return (await advance(s, p, etag)) ? stateOf(p, false) : null;
}

export async function readManifest(archive: R2Bucket, prefix: string): Promise<Manifest | null> {
  const obj = await archive.get(`${prefix}${MANIFEST}`);
  return obj ? ((await obj.json()) as Manifest) : null;
}

export type Mismatch = { table: string | null; key: string; problem: string };
/**
 * `tablesChecked` counts the files checked by this call (one per table part). `complete` false: the files from
 * `nextFrom` on are not checked yet (call again with `from`); `ok` then means "no mismatch so far".
 */
export type VerifyResult =
  | { ok: true; prefix: string; tablesChecked: number; rows: number; bytes: number; complete: boolean; from: number; nextFrom?: number }
  | { ok: false; prefix: string; tablesChecked: number; mismatch: Mismatch; complete: true; from: number };

/** Files and stored bytes one verification call reads: R2 gets and decryption in one invocation's memory and CPU. */
export const VERIFY_BUDGET = { files: 60, bytes: 64 * 1024 * 1024 };

/**
 * Re-reads the files of a dump from index `from`, decrypts them, and checks size, sha256 and row count against the
 * manifest; stops at the first mismatch, or when the budget is spent (`nextFrom`).
 */
export async function verifyDump(env: Env, manifest: Manifest, from = 0, budget = VERIFY_BUDGET): Promise<VerifyResult> {
  const { prefix } = manifest;
  const fail = (i: number, mismatch: Mismatch): VerifyResult => ({ ok: false, prefix, tablesChecked: i - from, mismatch, complete: true, from });
  if (manifest.encrypted) {
    const current = await keyIdOf(env.EXPORT_ENCRYPTION_KEY);
    if (manifest.keyId !== current) {
      return fail(from, { table: null, key: `${prefix}${MANIFEST}`, problem: `encrypted with key ${manifest.keyId}; the configured key is ${current}` });
    }
  }
  let rows = 0;
  let bytes = 0;
  let i = from;
  for (; i < manifest.tables.length; i++) {
    if (i > from && (i - from >= budget.files || bytes >= budget.bytes)) break;
    const f = manifest.tables[i]!;
    const obj = await env.ARCHIVE.get(f.key);
    if (!obj) return fail(i, { table: f.table, key: f.key, problem: "object is missing" });
    const stored = new Uint8Array(await obj.arrayBuffer());
    if (stored.length !== f.bytes) return fail(i, { table: f.table, key: f.key, problem: `size is ${stored.length} bytes, manifest says ${f.bytes}` });
    let plain = stored;
    if (manifest.encrypted) {
      const opened = await decrypt(env.EXPORT_ENCRYPTION_KEY, stored);
      if (!opened.ok) return fail(i, { table: f.table, key: f.key, problem: `decryption failed (${opened.error}): the object was altered or is not from this key` });
      plain = opened.value;
    }
    const sha256 = await sha256Bytes(plain);
    if (sha256 !== f.sha256) return fail(i, { table: f.table, key: f.key, problem: `sha256 is ${sha256}, manifest says ${f.sha256}` });
    let count: number;
    try {
      count = (JSON.parse(new TextDecoder().decode(plain)) as { rows: unknown[] }).rows.length;
    } catch {
      return fail(i, { table: f.table, key: f.key, problem: "file is not a table dump" });
    }
    if (count !== f.rows) return fail(i, { table: f.table, key: f.key, problem: `holds ${count} rows, manifest says ${f.rows}` });
    rows += count;
    bytes += stored.length;
  }
  const complete = i >= manifest.tables.length;
  return { ok: true, prefix, tablesChecked: i - from, rows, bytes, complete, from, ...(complete ? {} : { nextFrom: i }) };
}

/** `2024-06-24T10:15:00.123Z` → `20240624T101500.123Z`: sortable and safe in an R2 key. */
export const stamp = (now: number) => new Date(now).toISOString().replace(/[-:]/g, "");
