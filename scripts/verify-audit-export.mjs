#!/usr/bin/env node
// `node scripts/verify-audit-export.mjs <export-file> [--key-file FILE] [--export-key-file FILE] [--head SEQ:CHAIN]`
//
// Verifies an audit export offline, with nothing but Node and the audit key: every row's MAC, every row's chain
// link, the links between consecutive exported rows, and the chain head the export recorded. Takes the file as
// downloaded from GET /api/v1/audit/exports/<name> (plaintext JSON or CSV) or the encrypted object itself
// (`npx wrangler r2 object get billing-archive/exports/audit/<name>.enc --remote --file <name>.enc`).
//
// Keys come from the environment or files, never the command line (shell history):
//   AUDIT_HMAC_KEY (or --key-file)               base64; the key the chain is computed with
//   EXPORT_ENCRYPTION_KEY (or --export-key-file)  base64, 32 bytes; only for an encrypted .enc file
//
// Formulas (README "Audit chain"), all hex lower case, HMAC-SHA-256 keyed with the base64-decoded AUDIT_HMAC_KEY:
//   mac   = HMAC(canonical JSON of {id, at, actor, actorRole, action, targetType, targetId, requestId, before,
//                 after, reason}: keys sorted, no whitespace, `at` epoch ms, before/after the stored strings or null)
//   chain = HMAC(prevChain + "|" + seq + "|" + mac), prevChain of seq 1 = 64 zeros
// Exit status: 0 every check passed, 1 a check failed, 2 usage or unreadable input.
import { readFileSync } from "node:fs";
import { createHash, webcrypto } from "node:crypto";

const GENESIS = "0".repeat(64);
const { subtle } = webcrypto;

function usage(message) {
  if (message) console.error(`verify-audit-export: ${message}`);
  console.error("usage: AUDIT_HMAC_KEY=… node scripts/verify-audit-export.mjs <export.json|export.csv|….enc> [--key-file FILE] [--export-key-file FILE] [--head SEQ:CHAIN]");
  process.exit(2);
}

const opts = { file: null, keyFile: null, exportKeyFile: null, head: null };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const value = () => argv[++i] ?? usage(`${a} needs a value`);
  if (a === "--key-file") opts.keyFile = value();
  else if (a === "--export-key-file") opts.exportKeyFile = value();
  else if (a === "--head") opts.head = value();
  else if (a === "--help" || a === "-h") usage();
  else if (a.startsWith("--")) usage(`unknown option ${a}`);
  else if (!opts.file) opts.file = a;
  else usage(`unexpected argument ${a}`);
}
if (!opts.file) usage("the export file is required");

const secret = (envName, file) => (file ? readFileSync(file, "utf8") : process.env[envName] ?? "").trim();

// ---- 1. read (and decrypt) the file: src/lib/crypto.ts's envelope, {v, alg, iv, keyId} header line + ciphertext‖tag
let bytes = readFileSync(opts.file);
const firstLine = bytes.subarray(0, Math.max(0, bytes.subarray(0, 512).indexOf(0x0a))).toString("utf8");
if (/^\{"v":1,"alg":"AES-256-GCM"/.test(firstLine)) {
  const keyB64 = secret("EXPORT_ENCRYPTION_KEY", opts.exportKeyFile);
  if (!keyB64) usage("the file is encrypted: set EXPORT_ENCRYPTION_KEY or pass --export-key-file");
  const raw = Buffer.from(keyB64, "base64");
  if (raw.length !== 32) usage(`EXPORT_ENCRYPTION_KEY must be 32 bytes of base64, got ${raw.length}`);
  const header = JSON.parse(firstLine);
  const keyId = createHash("sha256").update(raw).digest("hex").slice(0, 8);
  if (header.keyId !== keyId) usage(`the file was encrypted with key ${header.keyId}; this key is ${keyId}`);
  const key = await subtle.importKey("raw", raw, { name: "AES-GCM" }, false, ["decrypt"]);
  const headerBytes = bytes.subarray(0, firstLine.length);
  try {
    bytes = Buffer.from(await subtle.decrypt({ name: "AES-GCM", iv: Buffer.from(header.iv, "base64"), additionalData: headerBytes }, key, bytes.subarray(firstLine.length + 1)));
  } catch {
    console.error("FAIL  decryption: the encrypted file was altered (GCM authentication failed)");
    process.exit(1);
  }
  console.log(`decrypted ${opts.file} (key ${keyId}); plaintext sha256 ${createHash("sha256").update(bytes).digest("hex")}`);
}
const text = bytes.toString("utf8");

// ---- 2. rows: JSON export ({ rows: [...], chainHead }) or CSV export (header line + one record per row)
let rows;
let head = null;
let csv = false;
if (text.trimStart().startsWith("{")) {
  const doc = JSON.parse(text);
  if (doc.kind !== "audit_export" || !Array.isArray(doc.rows)) usage("not an audit export (kind audit_export with rows)");
  rows = doc.rows;
  head = doc.chainHead ?? null;
  console.log(`audit export ${doc.from} – ${doc.to} (exclusive), exported ${doc.exportedAt} by ${doc.exportedBy}, includeSystemEvents ${doc.includeSystemEvents}, ${doc.rowCount} rows`);
  if (doc.rowCount !== rows.length) {
    console.log(`FAIL  the export says rowCount ${doc.rowCount} but holds ${rows.length} rows`);
    process.exitCode = 1;
  }
} else {
  csv = true;
  const records = parseCsv(text);
  const cols = records.shift() ?? [];
  for (const c of ["seq", "id", "at", "actor", "actor_role", "action", "target_type", "target_id", "request_id", "reason", "before", "after", "mac", "prev_chain", "chain"]) {
    if (!cols.includes(c)) usage(`the CSV has no ${c} column: not a keyed-chain audit export`);
  }
  const camel = (c) => c.replace(/_([a-z])/g, (_, x) => x.toUpperCase());
  // CSV cannot tell null from "": the export writes null as an empty field, and the service never stores "" in
  // these columns (before/after are JSON, request ids and reasons are non-empty when present).
  rows = records.map((rec) => Object.fromEntries(cols.map((c, i) => [camel(c), rec[i] === "" ? null : rec[i]])));
  for (const r of rows) {
    r.seq = Number(r.seq);
    r.at = Number(r.at);
  }
  console.log(`audit export (CSV), ${rows.length} rows`);
}
if (opts.head) {
  const [seq, chain] = opts.head.split(":");
  head = { seq: Number(seq), chain };
}

// ---- 3. verify
const auditKeyB64 = secret("AUDIT_HMAC_KEY", opts.keyFile);
if (!auditKeyB64) usage("set AUDIT_HMAC_KEY or pass --key-file");
const rawAuditKey = Buffer.from(auditKeyB64, "base64");
if (rawAuditKey.length < 32) usage(`AUDIT_HMAC_KEY must be at least 32 bytes of base64, got ${rawAuditKey.length}`);
const hmacKey = await subtle.importKey("raw", rawAuditKey, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
const hmac = async (s) => Buffer.from(await subtle.sign("HMAC", hmacKey, new TextEncoder().encode(s))).toString("hex");

const canonical = (v) => JSON.stringify(sortKeys(v));
function sortKeys(v) {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === "object") return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])]));
  return v;
}

// A CSV writes null and "" alike (an empty field): when the MAC does not match as read, try the nullable fields
// that were empty as "" too, so an empty reason or request id is not reported as tampering.
const NULLABLE = ["requestId", "before", "after", "reason"];
async function macMatches(content, r) {
  if ((await hmac(canonical(content))) === r.mac) return true;
  if (!csv) return false;
  const empty = NULLABLE.filter((k) => content[k] === null);
  for (let mask = 1; mask < 1 << empty.length; mask++) {
    const variant = { ...content };
    empty.forEach((k, i) => mask & (1 << i) && (variant[k] = ""));
    if ((await hmac(canonical(variant))) === r.mac) return true;
  }
  return false;
}

const failures = [];
let unsealed = 0;
let verified = 0;
const runs = [];
let prev = null;
for (const r of rows) {
  const fail = (problem) => failures.push(`seq ${r.seq} (${r.id}): ${problem}`);
  if (prev && r.seq <= prev.seq) fail(`out of order after seq ${prev.seq}`);
  if (prev && r.seq === prev.seq + 1) runs[runs.length - 1][1] = r.seq;
  else runs.push([r.seq, r.seq]);
  const content = { id: r.id, at: r.at, actor: r.actor, actorRole: r.actorRole, action: r.action, targetType: r.targetType, targetId: r.targetId, requestId: r.requestId, before: r.before, after: r.after, reason: r.reason };
  let ok = true;
  if (!r.mac) {
    fail("no MAC (a legacy row that was never adopted, or a row not written by the service)");
    ok = false;
  } else if (!(await macMatches(content, r))) {
    fail("content does not match its MAC (changed after it was written)");
    ok = false;
  }
  if (r.chain == null) {
    unsealed++;
  } else {
    const expectedPrev = r.seq === 1 ? GENESIS : r.prevChain;
    if (r.seq === 1 && r.prevChain && r.prevChain !== GENESIS) fail("seq 1 must chain from 64 zeros");
    if (prev && prev.seq === r.seq - 1 && prev.chain && r.prevChain !== prev.chain) fail(`prevChain is not the chain value of the exported row ${prev.seq}`);
    if (expectedPrev == null) {
      fail("no prevChain: the row before it was missing when the export was made");
      ok = false;
    } else if ((await hmac(`${expectedPrev}|${r.seq}|${r.mac ?? ""}`)) !== r.chain) {
      fail("chain value does not link this row to its predecessor (a row was removed, replaced or renumbered)");
      ok = false;
    }
  }
  if (head && r.seq === head.seq && r.chain !== head.chain) fail(`chain value differs from the recorded head ${head.seq}:${head.chain}`);
  if (ok) verified++;
  prev = r;
}

console.log(`rows ${rows.length}, verified ${verified}, unsealed ${unsealed}, seq runs ${runs.map(([a, b]) => (a === b ? `${a}` : `${a}–${b}`)).join(", ") || "none"}`);
if (head) console.log(`chain head recorded by the export: seq ${head.seq}${rows.some((r) => r.seq === head.seq) ? " (in the file: checked)" : " (not in the file's rows)"}`);
if (runs.length > 1) console.log("note  gaps between seq runs are rows outside this export's selection (date range, system events); verify-integrity checks the whole trail");
if (rows.length && verified === 0 && failures.length) console.log("hint  not a single row verifies: is AUDIT_HMAC_KEY the key this deployment uses?");
if (failures.length) {
  for (const f of failures.slice(0, 20)) console.log(`FAIL  ${f}`);
  if (failures.length > 20) console.log(`… and ${failures.length - 20} more`);
  process.exit(1);
}
if (process.exitCode) process.exit(1);
console.log("OK    every MAC and chain link verifies");

/** RFC 4180 CSV: quoted fields may hold commas, quotes ("") and line breaks; records end with CRLF or LF. */
function parseCsv(s) {
  const out = [];
  let rec = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (quoted) {
      if (ch === '"' && s[i + 1] === '"') (field += '"'), i++;
      else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ",") rec.push(field), (field = "");
    else if (ch === "\n" || ch === "\r") {
      if (ch === "\r" && s[i + 1] === "\n") i++;
      rec.push(field);
      out.push(rec);
      rec = [];
      field = "";
    } else field += ch;
  }
  if (field !== "" || rec.length) rec.push(field), out.push(rec);
  return out;
}
