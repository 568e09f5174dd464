#!/usr/bin/env node
// `npm run security:pci-scan [-- --persist-to DIR] [--all-luhn] [--json]`
//
// Scans every text column of the local dev D1 (the state `npm run dev` keeps under .wrangler/state) for card
// numbers: 13–19 digits, optionally grouped with spaces or dashes, that pass the Luhn check and start with a card
// brand's prefix (IIN). The brand test keeps epoch-millisecond timestamps inside JSON columns (13 digits, one in ten
// Luhn-valid) from being reported; --all-luhn reports every Luhn-valid sequence instead.
// Exit status: 0 clean, 1 card numbers found (listed, masked to the last four digits), 2 the scan could not run.
// Reads through `wrangler d1 execute DB --local --json`, offline; it never writes.
import { existsSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { offlineEnv } from "./wrangler-env.mjs";

const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const option = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
if (flag("--help") || flag("-h")) {
  console.log("usage: npm run security:pci-scan [-- --persist-to .wrangler/state] [--all-luhn] [--json]");
  process.exit(0);
}
const persistTo = option("--persist-to") ?? process.env.PERSIST_TO ?? ".wrangler/state";
const allLuhn = flag("--all-luhn");
const asJson = flag("--json");
const PAGE = 2000;

const SKIP = (name) => name.startsWith("_cf_") || name.startsWith("sqlite_") || name === "d1_migrations";
const ident = (s) => `"${s.replaceAll('"', '""')}"`;
const literal = (s) => `'${s.replaceAll("'", "''")}'`;

function fail(message) {
  if (asJson) console.log(JSON.stringify({ ok: false, error: message }));
  else console.error(`pci-scan: ${message}`);
  process.exit(2);
}

/** Runs the statements in one wrangler call; returns one result array per statement. */
function query(statements) {
  const r = spawnSync("npx", ["--no-install", "wrangler", "d1", "execute", "DB", "--local", "--persist-to", persistTo, "--json", "--command", statements.join(";\n")], {
    env: offlineEnv,
    encoding: "utf8",
    maxBuffer: 512 * 1024 * 1024,
  });
  let out;
  try {
    out = JSON.parse(r.stdout);
  } catch {
    fail(`wrangler d1 execute failed (exit ${r.status}): ${(r.stderr || r.stdout || "").trim().slice(0, 2000)}`);
  }
  if (!Array.isArray(out)) fail(`wrangler d1 execute: ${out?.error?.text ?? JSON.stringify(out).slice(0, 2000)}`);
  return out.map((s) => s.results ?? []);
}

export function luhn(digits) {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

// [brand, prefix test, allowed lengths]
const BRANDS = [
  ["visa", /^4/, [13, 16, 19]],
  ["mastercard", /^(5[1-5]|2(2[2-9]|[3-6]\d|7[01]|720))/, [16]],
  ["amex", /^3[47]/, [15]],
  ["diners", /^3(0[0-5]|[689])/, [14, 16, 17, 18, 19]],
  ["discover", /^(6011|65|64[4-9]|622)/, [16, 17, 18, 19]],
  ["jcb", /^35(2[89]|[3-8])/, [16, 17, 18, 19]],
  ["unionpay", /^62/, [16, 17, 18, 19]],
  ["maestro", /^(5[06-9]|6\d)/, [13, 14, 15, 16, 17, 18, 19]],
];
const brandOf = (digits) => BRANDS.find(([, re, lengths]) => re.test(digits) && lengths.includes(digits.length))?.[0] ?? null;

// Digits with at most one space or dash between them, not touching other digits.
const CANDIDATE = /(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])/g;

/** Card-number-looking sequences in `text`: [{ brand, length, last4 }]. */
export function findCardNumbers(text, reportAll = false) {
  const found = [];
  for (const m of text.matchAll(CANDIDATE)) {
    const digits = m[0].replace(/[ -]/g, "");
    if (digits.length < 13 || digits.length > 19 || !luhn(digits)) continue;
    const brand = brandOf(digits);
    if (!brand && !reportAll) continue;
    found.push({ brand: brand ?? "unknown", length: digits.length, last4: digits.slice(-4) });
  }
  return found;
}

// Only rows with a run of 8 digits or a group of 4 followed by a separator leave D1 (D1 caps GLOB patterns at 50 bytes).
const PREFILTER = (col) => `(${col} GLOB '*${"[0-9]".repeat(8)}*' OR ${col} GLOB '*[0-9][0-9][0-9][0-9][ -][0-9]*')`;

function main() {
  if (!existsSync(persistTo)) fail(`no local state at ${persistTo}: run \`npm run dev\` or \`npm run db:migrate:local\` first, or pass --persist-to`);
  const tables = query(["SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"])[0].map((r) => r.name).filter((n) => !SKIP(n));
  const infos = query(tables.map((t) => `SELECT name, type FROM pragma_table_info(${literal(t)})`));
  // Text affinity (TEXT, CHAR, CLOB) and untyped columns; numbers stored in INTEGER columns are not card data.
  const textColumns = new Map(tables.map((t, i) => [t, infos[i].filter((c) => c.type === "" || /CHAR|CLOB|TEXT/i.test(c.type)).map((c) => c.name)]));
  const hasId = new Set(tables.filter((t, i) => infos[i].some((c) => c.name === "id")));
  const findings = [];
  let scannedRows = 0;
  let pending = tables.filter((t) => textColumns.get(t).length > 0).map((t) => ({ table: t, after: 0 }));
  const columnsScanned = [...textColumns.values()].reduce((n, c) => n + c.length, 0);
  while (pending.length) {
    const statements = pending.map(({ table, after }) => {
      const cols = textColumns.get(table);
      return `SELECT rowid AS __rowid__, ${hasId.has(table) ? `"id" AS __id__, ` : ""}${cols.map(ident).join(", ")} FROM ${ident(table)} WHERE rowid > ${after} AND (${cols.map((c) => PREFILTER(ident(c))).join(" OR ")}) ORDER BY rowid LIMIT ${PAGE}`;
    });
    const pages = query(statements);
    const next = [];
    pending.forEach(({ table }, i) => {
      const rows = pages[i];
      scannedRows += rows.length;
      for (const row of rows) {
        for (const column of textColumns.get(table)) {
          const v = row[column];
          if (typeof v !== "string") continue;
          for (const f of findCardNumbers(v, allLuhn)) findings.push({ table, column, rowid: row.__rowid__, id: row.__id__ ?? null, brand: f.brand, length: f.length, masked: `${"*".repeat(f.length - 4)}${f.last4}` });
        }
      }
      if (rows.length === PAGE) next.push({ table, after: rows[rows.length - 1].__rowid__ });
    });
    pending = next;
  }
  const report = { ok: findings.length === 0, persistTo, tables: tables.length, textColumns: columnsScanned, candidateRows: scannedRows, findings };
  if (asJson) console.log(JSON.stringify(report, null, 2));
  else {
    console.log(`pci-scan: ${tables.length} tables, ${columnsScanned} text columns in ${persistTo}; ${scannedRows} rows held long digit runs`);
    if (findings.length === 0) console.log("pci-scan: no card numbers found");
    else {
      console.log(`pci-scan: ${findings.length} card number(s) found:`);
      for (const f of findings) console.log(`  ${f.table}.${f.column} ${f.id ? `id ${f.id}` : `rowid ${f.rowid}`}: ${f.brand} ${f.masked}`);
    }
  }
  process.exit(findings.length ? 1 : 0);
}

main();
