#!/usr/bin/env node
// `npm run bench:usage`: load-tests usage ingestion against GET /health/live in workerd, then proves nothing was
// lost or double-counted. It runs two setups and reports the targets for each: "direct" (the worker's own socket
// under Miniflare) and "wrangler-dev" (through `wrangler dev`'s proxy worker and inspector, as `npm run dev`
// serves). Options via env: DURATION (s), CONNECTIONS, SUBSCRIPTIONS, SUBS_PER_BATCH,
// BENCH_RUNTIME=direct|wrangler-dev (only that one), BENCH_STORAGE=memory|disk (direct only; see startWorkerd).
import autocannon from "autocannon";
import { createBillingClient, unwrap } from "@billing-engine/client";
import { startServer, startWorkerd, localToken } from "./local-server.mjs";

const DURATION = Number(process.env.DURATION ?? 10);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 32);
const SUBSCRIPTIONS = Number(process.env.SUBSCRIPTIONS ?? 50);
const BATCH = 100;
const SUBS_PER_BATCH = Number(process.env.SUBS_PER_BATCH ?? 5);

const RUNTIMES = process.env.BENCH_RUNTIME ? [process.env.BENCH_RUNTIME] : ["direct", "wrangler-dev"];
const verdicts = [];
let exact = true;
for (const RUNTIME of RUNTIMES) {
  if (!["direct", "wrangler-dev"].includes(RUNTIME)) throw new Error(`BENCH_RUNTIME must be direct or wrangler-dev, not ${RUNTIME}`);
  console.log(`\n=== ${RUNTIME} ===`);
  const server = RUNTIME === "wrangler-dev" ? await startServer() : await startWorkerd({ storage: process.env.BENCH_STORAGE });
  try {
    await bench(RUNTIME, server);
  } finally {
    await server.stop();
  }
}
console.log("\ntarget                                        " + RUNTIMES.map((r) => r.padEnd(24)).join(""));
for (const [i, name] of ["single events ≥ 0.5× /health/live req/s", "batched events/s ≥ 20× single", `single-event p99 < 50 ms at ${CONNECTIONS} conns`].entries()) {
  console.log(name.padEnd(46) + verdicts.map((v) => v[i].padEnd(24)).join(""));
}
process.exitCode = exact ? 0 : 1;

async function bench(RUNTIME, server) {
  const admin = await localToken("admin");
  const api = createBillingClient({ baseUrl: server.base, token: admin });

  const customer = await unwrap(api.POST("/api/v1/customers", { body: { email: "bench@example.com", currency: "USD" } }));
  const plan = await unwrap(
    api.POST("/api/v1/plans", {
      body: {
        name: "Bench",
        currency: "USD",
        interval: "month",
        prices: [{ type: "metered", meterId: "api_calls", aggregation: "sum", pricingModel: "per_unit", unitAmount: "0.0006" }],
      },
    }),
  );
  const subs = [];
  for (let i = 0; i < SUBSCRIPTIONS; i++) subs.push((await unwrap(api.POST("/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id } }))).id);
  const { key } = await unwrap(api.POST("/admin/api-keys", { body: { name: "bench", scopes: ["usage:write"] } }));
  const ingest = createBillingClient({ baseUrl: server.base, token: key });
  console.log(`runtime: ${RUNTIME === "wrangler-dev" ? "wrangler dev (proxy worker + inspector)" : "workerd via Miniflare, worker's direct socket"}; storage: ${server.storage ?? ".wrangler/bench-state"}`);
  console.log(`batches: ${BATCH} events over ${SUBS_PER_BATCH} subscriptions each`);
  console.log(`set-up: ${SUBSCRIPTIONS} subscriptions, API key ${key.slice(0, 8)}…; ${DURATION}s per run at ${CONNECTIONS} connections\n`);

  // Everything generated, and what the server confirmed; unconfirmed requests are re-sent afterwards.
  const expected = new Map(subs.map((s) => [s, 0]));
  const pending = new Map();
  let seq = 0;
  const makeEvent = (sub) => {
    const quantity = 1 + (seq % 9);
    const event = { subscriptionId: sub, meterId: "api_calls", quantity, eventId: `e${seq++}`, timestamp: new Date().toISOString() };
    expected.set(sub, expected.get(sub) + quantity);
    return event;
  };
  const headers = { authorization: `Bearer ${key}`, "content-type": "application/json" };
  const track = (body) => {
    const id = `r${seq}`;
    pending.set(id, body);
    return id;
  };
  const ingestRequest = (build) => ({
    method: "POST",
    path: "/api/v1/usage",
    headers,
    setupRequest: (req, context) => {
      const body = build();
      context.id = track(body);
      return { ...req, body: JSON.stringify(body) };
    },
    onResponse: (status, _body, context) => {
      if (status === 202) pending.delete(context.id);
    },
  });

  const run = (name, opts) =>
    new Promise((resolve, reject) => {
      autocannon({ url: server.base, connections: CONNECTIONS, duration: DURATION, ...opts }, (err, res) => (err ? reject(err) : resolve({ name, res })));
    });

  const health = await run("GET /health/live", { requests: [{ method: "GET", path: "/health/live" }] });
  let rr = 0;
  const single = await run("POST /api/v1/usage (1 event)", { requests: [ingestRequest(() => makeEvent(subs[rr++ % subs.length]))] });
  const batched = await run(`POST /api/v1/usage (${BATCH} events)`, {
    // Each batch carries one tenant's traffic: PER_BATCH subscriptions, rotating over all of them.
    requests: [
      ingestRequest(() => {
        const first = rr;
        rr += SUBS_PER_BATCH;
        return { events: Array.from({ length: BATCH }, (_, i) => makeEvent(subs[(first + (i % SUBS_PER_BATCH)) % subs.length])) };
      }),
    ],
  });

  // The floor of any acknowledged event: auth, parsing and the meter round trip, with no write (the meter refuses an
  // unknown meter id; 422). Single events cannot be cheaper than this while each is confirmed by its meter.
  let refusedSeq = 0;
  const refused = await run("POST /api/v1/usage (refused, no write)", {
    requests: [
      {
        method: "POST",
        path: "/api/v1/usage",
        headers,
        setupRequest: (req) => ({ ...req, body: JSON.stringify({ subscriptionId: subs[refusedSeq % subs.length], meterId: "no_such_meter", quantity: 1, eventId: `x${refusedSeq++}` }) }),
      },
    ],
  });

  // Re-send anything not confirmed (timeouts, never sent): event ids make this safe.
  let resent = 0;
  for (const body of pending.values()) {
    await unwrap(ingest.POST("/api/v1/usage", { body }));
    resent++;
  }

  const rows = [health, single, batched, refused].map(({ name, res }) => {
    const eventsPerRequest = name.includes(`${BATCH} events`) ? BATCH : name.includes("(1 event)") ? 1 : 0;
    // The refused run answers 422 by design: count those as its answers.
    const rps = (name.includes("refused") ? res["4xx"] : res["2xx"]) / res.duration;
    return { name, rps, eps: rps * eventsPerRequest, p50: res.latency.p50, p99: res.latency.p99, non2xx: res.non2xx, errors: res.errors + res.timeouts };
  });
  const fmt = (n) => n.toFixed(0).padStart(9);
  console.log(`${"run".padEnd(40)}    req/s events/s   p50 ms   p99 ms  non-2xx   errors`);
  for (const r of rows) console.log(`${r.name.padEnd(40)}${fmt(r.rps)}${fmt(r.eps)}${fmt(r.p50)}${fmt(r.p99)}${fmt(r.non2xx)}${fmt(r.errors)}`);
  const [h, s, b, f] = rows;
  const singleRatio = s.rps / h.rps;
  const batchRatio = b.eps / s.eps;
  console.log(`\nsingle-event ingestion / health/live throughput: ${singleRatio.toFixed(2)} (target ≥ 0.50) ${singleRatio >= 0.5 ? "PASS" : "FAIL"}`);
  console.log(`batched / single events per second:            ${batchRatio.toFixed(1)}x (target ≥ 20x) ${batchRatio >= 20 ? "PASS" : "FAIL"}`);
  console.log(`single-event p99 at ${CONNECTIONS} connections:            ${s.p99} ms (target < 50 ms) ${s.p99 < 50 ? "PASS" : "FAIL"}`);
  verdicts.push([
    `${singleRatio.toFixed(2)} ${singleRatio >= 0.5 ? "PASS" : "FAIL"}`,
    `${batchRatio.toFixed(1)}x ${batchRatio >= 20 ? "PASS" : "FAIL"}`,
    `${s.p99} ms ${s.p99 < 50 ? "PASS" : "FAIL"}`,
  ]);
  console.log(`refused events (no write) / health/live:        ${(f.rps / h.rps).toFixed(2)} (the ceiling for the first ratio in this setup)`);
  console.log(`unconfirmed requests re-sent after the runs:    ${resent}`);

  // Exactness: every subscription's stored aggregate equals what was generated for it.
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
}
