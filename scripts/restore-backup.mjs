#!/usr/bin/env node
// `npm run backup:restore -- <backup-dir> [--out FILE] [--tables a,b] [--skip a,b] [--no-delete] [--force]`
//
// Turns a downloaded backup folder (backups/<date>/ or emergency/<timestamp>/ from the ARCHIVE bucket) into one SQL
// file for `wrangler d1 execute --file`. It only writes that file: it never touches a database.
//
// 1. Download the folder (the manifest lists every file; keys are <prefix><table>.json.enc, and a large table has
//    parts <prefix><table>.<n>.json.enc too):
//      DATE=2024-06-24; DIR=restore/$DATE; mkdir -p $DIR
//      npx wrangler r2 object get billing-archive/backups/$DATE/manifest.json --remote --file $DIR/manifest.json
//      for f in $(node -e 'for (const t of JSON.parse(require("fs").readFileSync(process.argv[1])).tables) console.log(t.key.split("/").pop())' $DIR/manifest.json); do
//        npx wrangler r2 object get billing-archive/backups/$DATE/$f --remote --file $DIR/$f
//      done
// 2. Generate the SQL. The key comes from the environment or a file, never the command line (shell history):
//      EXPORT_ENCRYPTION_KEY=$(cat export-key.b64) npm run backup:restore -- $DIR --out $DIR/restore.sql
//    (or --key-file export-key.b64). Every file is decrypted and checked against the manifest's sha256 and row
//    count first; any mismatch stops the script unless --force.
// 3. Review, then apply to a database whose migrations are applied (the same schema as the backup):
//      npx wrangler d1 execute DB --remote --file $DIR/restore.sql
//    Per table the file first DELETEs every row (--no-delete keeps them, and then conflicting rows fail), then
//    INSERTs the backup's rows with explicit column lists. Foreign keys are checked at the end (defer_foreign_keys).
//    Consider --skip idempotency_keys,metric_counters for tables whose old content is not worth restoring.
//
// The file format is src/lib/crypto.ts's envelope: a JSON header line {v, alg: "AES-256-GCM", iv, keyId}, "\n",
// then ciphertext‖tag; the header bytes are the GCM additional data. Exit status: 0 written, 1 refused, 2 usage.
import { readFileSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { createHash, webcrypto } from "node:crypto";

const ROWS_PER_INSERT = 50;
const MAX_STATEMENT_BYTES = 90_000; // D1 refuses SQL statements over 100 KB

function usage(message) {
  if (message) console.error(`restore-backup: ${message}`);
  console.error("usage: npm run backup:restore -- <backup-dir> [--out FILE] [--key-file FILE] [--tables a,b] [--skip a,b] [--no-delete] [--force]");
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { dir: null, out: null, keyFile: null, tables: null, skip: [], del: true, force: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => argv[++i] ?? usage(`${a} needs a value`);
    if (a === "--out") opts.out = value();
    else if (a === "--key-file") opts.keyFile = value();
    else if (a === "--tables") opts.tables = value().split(",").filter(Boolean);
    else if (a === "--skip") opts.skip = value().split(",").filter(Boolean);
    else if (a === "--no-delete") opts.del = false;
    else if (a === "--force") opts.force = true;
    else if (a === "--help" || a === "-h") usage();
    else if (a.startsWith("--")) usage(`unknown option ${a}`);
    else if (!opts.dir) opts.dir = a;
    else usage(`unexpected argument ${a}`);
  }
  if (!opts.dir) usage("the backup folder is required");
  opts.out ??= join(opts.dir, "restore.sql");
  return opts;
}

const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");

async function decryptEnvelope(keyB64, bytes) {
  const raw = Buffer.from(keyB64.trim(), "base64");
  if (raw.length !== 32) throw new Error(`the key must be 32 bytes of base64, got ${raw.length} bytes`);
  const nl = bytes.subarray(0, 512).indexOf(0x0a);
  if (nl <= 0) throw new Error("not an encrypted envelope");
  const headerBytes = bytes.subarray(0, nl);
  const header = JSON.parse(headerBytes.toString("utf8"));
  if (header.alg !== "AES-256-GCM") throw new Error(`unsupported algorithm ${header.alg}`);
  const keyId = sha256(raw).slice(0, 8);
  if (header.keyId !== keyId) throw new Error(`encrypted with key ${header.keyId}, this key is ${keyId}`);
  const key = await webcrypto.subtle.importKey("raw", raw, { name: "AES-GCM" }, false, ["decrypt"]);
  try {
    const plain = await webcrypto.subtle.decrypt({ name: "AES-GCM", iv: Buffer.from(header.iv, "base64"), additionalData: headerBytes }, key, bytes.subarray(nl + 1));
    return Buffer.from(plain);
  } catch {
    throw new Error("authentication failed: the file was altered");
  }
}

const ident = (s) => `"${String(s).replaceAll('"', '""')}"`;

export function sqlValue(v) {
  if (v === null || v === undefined) return "NULL";
  if (typeof v === "boolean") return v ? "1" : "0";
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw new Error(`cannot restore the number ${v}`);
    return String(v);
  }
  if (typeof v === "string") {
    // SQL text cannot carry NUL; such strings go in as a blob cast to text.
    if (v.includes("\u0000")) return `CAST(X'${Buffer.from(v, "utf8").toString("hex")}' AS TEXT)`;
    return `'${v.replaceAll("'", "''")}'`;
  }
  if (typeof v === "object" && typeof v.$base64 === "string") return `X'${Buffer.from(v.$base64, "base64").toString("hex")}'`;
  throw new Error(`cannot restore the value ${JSON.stringify(v).slice(0, 80)}`);
}

/** INSERT statements for one table, several rows each, each statement under D1's size limit. */
export function insertStatements(table, columns, rows) {
  const head = `INSERT INTO ${ident(table)} (${columns.map(ident).join(", ")}) VALUES\n`;
  const out = [];
  let batch = [];
  let size = head.length;
  const flush = () => {
    if (batch.length) out.push(`${head}${batch.join(",\n")};`);
    batch = [];
    size = head.length;
  };
  for (const row of rows) {
    const tuple = `(${row.map(sqlValue).join(", ")})`;
    if (batch.length && (batch.length >= ROWS_PER_INSERT || size + tuple.length + 2 > MAX_STATEMENT_BYTES)) flush();
    if (head.length + tuple.length > MAX_STATEMENT_BYTES) console.error(`restore-backup: warning: a row of ${table} makes a ${head.length + tuple.length}-byte statement; D1 may refuse it`);
    batch.push(tuple);
    size += tuple.length + 2;
  }
  flush();
  return out;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const manifestPath = join(opts.dir, "manifest.json");
  if (!existsSync(manifestPath)) usage(`${manifestPath} not found: download the manifest with the backup's files`);
  const manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
  let key = null;
  if (manifest.encrypted) {
    key = opts.keyFile ? readFileSync(opts.keyFile, "utf8") : process.env.EXPORT_ENCRYPTION_KEY;
    if (!key) usage("the backup is encrypted: set EXPORT_ENCRYPTION_KEY or pass --key-file");
  }
  const wanted = manifest.tables.filter((t) => (!opts.tables || opts.tables.includes(t.table)) && !opts.skip.includes(t.table));
  for (const name of opts.tables ?? []) if (!manifest.tables.some((t) => t.table === name)) usage(`table ${name} is not in this backup`);

  const problems = [];
  const dumps = [];
  for (const t of wanted) {
    const file = join(opts.dir, t.key.split("/").pop());
    if (!existsSync(file)) {
      problems.push(`${t.table}: ${file} is missing`);
      continue;
    }
    let plain;
    try {
      const stored = readFileSync(file);
      plain = manifest.encrypted ? await decryptEnvelope(key, stored) : stored;
    } catch (e) {
      problems.push(`${t.table}: ${e.message}`);
      continue;
    }
    if (sha256(plain) !== t.sha256) problems.push(`${t.table}: sha256 differs from the manifest`);
    const dump = JSON.parse(plain.toString("utf8"));
    if (dump.rows.length !== t.rows) problems.push(`${t.table}: ${dump.rows.length} rows, the manifest says ${t.rows}`);
    dumps.push(dump);
  }
  if (problems.length) {
    console.error(`restore-backup: the backup does not match its manifest:\n  ${problems.join("\n  ")}`);
    if (!opts.force) process.exit(1);
    console.error("restore-backup: --force: writing what could be read");
  }

  const lines = [
    `-- Restore of ${manifest.kind} ${manifest.prefix} (created ${manifest.createdAt} by ${manifest.createdBy})`,
    `-- ${new Set(dumps.map((d) => d.table)).size} tables, ${dumps.reduce((n, d) => n + d.rows.length, 0)} rows; generated ${new Date().toISOString()} by scripts/restore-backup.mjs`,
    `-- Apply with: npx wrangler d1 execute DB --remote --file <this file>   (migrations must already be applied)`,
    `-- ${manifest.consistency}`,
    "PRAGMA defer_foreign_keys = true;",
  ];
  // A large table is several files (parts, in rowid order): its rows are deleted once, before its first part.
  const cleared = new Set();
  for (const d of dumps) {
    lines.push("", `-- ${d.table}: ${d.rows.length} rows${cleared.has(d.table) ? " (next part)" : ""}`);
    if (opts.del && !cleared.has(d.table)) lines.push(`DELETE FROM ${ident(d.table)};`);
    cleared.add(d.table);
    lines.push(...insertStatements(d.table, d.columns, d.rows));
  }
  writeFileSync(opts.out, lines.join("\n") + "\n");
  console.log(`restore-backup: wrote ${opts.out} (${cleared.size} tables, ${dumps.reduce((n, d) => n + d.rows.length, 0)} rows)`);
}

main().catch((e) => {
  console.error(`restore-backup: ${e.message}`);
  process.exit(1);
});
