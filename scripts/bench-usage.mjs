#!/usr/bin/env node
// `npm run bench:usage`: load-tests usage ingestion against GET /health/live in workerd, then proves nothing was
// lost or double-counted. Three dialects of the same use case: the native POST /api/v1/usage, Stripe's meter events
// (v1 form-encoded single events, v2 JSON stream of 100) and OpenMeter's CloudEvents (one, and batches of 100). It
// runs two setups: "direct" (the worker's own socket under Miniflare), which carries the targets, and "wrangler-dev"
// (through `wrangler dev`'s proxy worker and inspector, as `npm run dev` serves), reported without targets.
// Each phase runs DURATION seconds (default 20) in total, as ROUNDS alternating slices (default 20, so 1 s each): this
// VM's speed drifts by up to 2x within a minute, and alternating puts the same drift on both sides of every ratio
// (the two sides of a ratio run side by side, and every other round runs backwards). Rates and CPU come from the
// slices; latency percentiles from one continuous run of LATENCY seconds per phase afterwards (a slice opens 32 new
// connections every second, which is not the steady state the p99 target is about).
// Options via env: DURATION, ROUNDS (1 for one run per phase, e.g. to profile one phase; percentiles then come from
// that run), WARMUP (seconds of every phase run first and not counted, default 2; 0 for none), LATENCY (seconds of
// the continuous run per phase for percentiles, default 8; 0 to take them from the slices), CONNECTIONS, SUBSCRIPTIONS
// (one customer each), SUBS_PER_BATCH, PORT (direct socket, 3415), BENCH_RUNTIME=direct|wrangler-dev (only that
// one), BENCH_STORAGE=memory|disk (direct only), BENCH_DIALECTS=native,stripe,cloudevents (a subset), INSPECTOR_PORT
// (direct only: for scripts/profile-worker.mjs), BENCH_ASSET_ROUTER=1 (direct only: keep Miniflare's local asset
// router in front of the worker, see local-server.mjs).
import { cpus, loadavg } from "node:os";
import autocannon from "autocannon";
import { createBillingClient, unwrap } from "@billing-engine/client";
import { startServer, startWorkerd, localToken } from "./local-server.mjs";
import { workerdCpuMs } from "./workerd-cpu.mjs";

const DURATION = Number(process.env.DURATION ?? 20);
const ROUNDS = Number(process.env.ROUNDS ?? 20);
const WARMUP = Number(process.env.WARMUP ?? 2);
const LATENCY = Number(process.env.LATENCY ?? 8);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 32);
const SUBSCRIPTIONS = Number(process.env.SUBSCRIPTIONS ?? 50);
const BATCH = 100;
const SUBS_PER_BATCH = Number(process.env.SUBS_PER_BATCH ?? 5);
const DIALECTS = new Set((process.env.BENCH_DIALECTS ?? "native,stripe,cloudevents").split(","));
const load = () => {
  const [one, five] = loadavg();
  return `load average ${one.toFixed(2)} (1 min), ${five.toFixed(2)} (5 min) on ${cpus().length} CPUs`;
};

// Targets (issue 12 §5), on the direct socket: the stored write costs at most 15% of an acknowledged single event;
// a batched event costs under a sixth of a no-op request; single events stay under 50 ms at p99.
const TARGETS = [
  { name: "accepted single / refused floor ≥ 0.85", ok: (v) => v >= 0.85, fmt: (v) => v.toFixed(2) },
  { name: "batched events/s ≥ 6× /health/live req/s", ok: (v) => v >= 6, fmt: (v) => `${v.toFixed(1)}x` },
  { name: `single-event p99 < 50 ms at ${CONNECTIONS} conns`, ok: (v) => v < 50, fmt: (v) => `${v} ms` },
];

const RUNTIMES = process.env.BENCH_RUNTIME ? [process.env.BENCH_RUNTIME] : ["direct", "wrangler-dev"];
const verdicts = [];
let exact = true;
for (const RUNTIME of RUNTIMES) {
  if (!["direct", "wrangler-dev"].includes(RUNTIME)) throw new Error(`BENCH_RUNTIME must be direct or wrangler-dev, not ${RUNTIME}`);
  console.log(`\n=== ${RUNTIME} ===`);
  const server = RUNTIME === "wrangler-dev" ? await startServer() : await startWorkerd({ storage: process.env.BENCH_STORAGE, ...(process.env.PORT && { port: Number(process.env.PORT) }), ...(process.env.INSPECTOR_PORT && { inspectorPort: Number(process.env.INSPECTOR_PORT) }) });
  try {
    verdicts.push({ runtime: RUNTIME, rows: await bench(RUNTIME, server) });
  } finally {
    await server.stop();
  }
}
console.log(`\ntargets (direct socket; wrangler dev reported only)   ${"dialect".padEnd(12)}` + verdicts.map((v) => v.runtime.padEnd(18)).join(""));
for (const [i, t] of TARGETS.entries()) {
  for (const dialect of ["native", "stripe", "cloudevents"].filter((d) => DIALECTS.has(d))) {
    const cells = verdicts.map(({ runtime, rows }) => {
      const v = rows[dialect]?.[i];
      if (v === undefined || Number.isNaN(v)) return "n/a".padEnd(18);
      return `${t.fmt(v)}${runtime === "direct" ? (t.ok(v) ? " PASS" : " FAIL") : ""}`.padEnd(18);
    });
    console.log(`${t.name.padEnd(52)} ${dialect.padEnd(12)}${cells.join("")}`);
  }
}
process.exitCode = exact ? 0 : 1;

async function bench(RUNTIME, server) {
  const admin = await localToken("admin");
  // Set-up goes through the typed client; the timed traffic below is built by hand for autocannon.
  const api = createBillingClient({ baseUrl: server.base, token: admin });
  const call = (method, path, body) => unwrap(api[method](path, { body }));

  const plan = await call("POST", "/api/v1/plans", {
    name: "Bench",
    currency: "USD",
    interval: "month",
    prices: [{ type: "metered", meterId: "api_calls", eventName: "api_request", valueProperty: "$.value", aggregation: "sum", pricingModel: "per_unit", unitAmount: "0.0006" }],
  });
  // One customer per subscription, so the drop-in dialects (which name the customer) spread over the same meters.
  const subs = [];
  for (let i = 0; i < SUBSCRIPTIONS; i++) {
    const customer = await call("POST", "/api/v1/customers", { email: `bench${i}@example.com`, currency: "USD", metadata: { stripeCustomerId: `cus_bench${i}` } });
    subs.push({ id: (await call("POST", "/api/v1/subscriptions", { customerId: customer.id, planId: plan.id })).id, customerId: customer.id, stripeId: `cus_bench${i}` });
  }
  const { key } = await call("POST", "/admin/api-keys", { name: "bench", scopes: ["usage:write"] });
  console.log(`runtime: ${RUNTIME === "wrangler-dev" ? "wrangler dev (proxy worker + inspector)" : "workerd via Miniflare, worker's direct socket"}; storage: ${server.storage ?? ".wrangler/bench-state"}`);
  console.log(`batches: ${BATCH} events over ${SUBS_PER_BATCH} subscriptions each`);
  console.log(`set-up: ${SUBSCRIPTIONS} customers with a subscription each, API key ${key.slice(0, 8)}…; ${DURATION}s per run at ${CONNECTIONS} connections`);
  console.log(`machine before the runs: ${load()}\n`);

  // Everything generated, and what the server confirmed; unconfirmed requests are re-sent afterwards.
  const expected = new Map(subs.map((s) => [s.id, 0]));
  const pending = new Map();
  let seq = 0;
  const nextEvent = (sub) => {
    const quantity = 1 + (seq % 9);
    expected.set(sub.id, expected.get(sub.id) + quantity);
    return { sub, quantity, id: `e${seq++}`, at: Date.now() };
  };
  const dialects = {
    native: {
      path: "/api/v1/usage",
      type: "application/json",
      one: (e) => JSON.stringify({ subscriptionId: e.sub.id, meterId: "api_calls", quantity: e.quantity, eventId: e.id, timestamp: new Date(e.at).toISOString() }),
      many: (es) => JSON.stringify({ events: es.map((e) => ({ subscriptionId: e.sub.id, meterId: "api_calls", quantity: e.quantity, eventId: e.id, timestamp: new Date(e.at).toISOString() })) }),
    },
    stripe: {
      path: "/v1/billing/meter_events",
      batchPath: "/v2/billing/meter_event_stream",
      type: "application/x-www-form-urlencoded",
      batchType: "application/json",
      one: (e) => new URLSearchParams({ event_name: "api_request", "payload[stripe_customer_id]": e.sub.stripeId, "payload[value]": String(e.quantity), identifier: e.id, timestamp: String(Math.floor(e.at / 1000)) }).toString(),
      many: (es) => JSON.stringify({ events: es.map((e) => ({ event_name: "api_request", identifier: e.id, payload: { stripe_customer_id: e.sub.stripeId, value: String(e.quantity) }, timestamp: new Date(e.at).toISOString() })) }),
    },
    cloudevents: {
      path: "/openmeter/api/v1/events",
      type: "application/cloudevents+json",
      batchType: "application/cloudevents-batch+json",
      one: (e) => JSON.stringify({ specversion: "1.0", id: e.id, source: "bench", type: "api_request", subject: e.sub.customerId, time: new Date(e.at).toISOString(), data: { value: e.quantity } }),
      many: (es) => JSON.stringify(es.map((e) => ({ specversion: "1.0", id: e.id, source: "bench", type: "api_request", subject: e.sub.customerId, time: new Date(e.at).toISOString(), data: { value: e.quantity } }))),
    },
  };
  const stored = (status) => status === 200 || status === 202 || status === 204;
  const ingestRequest = (path, type, build) => ({
    method: "POST",
    path,
    headers: { authorization: `Bearer ${key}`, "content-type": type },
    setupRequest: (req, context) => {
      const body = build();
      context.id = `r${seq}`;
      pending.set(context.id, { path, type, body });
      return { ...req, body };
    },
    onResponse: (status, _body, context) => {
      if (stored(status)) pending.delete(context.id);
    },
  });

  const run = async (name, opts, seconds, counted = true) => {
    // Also what scripts/profile-worker.mjs --wait-for waits on (with ROUNDS=1 a phase runs once, in one piece).
    if (ROUNDS === 1 && counted) console.log(`running: ${name}`);
    const cpuBefore = workerdCpuMs();
    const times = []; // every response's latency, so the rounds' percentiles can be taken over all of them
    const res = await new Promise((resolve, reject) => {
      const instance = autocannon({ url: server.base, connections: CONNECTIONS, duration: seconds, ...opts }, (err, r) => (err ? reject(err) : resolve(r)));
      instance.on("response", (_client, _status, _bytes, ms) => times.push(ms));
    });
    const cpuAfter = workerdCpuMs();
    await settled();
    return { res, times, cpuMs: cpuBefore === null || cpuAfter === null ? null : cpuAfter - cpuBefore };
  };
  // autocannon stops at the deadline with requests still in flight: the next slice starts once workerd has finished
  // them (its CPU time stops moving), so one phase's leftovers are not charged to the next.
  const settled = async () => {
    for (let i = 0; i < 100; i++) {
      const before = workerdCpuMs();
      await new Promise((r) => setTimeout(r, 100));
      const after = workerdCpuMs();
      if (before === null || after === null || after - before <= 10) return;
    }
  };

  let rr = 0;
  const batchOf = () => {
    const first = rr;
    rr += SUBS_PER_BATCH;
    // Each batch carries one tenant's traffic: SUBS_PER_BATCH subscriptions, rotating over all of them.
    return Array.from({ length: BATCH }, (_, i) => nextEvent(subs[(first + (i % SUBS_PER_BATCH)) % subs.length]));
  };
  const phases = [{ name: "GET /health/live", kind: "health", opts: { requests: [{ method: "GET", path: "/health/live" }] } }];
  for (const [dialect, d] of Object.entries(dialects)) {
    if (!DIALECTS.has(dialect)) continue;
    phases.push({ name: `${dialect}: ${d.path} (1 event)`, dialect, kind: "single", opts: { requests: [ingestRequest(d.path, d.type, () => d.one(nextEvent(subs[rr++ % subs.length])))] } });
    const bp = d.batchPath ?? d.path;
    phases.push({ name: `${dialect}: ${bp} (${BATCH} events)`, dialect, kind: "batch", opts: { requests: [ingestRequest(bp, d.batchType ?? d.type, () => d.many(batchOf()))] } });
    if (dialect === "native") {
      // The floor of any acknowledged event: auth, parsing and the meter round trip, with no write (the meter refuses
      // an unknown meter id; 422). Single events cannot be cheaper than this while each is confirmed by its meter.
      let refusedSeq = 0;
      phases.push({
        name: "native: refused, no write (floor)",
        dialect,
        kind: "refused",
        opts: {
          requests: [
            {
              method: "POST",
              path: "/api/v1/usage",
              headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
              setupRequest: (req) => ({ ...req, body: JSON.stringify({ subscriptionId: subs[refusedSeq % subs.length].id, meterId: "no_such_meter", quantity: 1, eventId: `x${refusedSeq++}` }) }),
            },
          ],
        },
      });
    }
  }
  // Every phase runs once per round (DURATION/ROUNDS seconds each); the rounds are summed.
  const slice = Math.max(1, Math.round(DURATION / ROUNDS));
  const results = phases.map((p) => ({ ...p, rounds: [] }));
  // The two sides of each ratio run next to each other (/health/live amid the batches, the floor amid the single
  // events), and every other round runs in reverse order, so drift that is steady over a round falls equally on both.
  const ofKind = (k) => results.filter((r) => r.kind === k);
  const amid = (list, x) => [...list.slice(0, Math.ceil(list.length / 2)), ...x, ...list.slice(Math.ceil(list.length / 2))];
  const order = [...amid(ofKind("batch"), ofKind("health")), ...amid(ofKind("single"), ofKind("refused"))];
  const cpuPerAnswer = (r, one) => {
    const answered = r.kind === "refused" ? one.res["4xx"] : one.res["2xx"];
    return one.cpuMs === null || !answered ? null : one.cpuMs / answered;
  };
  // A first slice of every phase is not counted: it pays for starting the meters, compiling the code paths and
  // warming SQLite's page cache, which a server that has been up for a while has behind it. Its events still count
  // in the exactness check.
  if (WARMUP > 0) {
    console.log(`warm-up: ${WARMUP} s of every phase, not counted`);
    for (const r of order) await run(r.name, r.opts, WARMUP, false);
  }
  if (ROUNDS > 1) console.log(`workerd CPU ms per answered request, by round (phases: ${results.map((p) => p.name).join(" | ")})`);
  for (let round = 1; round <= ROUNDS; round++) {
    for (const r of round % 2 ? order : [...order].reverse()) r.rounds.push(await run(r.name, r.opts, slice));
    const line = results.map((r) => cpuPerAnswer(r, r.rounds[round - 1])?.toFixed(3) ?? "n/a");
    if (ROUNDS > 1) console.log(`  round ${String(round).padStart(2)}/${ROUNDS}: ${line.join(" | ")}`);
  }
  // Latency: one continuous run per phase, in the same order, after the slices.
  const latencyRuns = ROUNDS > 1 && LATENCY > 0;
  if (latencyRuns) {
    console.log(`latency: ${LATENCY} s of every phase in one piece`);
    for (const r of order) r.latency = await run(r.name, r.opts, LATENCY, false);
  }
  console.log(`machine after the runs: ${load()}`);

  // Re-send anything not confirmed (timeouts, never sent): event ids make this safe.
  let resent = 0;
  for (const { path, type, body } of pending.values()) {
    const r = await fetch(server.base + path, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": type }, body });
    if (!stored(r.status)) throw new Error(`re-send ${path}: ${r.status} ${await r.text()}`);
    resent++;
  }

  const rows = results.map(({ name, rounds, kind, dialect, latency }) => {
    const eventsPerRequest = kind === "batch" ? BATCH : kind === "single" ? 1 : 0;
    // The refused run answers 422 by design: count those as its answers.
    const answered = rounds.reduce((n, { res }) => n + (kind === "refused" ? res["4xx"] : res["2xx"]), 0);
    const seconds = rounds.reduce((n, { res }) => n + res.duration, 0);
    const rps = answered / seconds;
    const cpuMs = rounds.some((r) => r.cpuMs === null) ? null : rounds.reduce((n, r) => n + r.cpuMs, 0);
    // workerd's CPU per answered request (all of workerd: the worker, its Durable Objects and the runtime itself).
    const cpu = cpuMs === null || !answered ? null : cpuMs / answered;
    // Percentiles from the continuous run, else over every response of every round (summaries cannot be merged).
    const times = Float64Array.from(latency ? latency.times : rounds.flatMap((r) => r.times)).sort();
    const pct = (q) => Math.round(times[Math.min(times.length - 1, Math.ceil(q * times.length) - 1)] ?? NaN);
    const sum = (key) => rounds.reduce((n, { res }) => n + res[key], 0);
    return { name, kind, dialect, rps, eps: rps * eventsPerRequest, p50: pct(0.5), p99: pct(0.99), non2xx: sum("non2xx") + (latency?.res.non2xx ?? 0), errors: sum("errors") + sum("timeouts") + (latency ? latency.res.errors + latency.res.timeouts : 0), cpu };
  });
  const fmt = (n) => n.toFixed(0).padStart(9);
  console.log(`\nrates and CPU: ${ROUNDS} slices of ${slice} s per phase; percentiles: ${latencyRuns ? `one ${LATENCY} s run per phase` : "every response of every slice"}`);
  console.log(`${"run".padEnd(52)}    req/s events/s   p50 ms   p99 ms  non-2xx   errors  cpu ms/req`);
  for (const r of rows) console.log(`${r.name.padEnd(52)}${fmt(r.rps)}${fmt(r.eps)}${fmt(r.p50)}${fmt(r.p99)}${fmt(r.non2xx)}${fmt(r.errors)}${(r.cpu === null ? "n/a" : r.cpu.toFixed(3)).padStart(12)}`);
  const health = rows.find((r) => r.kind === "health");
  const floor = rows.find((r) => r.kind === "refused");
  const figures = {};
  for (const dialect of Object.keys(dialects).filter((d) => DIALECTS.has(d))) {
    const single = rows.find((r) => r.dialect === dialect && r.kind === "single");
    const batch = rows.find((r) => r.dialect === dialect && r.kind === "batch");
    figures[dialect] = [floor ? single.rps / floor.rps : NaN, batch.eps / health.rps, single.p99];
    const [a, b, c] = figures[dialect];
    console.log(`${dialect.padEnd(12)} accepted single / refused floor ${a.toFixed(2)}; batched events/s / health req/s ${b.toFixed(1)}x; single p99 ${c} ms`);
  }
  if (floor) console.log(`refused floor / health/live: ${(floor.rps / health.rps).toFixed(2)}`);
  // The same two ratios from CPU per request: what the throughput ratios would be on an otherwise idle single thread.
  if (health.cpu && floor?.cpu) {
    for (const dialect of Object.keys(figures)) {
      const single = rows.find((r) => r.dialect === dialect && r.kind === "single");
      const batch = rows.find((r) => r.dialect === dialect && r.kind === "batch");
      if (!single.cpu || !batch.cpu) continue;
      console.log(
        `${dialect.padEnd(12)} by CPU: accepted single / refused floor ${(floor.cpu / single.cpu).toFixed(2)}; batched events per CPU-second / health requests per CPU-second ${((BATCH / batch.cpu) / (1 / health.cpu)).toFixed(1)}x`,
      );
    }
  }
  // The CPU ratios round by round: their spread is this machine's drift, their median the run's most robust figure.
  if (ROUNDS > 1 && floor) {
    const median = (xs) => {
      const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
      return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN;
    };
    const healthRow = results.find((r) => r.kind === "health");
    const floorRow = results.find((r) => r.kind === "refused");
    for (const dialect of Object.keys(figures)) {
      const singleRow = results.find((r) => r.dialect === dialect && r.kind === "single");
      const batchRow = results.find((r) => r.dialect === dialect && r.kind === "batch");
      const per = (f) => Array.from({ length: ROUNDS }, (_, i) => f(i));
      const a = per((i) => cpuPerAnswer(floorRow, floorRow.rounds[i]) / cpuPerAnswer(singleRow, singleRow.rounds[i]));
      const b = per((i) => (BATCH / cpuPerAnswer(batchRow, batchRow.rounds[i])) * cpuPerAnswer(healthRow, healthRow.rounds[i]));
      console.log(
        `${dialect.padEnd(12)} by CPU, round by round: accepted single / refused floor ${a.map((x) => x.toFixed(2)).join(" ")} (median ${median(a).toFixed(2)}); batched events / health requests ${b.map((x) => x.toFixed(1)).join(" ")} (median ${median(b).toFixed(1)}x)`,
      );
    }
  }
  console.log(`unconfirmed requests re-sent after the runs: ${resent}`);

  // Exactness: every subscription's stored aggregate equals what was generated for it, whatever the dialect.
  let mismatches = 0;
  let total = 0;
  for (const [sub, want] of expected) {
    const summary = await unwrap(api.GET("/api/v1/usage/{subscriptionId}/summary", { params: { path: { subscriptionId: sub }, query: { period: "current" } } }));
    const got = summary.meters.find((m) => m.meterId === "api_calls").value;
    total += want;
    if (got !== String(want)) {
      mismatches++;
      console.log(`MISMATCH ${sub}: stored ${got}, sent ${want}`);
    }
  }
  console.log(`exactness: ${expected.size} subscriptions, ${total} units sent, ${mismatches === 0 ? "all aggregates exact (nothing lost, nothing double-counted)" : `${mismatches} mismatches`}`);
  if (mismatches) exact = false;
  return figures;
}
