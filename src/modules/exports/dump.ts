import { bytesToBase64, decrypt, encrypt, keyIdOf, sha256Bytes } from "../../lib/crypto";

/**
 * Table-by-table dumps of D1 into R2 (emergency exports and daily backups), and their verification.
 *
 * R2 layout under a prefix (`backups/2024-06-24/`, `emergency/20240624T101500.000Z/`):
 *   <table>.json[.enc]  {"table","columns":[…],"rows":[[…],…]} (values as D1 returns them; blobs as {"$base64"})
 *   manifest.json       written last, so a folder without one is an unfinished dump
 * `sha256` in the manifest is of each file's plaintext; `bytes` is the stored object's size.
 */

export const DUMP_PAGE_ROWS = 500;
export const MANIFEST = "manifest.json";
export const ARCHIVE_BUCKET = "billing-archive";
// D1 has no read snapshot across queries: each table is read in pages while writes go on.
const CONSISTENCY =
  "table-by-table read without a global snapshot: rows written during the dump may be in one table and not another; for point-in-time recovery use `wrangler d1 time-travel restore`";

export type DumpFile = { table: string; key: string; rows: number; bytes: number; sha256: string };
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
  tables: DumpFile[];
  totalRows: number;
  totalBytes: number;
  /** CREATE TABLE statements, so a restore can check the target has the same columns. */
  schema: { table: string; sql: string }[];
};

export type DumpOptions = { prefix: string; kind: Manifest["kind"]; encrypt: boolean; now: number; actorId: string; destination?: string | null };

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

/** Every row of `table`, paged by rowid (all tables here are rowid tables), columns in table order. */
export async function readTable(db: D1Database, table: string): Promise<{ columns: string[]; rows: unknown[][] }> {
  const rows: unknown[][] = [];
  let columns: string[] = [];
  let after: number | null = null;
  for (;;) {
    const stmt = db.prepare(
      `SELECT rowid AS __dump_rowid__, * FROM ${quoteIdent(table)}${after === null ? "" : " WHERE rowid > ?1"} ORDER BY rowid LIMIT ${DUMP_PAGE_ROWS}`,
    );
    const [names, ...page] = await (after === null ? stmt : stmt.bind(after)).raw({ columnNames: true });
    if (names) columns = (names as string[]).slice(1);
    for (const r of page) rows.push(r.slice(1).map(jsonSafe));
    if (page.length < DUMP_PAGE_ROWS) break;
    after = page[page.length - 1]![0] as number;
  }
  if (columns.length === 0) {
    const info = await db.prepare(`SELECT name FROM pragma_table_info(?1) ORDER BY cid`).bind(table).all<{ name: string }>();
    columns = info.results.map((c) => c.name);
  }
  return { columns, rows };
}

/** Dumps every application table under `opts.prefix`, then writes the manifest; returns the manifest. */
export async function dumpDatabase(env: Env, opts: DumpOptions): Promise<Manifest> {
  const keyId = opts.encrypt ? await keyIdOf(env.EXPORT_ENCRYPTION_KEY) : null;
  // A re-run into the same folder (e.g. a retried cron) must not leave an old manifest over new files.
  await env.ARCHIVE.delete(`${opts.prefix}${MANIFEST}`);
  const tables = await listTables(env.DB);
  const files: DumpFile[] = [];
  for (const t of tables) {
    const { columns, rows } = await readTable(env.DB, t.name);
    const plain = new TextEncoder().encode(JSON.stringify({ table: t.name, columns, rows }));
    const body = opts.encrypt ? await encrypt(env.EXPORT_ENCRYPTION_KEY, plain) : plain;
    const key = `${opts.prefix}${t.name}.json${opts.encrypt ? ".enc" : ""}`;
    const sha256 = await sha256Bytes(plain);
    await env.ARCHIVE.put(key, body, {
      httpMetadata: { contentType: opts.encrypt ? "application/octet-stream" : "application/json" },
      customMetadata: { kind: opts.kind, table: t.name, rows: String(rows.length), sha256, encrypted: String(opts.encrypt), ...(keyId ? { keyId } : {}) },
    });
    files.push({ table: t.name, key, rows: rows.length, bytes: body.length, sha256 });
  }
  const manifest: Manifest = {
    version: 1,
    kind: opts.kind,
    createdAt: new Date(opts.now).toISOString(),
    createdBy: opts.actorId,
    bucket: ARCHIVE_BUCKET,
    prefix: opts.prefix,
    encrypted: opts.encrypt,
    keyId,
    destination: opts.destination ?? null,
    consistency: CONSISTENCY,
    tables: files,
    totalRows: files.reduce((n, f) => n + f.rows, 0),
    totalBytes: files.reduce((n, f) => n + f.bytes, 0),
    schema: tables.map((t) => ({ table: t.name, sql: t.sql })),
  };
  await env.ARCHIVE.put(`${opts.prefix}${MANIFEST}`, JSON.stringify(manifest, null, 2), {
    httpMetadata: { contentType: "application/json" },
    customMetadata: { kind: opts.kind, encrypted: String(opts.encrypt), totalRows: String(manifest.totalRows) },
  });
  return manifest;
}

export async function readManifest(archive: R2Bucket, prefix: string): Promise<Manifest | null> {
  const obj = await archive.get(`${prefix}${MANIFEST}`);
  return obj ? ((await obj.json()) as Manifest) : null;
}

export type Mismatch = { table: string | null; key: string; problem: string };
export type VerifyResult =
  | { ok: true; prefix: string; tablesChecked: number; rows: number; bytes: number }
  | { ok: false; prefix: string; tablesChecked: number; mismatch: Mismatch };

/** Re-reads every file of a dump, decrypts it, and checks size, sha256 and row count against the manifest; stops at the first mismatch. */
export async function verifyDump(env: Env, manifest: Manifest): Promise<VerifyResult> {
  const { prefix } = manifest;
  const fail = (tablesChecked: number, mismatch: Mismatch): VerifyResult => ({ ok: false, prefix, tablesChecked, mismatch });
  if (manifest.encrypted) {
    const current = await keyIdOf(env.EXPORT_ENCRYPTION_KEY);
    if (manifest.keyId !== current) {
      return fail(0, { table: null, key: `${prefix}${MANIFEST}`, problem: `encrypted with key ${manifest.keyId}; the configured key is ${current}` });
    }
  }
  let rows = 0;
  let bytes = 0;
  for (const [i, f] of manifest.tables.entries()) {
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
  return { ok: true, prefix, tablesChecked: manifest.tables.length, rows, bytes };
}

/** `2024-06-24T10:15:00.123Z` → `20240624T101500.123Z`: sortable and safe in an R2 key. */
export const stamp = (now: number) => new Date(now).toISOString().replace(/[-:]/g, "");
