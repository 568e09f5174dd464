#!/usr/bin/env node
// `npm run bench:audit`: fires WRITERS (default 200) audited requests at once (customer creates with an admin token)
// against a fresh `wrangler dev` on :3413, then reports wall time, throughput, statuses, how many times an audited
// write had to retry because another writer took its audit seq (the worker logs "audit seq conflict" per retry),
// and whether the audit chain still verifies with one row per write.
import { writeFileSync } from "node:fs";
import { localToken, startServer } from "./local-server.mjs";
import { answer, machineLoad } from "./load-common.mjs";
import { createBillingClient } from "@billing-engine/client";

const WRITERS = Number(process.env.WRITERS ?? 200);
const PORT = Number(process.env.PORT ?? 3413);

console.log(`bench:audit: starting wrangler dev on :${PORT} with fresh state (${machineLoad()})`);
const server = await startServer({ port: PORT, persist: ".wrangler/bench-audit-state", fresh: true, logLevel: "log" });
let failed = false;
try {
  const admin = await localToken("admin");
  const api = createBillingClient({ baseUrl: server.base, token: admin });
  // { status, json } whatever the answer; a connection that fails is a status too (it is counted, not thrown).
  const settle = async (result) => {
    try {
      return await answer(result);
    } catch (e) {
      return { status: `network error (${e.cause?.code ?? e.message})`, json: null };
    }
  };
  const createCustomer = (body) => settle(api.POST("/api/v1/customers", { body }));
  // Warm-up: one audited write, so isolate start-up and the first migrations' caches are not measured.
  const warm = await createCustomer({ email: "bench-warmup@example.com" });
  if (warm.status !== 201) throw new Error(`warm-up create failed: ${warm.status} ${JSON.stringify(warm.json)}`);
  const conflictsBefore = countConflicts(server.output());

  const run = Date.now().toString(36);
  const started = performance.now();
  const results = await Promise.all(
    Array.from({ length: WRITERS }, async (_, i) => {
      const t0 = performance.now();
      const r = await createCustomer({ email: `bench-${run}-${i}@example.com`, name: `Bench ${i}` });
      return { status: r.status, ms: performance.now() - t0, body: r.json };
    }),
  );
  const wallMs = performance.now() - started;
  // Let the last log lines reach us.
  await new Promise((r) => setTimeout(r, 500));
  const conflicts = countConflicts(server.output()) - conflictsBefore;

  const statuses = {};
  for (const r of results) statuses[r.status] = (statuses[r.status] ?? 0) + 1;
  const ok = results.filter((r) => r.status === 201).length;
  const lat = results.map((r) => r.ms).sort((a, b) => a - b);
  const pct = (p) => lat[Math.min(lat.length - 1, Math.ceil((p / 100) * lat.length) - 1)];

  const verify = await settle(api.GET("/api/v1/audit/verify-integrity"));
  const v = verify.json;
  console.log(`\n${WRITERS} concurrent audited writes (POST /api/v1/customers, admin token) through wrangler dev`);
  console.log(`wall time          ${wallMs.toFixed(0)} ms`);
  console.log(`throughput         ${((ok / wallMs) * 1000).toFixed(1)} committed writes/s`);
  console.log(`latency            p50 ${pct(50).toFixed(0)} ms, p99 ${pct(99).toFixed(0)} ms, max ${lat[lat.length - 1].toFixed(0)} ms`);
  console.log(`statuses           ${Object.entries(statuses).map(([s, n]) => `${s}×${n}`).join(" ")}`);
  const firstFailure = results.find((r) => r.status !== 201);
  if (firstFailure) console.log(`first failure      ${firstFailure.status} ${JSON.stringify(firstFailure.body).slice(0, 300)}`);
  console.log(`seq-conflict retries ${conflicts}`);
  console.log(`verify-integrity   ${verify.status} valid=${v?.valid} checked=${v?.checked} (expected ${ok + 1})${v?.firstBrokenRow ? ` broken at ${JSON.stringify(v.firstBrokenRow)}` : ""}`);
  // wrangler dev reloads the worker when a source file changes; requests in flight then get 503 from its proxy.
  const out = server.output();
  const reloads = out.slice(out.indexOf("Ready on")).split("Your Worker has access to the following bindings").length - 1;
  if (reloads > 0) console.log(`WARNING: wrangler dev reloaded the worker ${reloads} time(s) during the run (a source file changed); 503s come from that`);
  console.log(`(${machineLoad()})`);
  failed = ok !== WRITERS || v?.valid !== true || v?.checked !== ok + 1;
} catch (e) {
  failed = true;
  console.error(e);
} finally {
  writeFileSync(".wrangler/bench-audit-server.log", server.output());
  server.stop();
}
process.exitCode = failed ? 1 : 0;

function countConflicts(output) {
  return output.split("\n").filter((l) => l.includes('"msg":"audit seq conflict"')).length;
}
