#!/usr/bin/env node
// `npm run bench:billing-run`: the month-start billing run, measured from outside against a fresh `wrangler dev`.
//  1. Set-up through the public API: customers, one plan with a flat (arrears) and a metered (per unit) price, N
//     subscriptions whose first period ends at one shared anchor a little in the future, and usage for each.
//  2. Once the anchor has passed, the hourly cron is triggered once; the run is cron → jobs queue (renewal,
//     invoice, finalization) → payments queue (charge on the sandbox gateway).
//  3. Waits (polling D1's local file read-only) until every subscription's cycle invoice is paid, then prints
//     invoices/s and payments/s (from the cron trigger to the last finalization / last successful charge), D1
//     queries per subscription and the largest count of one invocation (from the worker's per-invocation log lines,
//     `d1Queries`), the extrapolation to N = 100,000, and the machine load.
//  4. Checks: every subscription has exactly one cycle invoice, paid, with exactly one successful charge of its
//     amount; its usage line's quantity and amount are exact; no error lines in the worker's log.
// Env (or flags --n=, --port=): N (2000), PORT (3440), PERSIST_TO (.wrangler/bench-billing-run), CUSTOMERS (N/10),
// CONCURRENCY (16, set-up requests in flight), TIMEOUT_S (max(300, N/2)), ANCHOR_S (seconds from the start of the
// set-up to the shared period end: max(60, N/10); raise it on a busy machine).
import { DatabaseSync } from "node:sqlite";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { checks, client, examples, machineLoad, mapPool, sleep } from "./load-common.mjs";
import { localToken, startServer } from "./local-server.mjs";

const flag = (name) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];
const N = Number(flag("n") ?? process.env.N ?? 2000);
const PORT = Number(flag("port") ?? process.env.PORT ?? 3440);
const PERSIST = process.env.PERSIST_TO ?? ".wrangler/bench-billing-run";
const CUSTOMERS = Number(process.env.CUSTOMERS ?? Math.max(1, Math.ceil(N / 10)));
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 16);
const TIMEOUT_S = Number(process.env.TIMEOUT_S ?? Math.max(300, N / 2));
const ANCHOR_S = Number(process.env.ANCHOR_S ?? Math.max(60, N / 10));
const UNIT = "0.01"; // USD per unit of the metered price: usage amounts are exact cents
const FLAT = "20.00";
const t0 = Date.now();
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1)} s`;

/** Units metered for the i-th subscription (1..97, three events each). */
const unitsOf = (i) => 3 * ((i % 97) + 1);

function openDb() {
  const dir = join(PERSIST, "v3", "d1", "miniflare-D1DatabaseObject");
  const file = readdirSync(dir).find((f) => f.endsWith(".sqlite") && f !== "metadata.sqlite");
  const db = new DatabaseSync(join(dir, file), { readOnly: true });
  // The worker writes while this reads: wait for its lock instead of failing the run with "database is locked".
  db.exec("PRAGMA busy_timeout = 10000");
  return { one: (sql, ...p) => db.prepare(sql).get(...p), all: (sql, ...p) => db.prepare(sql).all(...p), close: () => db.close() };
}

/** D1's size: the file's pages (indexes included) and, per table, the bytes of its rows' values. */
function sizes(db) {
  const { page_size: pageSize } = db.one("PRAGMA page_size");
  const { page_count: pages } = db.one("PRAGMA page_count");
  const tables = {};
  for (const { name } of db.all("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' AND name NOT LIKE 'd1_%'")) {
    const cols = db.all(`PRAGMA table_info("${name}")`).map((c) => `coalesce(length(CAST("${c.name}" AS BLOB)), 0)`);
    const r = db.one(`SELECT count(*) AS n, coalesce(sum(${cols.join(" + ")}), 0) AS bytes FROM "${name}"`);
    tables[name] = { rows: r.n, bytes: r.bytes };
  }
  return { fileBytes: pageSize * pages, tables };
}

/** Per-invocation log lines (`{"msg":"invocation",…,"d1Queries":n}`) written by the worker since `from` (an offset in its output). */
function invocations(output, from = 0) {
  const out = [];
  for (const m of output.slice(from).matchAll(/\{[^\n]*"d1Queries"[^\n]*\}/g)) {
    try {
      const line = JSON.parse(m[0]);
      // src/platform/limits.ts's line per invocation: { msg: "invocation", invocation: "queue billing-jobs-dev (5 messages)", d1Queries, … }
      if (line.msg === "invocation" && typeof line.d1Queries === "number") out.push({ ...line, kind: String(line.invocation ?? line.kind).replace(/ \(\d+ messages?\)$/, "") });
    } catch {}
  }
  return out;
}

/**
 * CPU time (ms, user + system) used so far by the workerd processes this bench started (descendants of this
 * process, from /proc): the worker's and its Durable Objects' cost, which the machine's other load does not change
 * the way it changes wall-clock throughput. Null where /proc is missing.
 */
function workerdCpuMs() {
  try {
    const stats = readdirSync("/proc")
      .filter((d) => /^\d+$/.test(d))
      .map((pid) => {
        try {
          const text = readFileSync(`/proc/${pid}/stat`, "utf8");
          const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
          return { pid: Number(pid), comm: text.slice(text.indexOf("(") + 1, text.lastIndexOf(")")), ppid: Number(f[1]), cpu: Number(f[11]) + Number(f[12]) };
        } catch {
          return null;
        }
      })
      .filter(Boolean);
    const mine = new Set([process.pid]);
    for (let grew = true; grew; ) {
      grew = false;
      for (const s of stats) if (!mine.has(s.pid) && mine.has(s.ppid)) (mine.add(s.pid), (grew = true));
    }
    return stats.filter((s) => mine.has(s.pid) && s.comm === "workerd").reduce((n, s) => n + s.cpu, 0) * 10; // 100 ticks/s
  } catch {
    return null;
  }
}

console.log(`bench:billing-run: N = ${N} subscriptions, ${CUSTOMERS} customers, wrangler dev on :${PORT} (${machineLoad()})`);
const server = await startServer({ port: PORT, persist: PERSIST, fresh: true, logLevel: process.env.LOG_LEVEL ?? "log", inspectorPort: process.env.INSPECTOR_PORT ? Number(process.env.INSPECTOR_PORT) : undefined, vars: { USAGE_GRACE_SECONDS: "0", LIMITS: process.env.BENCH_LIMITS ?? "count" } });
const stopAll = () => server.stop();
process.once("SIGINT", () => (stopAll(), process.exit(130)));
const { check, exitCode } = checks();
try {
  const admin = await localToken("admin");
  const { call } = client(server.base, { authorization: `Bearer ${admin}` });

  const customers = await mapPool([...Array(CUSTOMERS).keys()], CONCURRENCY, (i) => call("POST", "/api/v1/customers", { email: `bench-run-${i}@example.com`, currency: "USD" }).then((c) => c.id));
  const plan = await call("POST", "/api/v1/plans", {
    name: "Billing run bench",
    currency: "USD",
    interval: "month",
    prices: [
      { type: "flat", amount: FLAT, billing: "arrears" },
      { type: "metered", meterId: "api_calls", aggregation: "sum", pricingModel: "per_unit", unitAmount: UNIT },
    ],
  });
  // The shared anchor: far enough out for the set-up (ANCHOR_S; by default room for ~10 subscriptions/s), whole seconds.
  const anchor = Math.ceil((Date.now() + ANCHOR_S * 1000) / 1000) * 1000;
  const subs = await mapPool([...Array(N).keys()], CONCURRENCY, (i) =>
    call("POST", "/api/v1/subscriptions", { customerId: customers[i % CUSTOMERS], planId: plan.id, paymentMethod: "pm_card_visa", billingAnchor: new Date(anchor).toISOString() }).then((s) => s.id),
  );
  console.log(`set-up: ${CUSTOMERS} customers, plan ${plan.id} (flat ${FLAT} arrears + ${UNIT}/unit), ${N} subscriptions at ${elapsed()}`);
  const batches = [];
  for (let i = 0; i < N; i++) for (let k = 0; k < 3; k++) batches.push({ subscriptionId: subs[i], meterId: "api_calls", quantity: unitsOf(i) / 3, eventId: `b${i}-${k}` });
  const pages = [];
  for (let i = 0; i < batches.length; i += 500) pages.push(batches.slice(i, i + 500));
  await mapPool(pages, 4, (events) => call("POST", "/api/v1/usage", { events }));
  console.log(`usage: ${batches.length} events at ${elapsed()}`);
  if (Date.now() >= anchor) throw new Error(`set-up took longer than the anchor allowed (${elapsed()}); usage may fall in the next period — raise ANCHOR_S`);
  await sleep(anchor - Date.now() + 1500);

  const sizeDb = openDb();
  const sizeBefore = sizes(sizeDb);
  sizeDb.close();
  const outputFrom = server.output().length;
  const loadBefore = machineLoad();
  const cpuBefore = workerdCpuMs();
  const cronAt = Date.now();
  const r = await fetch(`${server.base}/cdn-cgi/local/scheduled?cron=${encodeURIComponent("0 * * * *")}`);
  if (!r.ok) throw new Error(`cron trigger: ${r.status}`);
  const db = openDb();
  const deadline = Date.now() + TIMEOUT_S * 1000;
  let last = "";
  let invoicesDoneAt = null;
  for (;;) {
    const inv = db.one("SELECT count(*) AS n, max(finalized_at) AS t FROM invoices WHERE billing_reason = 'subscription_cycle' AND status != 'draft'");
    const pay = db.one("SELECT count(*) AS n, max(p.updated_at) AS t FROM payments p JOIN invoices i ON i.id = p.invoice_id WHERE i.billing_reason = 'subscription_cycle' AND p.status = 'succeeded'");
    const line = `invoices ${inv.n}/${N}, payments ${pay.n}/${N}`;
    if (line !== last) console.log(`  ${elapsed()}: ${line}`);
    last = line;
    if (inv.n >= N && invoicesDoneAt === null) invoicesDoneAt = Date.now();
    if (pay.n >= N && inv.n >= N) break;
    if (Date.now() > deadline) {
      console.log(`timed out after ${TIMEOUT_S} s: ${line}`);
      break;
    }
    await sleep(1000);
  }
  const loadAfter = machineLoad();
  const cpuAfter = workerdCpuMs();
  const inv = db.one("SELECT count(*) AS n, max(finalized_at) AS t FROM invoices WHERE billing_reason = 'subscription_cycle' AND status != 'draft'");
  const pay = db.one("SELECT count(*) AS n, max(p.updated_at) AS t FROM payments p JOIN invoices i ON i.id = p.invoice_id WHERE i.billing_reason = 'subscription_cycle' AND p.status = 'succeeded'");
  // Give the last invocations' log lines a moment to reach wrangler's output.
  await sleep(2000);
  const lines = invocations(server.output(), outputFrom);
  const total = lines.reduce((s, l) => s + l.d1Queries, 0);
  const largest = lines.reduce((m, l) => (l.d1Queries > m.d1Queries ? l : m), { d1Queries: 0, kind: "-" });
  const byKind = new Map();
  for (const l of lines) {
    const k = byKind.get(l.kind) ?? { n: 0, q: 0, max: 0 };
    byKind.set(l.kind, { n: k.n + 1, q: k.q + l.d1Queries, max: Math.max(k.max, l.d1Queries) });
  }
  // Finalization is stamped with the period's logical time, so its wall time is when the poll first saw them all.
  const invSeconds = ((invoicesDoneAt ?? Date.now()) - cronAt) / 1000;
  const paySeconds = (pay.t - cronAt) / 1000;
  console.log("\nresults");
  console.log(`  invoices/s: ${(inv.n / invSeconds).toFixed(1)} (${inv.n} invoices finalized within ${invSeconds.toFixed(1)} s of the cron, polled every second)`);
  console.log(`  payments/s: ${(pay.n / paySeconds).toFixed(1)} (${pay.n} successful charges in ${paySeconds.toFixed(1)} s after the cron)`);
  console.log(`  D1 queries per subscription: ${(total / N).toFixed(1)} queries (all ${lines.length} invocations of the run, the sandbox gateway's ledger included)`);
  console.log(`  largest per-invocation count: ${largest.d1Queries} D1 queries (${largest.kind}); Cloudflare's limit is 1,000`);
  for (const [kind, k] of byKind) console.log(`    ${kind}: ${k.n} invocations, ${(k.q / k.n).toFixed(1)} queries each on average, at most ${k.max}`);
  console.log(`  at N = 100,000: ≈ ${Math.round((total / N) * 100_000).toLocaleString("en")} D1 statements on the one database; per-invocation counts do not grow with N except the cron's (see docs/scale.md)`);
  if (cpuBefore !== null && cpuAfter !== null) console.log(`  workerd CPU: ${((cpuAfter - cpuBefore) / 1000).toFixed(1)} s from the cron to the last charge, ${((cpuAfter - cpuBefore) / N).toFixed(1)} ms per subscription (less sensitive to the machine's other load than the rates above)`);
  console.log(`  machine: ${loadBefore} before, ${loadAfter} after`);

  // Sizing: what one billing run adds to D1, per subscription.
  const sizeAfter = sizes(db);
  const grown = Object.entries(sizeAfter.tables)
    .map(([t, a]) => ({ t, rows: a.rows - (sizeBefore.tables[t]?.rows ?? 0), bytes: a.bytes - (sizeBefore.tables[t]?.bytes ?? 0) }))
    .filter((g) => g.rows > 0 || g.bytes > 0)
    .sort((a, b) => b.bytes - a.bytes);
  const payload = grown.reduce((s, g) => s + g.bytes, 0);
  console.log(`  D1 growth per subscription per run: ${((sizeAfter.fileBytes - sizeBefore.fileBytes) / N).toFixed(0)} bytes of database file (pages, indexes included); ${(payload / N).toFixed(0)} bytes of row values:`);
  for (const g of grown) console.log(`    ${g.t}: ${(g.rows / N).toFixed(2)} rows, ${(g.bytes / N).toFixed(0)} bytes`);

  // Checks, per subscription.
  const perSub = db.all(
    `SELECT s.id, count(DISTINCT i.id) AS invoices, sum(CASE WHEN i.status = 'paid' THEN 1 ELSE 0 END) AS paid
       FROM subscriptions s LEFT JOIN invoices i ON i.subscription_id = s.id AND i.billing_reason = 'subscription_cycle'
      WHERE s.plan_id = ? GROUP BY s.id`,
    plan.id,
  );
  const notOne = perSub.filter((s) => s.invoices !== 1);
  check("every subscription has exactly one cycle invoice", perSub.length === N && notOne.length === 0, `${perSub.length} subscriptions, ${notOne.length} without exactly one${examples(notOne.map((s) => `${s.id}:${s.invoices}`))}`);
  const unpaid = perSub.filter((s) => s.paid !== 1);
  check("every cycle invoice is paid", unpaid.length === 0, `${unpaid.length} unpaid${examples(unpaid.map((s) => s.id))}`);
  const charges = db.all(
    `SELECT i.id, i.amount_due, i.amount_paid, i.total, sum(CASE WHEN p.status = 'succeeded' THEN 1 ELSE 0 END) AS ok, sum(CASE WHEN p.status = 'succeeded' THEN p.amount ELSE 0 END) AS charged
       FROM invoices i LEFT JOIN payments p ON p.invoice_id = i.id WHERE i.billing_reason = 'subscription_cycle' GROUP BY i.id`,
  );
  const badCharge = charges.filter((c) => c.ok !== 1 || c.charged !== c.total || c.amount_paid !== c.total);
  check("every cycle invoice has exactly one successful charge of its total", badCharge.length === 0, `${badCharge.length} wrong${examples(badCharge.map((c) => `${c.id}:${c.ok}x${c.charged}/${c.total}`))}`);
  const usage = db.all(
    `SELECT i.subscription_id AS sub, l.quantity, l.amount FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id WHERE i.billing_reason = 'subscription_cycle' AND l.kind = 'usage'`,
  );
  const index = new Map(subs.map((id, i) => [id, i]));
  const unitMinor = Math.round(Number(UNIT) * 100);
  const wrongUsage = usage.filter((u) => Number(u.quantity) !== unitsOf(index.get(u.sub)) || u.amount !== unitsOf(index.get(u.sub)) * unitMinor);
  check("usage lines are exact (one per invoice, quantity and amount)", usage.length === N && wrongUsage.length === 0, `${usage.length} lines, ${wrongUsage.length} wrong${examples(wrongUsage.map((u) => `${u.sub}:${u.quantity}=${u.amount}`))}`);
  const errors = server.output().slice(outputFrom).split("\n").filter((l) => l.includes('"level":"error"'));
  check("no error lines in the worker's log during the run", errors.length === 0, `${errors.length}${examples(errors.map((e) => e.slice(0, 200)), 3)}`);
  db.close();
  mkdirSync("artifacts", { recursive: true });
  writeFileSync("artifacts/bench-billing-run.log", server.output());
} catch (e) {
  console.error(e);
  process.exitCode = 1;
} finally {
  stopAll();
}
process.exitCode ||= exitCode();
