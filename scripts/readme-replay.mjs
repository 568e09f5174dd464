#!/usr/bin/env node
// `npm run check:readme [-- --keep-server | --dry-run]`: the examples of README.md, then docs/api-tour.md, then
// docs/operations.md (FILES below: the order a reader follows), pasted in order, must work on a fresh `npm run dev`.
//
// Starts `wrangler dev` with fresh state on README_PORT (default 3416; the load tests use 3411-3415), takes README's
// ```bash blocks in order, and runs their commands in one bash session (exports carry over), with
// localhost:3401 rewritten to that server. `curl` is a bash function there that records every answer's status.
//
// Which commands run (the whole rule):
//   1. A command runs only if it starts with `curl ` or `export ` (requests, and the variables later ones use).
//      Everything else is skipped: `npm install`, `npm run dev`, `npm test`, benchmarks, load tests, deploys,
//      `wrangler …` and local tools, which install, start, test or need a Cloudflare account; this script starts
//      its own server instead.
//   2. A command containing `…` is skipped: `key_…`, `inv_…`, `pay_…` stand for an id the reader copies from an
//      earlier answer.
// What fails: a 5xx, a connection error, and any 4xx or 207 (some events refused) unless the command carries a
// marker in its comment, `# expect: 409` (several: `expect: 404 409`, anywhere in the comment); with a marker, any
// other status fails too.
// Exit status 0 when every request answered as expected, 1 otherwise, 2 when the server could not start.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServer } from "./local-server.mjs";

const port = Number(process.env.README_PORT ?? 3416);
const keepServer = process.argv.includes("--keep-server");
const dryRun = process.argv.includes("--dry-run");

/** README's ```bash blocks with the line each starts on. */
function bashBlocks(markdown, file) {
  const blocks = [];
  const lines = markdown.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() !== "```bash") continue;
    const start = i + 1;
    let end = start;
    while (end < lines.length && lines[end].trim() !== "```") end++;
    blocks.push({ file, line: start + 1, text: lines.slice(start, end).join("\n") });
    i = end;
  }
  return blocks;
}

/**
 * Splits a block into shell commands as bash reads them: quotes (which may span lines), backslash-newline
 * continuations and `#` comments; each command keeps its comments (for `# expect:`) and its README line.
 */
function commands(block) {
  const out = [];
  let cur = "";
  let comments = [];
  let line = block.line;
  let startLine = line;
  let quote = null;
  const s = block.text + "\n";
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (ch === "\n") line++;
    if (quote === "'") {
      cur += ch;
      if (ch === "'") quote = null;
    } else if (quote === '"') {
      cur += ch;
      if (ch === "\\") {
        if (s[i + 1] === "\n") line++;
        cur += s[++i];
      } else if (ch === '"') quote = null;
    } else if (ch === "\\") {
      if (s[i + 1] === "\n") line++;
      cur += ch + s[++i];
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      cur += ch;
    } else if (ch === "#" && (cur === "" || /\s$/.test(cur))) {
      const end = s.indexOf("\n", i);
      comments.push(s.slice(i, end));
      i = end - 1;
    } else if (ch === "\n") {
      if (cur.trim()) out.push({ line: `${block.file}:${startLine}`, text: cur.trim(), comments });
      cur = "";
      comments = [];
      startLine = line;
    } else {
      if (cur === "" && /\s/.test(ch)) continue;
      if (cur === "") startLine = line;
      cur += ch;
    }
  }
  return out;
}

const expectedStatuses = (comments) => {
  const m = comments.map((c) => /\bexpect:\s*(\d{3}(?:[\s,]+\d{3})*)/.exec(c)).find(Boolean);
  return m ? m[1].split(/[\s,]+/).join(" ") : "";
};

function skipReason(text) {
  if (!/^(curl|export)\s/.test(text)) return "not a request";
  if (text.includes("…")) return "placeholder id";
  return null;
}

const shellQuote = (s) => `'${s.replaceAll("'", "'\\''")}'`;

// The session: `curl` records each answer (README line, status, expectation, request, start of the body) in the
// log file given as $1, and still prints the body, so pipes and $(…) work as pasted.
const prelude = [
  '__LOG="$1"',
  "curl() {",
  '  local body status method=GET url="" prev="" a',
  '  for a in "$@"; do',
  '    case "$a" in http://*|https://*) url=$a;; esac',
  '    [ "$prev" = "-X" ] && method=$a',
  "    prev=$a",
  "  done",
  "  body=$(mktemp)",
  "  status=$(command curl -sS -m 60 -o \"$body\" -w '%{http_code}' \"$@\")",
  '  cat "$body"',
  "  printf '%s\\t%s\\t%s\\t%s\\t%s\\n' \"$__LINE\" \"$status\" \"$__EXPECT\" \"$method /${url#http*://*/}\" \"$(head -c 300 \"$body\" | tr '\\n\\t' '  ')\" >> \"$__LOG\"",
  '  rm -f "$body"',
  "}",
].join("\n");

// One bash session over all of them: exports made in one file carry over to the next.
const FILES = ["README.md", "docs/api-tour.md", "docs/operations.md"];

function main() {
  const all = FILES.flatMap((f) => bashBlocks(readFileSync(f, "utf8"), f)).flatMap(commands);
  const run = [];
  const skipped = [];
  for (const c of all) {
    const why = skipReason(c.text);
    if (why) skipped.push({ ...c, why });
    else run.push(c);
  }
  const script = [
    prelude,
    ...run.map((c) =>
      [`__LINE=${shellQuote(c.line)}; __EXPECT=${shellQuote(expectedStatuses(c.comments))}`, c.text.replaceAll("localhost:3401", `127.0.0.1:${port}`)].join("\n"),
    ),
  ].join("\n\n");
  return { run, skipped, script };
}

const { run, skipped, script } = main();
if (dryRun) {
  for (const c of run) console.log(`run  ${c.line} ${c.text.split("\n")[0].slice(0, 110)}${expectedStatuses(c.comments) ? ` (expect ${expectedStatuses(c.comments)})` : ""}`);
  for (const s of skipped) console.log(`skip ${s.line} ${s.text.split("\n")[0].slice(0, 110)} (${s.why})`);
  process.exit(0);
}
console.log(`readme-replay: ${run.length} commands to run, ${skipped.length} skipped; starting wrangler dev on :${port} with fresh state`);
let server;
try {
  server = await startServer({ port, persist: ".wrangler/readme-state", fresh: true });
} catch (e) {
  console.error(`readme-replay: ${e.message}`);
  process.exit(2);
}
const stopServer = () => {
  if (!keepServer) server.stop();
};
process.once("SIGINT", () => {
  stopServer();
  process.exit(130);
});

const dir = mkdtempSync(join(tmpdir(), "readme-replay-"));
const log = join(dir, "log.tsv");
writeFileSync(log, "");
writeFileSync(join(dir, "session.sh"), script);
const session = spawnSync("bash", [join(dir, "session.sh"), log], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024, timeout: 15 * 60_000 });
stopServer();
if (session.error) console.error(`readme-replay: bash: ${session.error.message}`);

let failed = 0;
const rows = readFileSync(log, "utf8").split("\n").filter(Boolean);
for (const row of rows) {
  const [line, status, expect, request, body] = row.split("\t");
  const code = Number(status);
  const expected = expect ? expect.split(" ").map(Number) : null;
  const ok = expected ? expected.includes(code) : code >= 200 && code < 400 && code !== 207;
  if (!ok) failed++;
  console.log(`${ok ? "ok  " : "FAIL"} ${status} ${line} ${request}${expected ? ` (expect ${expect})` : ""}${ok ? "" : `\n       ${body}`}`);
}
for (const s of skipped) console.log(`skip     ${s.line} ${s.text.split("\n")[0].slice(0, 100)} (${s.why})`);
if (session.stderr.trim()) console.log(`bash stderr:\n${session.stderr.trim()}`);
rmSync(dir, { recursive: true, force: true });
console.log(`readme-replay: ${rows.length} requests, ${failed} failed; ${skipped.length} commands skipped${keepServer ? `; server left running on :${port}` : ""}`);
process.exit(failed || rows.length === 0 || session.error ? 1 : 0);
