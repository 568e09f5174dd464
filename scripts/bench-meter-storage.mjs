#!/usr/bin/env node
// `npm run bench:meter-storage`: what the usage meter's storage steps cost in workerd, measured alone (no HTTP, no
// routing): the shapes of its chunk insert, the fixed costs of a call into a Durable Object (the call, its savepoint,
// a write's commit, the aggregate update), what handing it 20 events costs by the payload's shape (objects, JSON
// text, JSON rows as usage/meter-wire.ts sends), and a local D1 write as a rollup flush makes it. It is the
// evidence behind the per-step figures in docs/benchmarks.md; `npm run bench:usage` measures the whole path.
// CPU is workerd's own (/proc, Linux only), so the machine's other load does not count; each figure is the median
// over ROUNDS rounds (default 7) taken in alternating order (this VM's speed drifts within a minute).
// Options via env: ROUNDS, ITERATIONS (chunk inserts per request, default 100), CALLS (calls per request, default 100),
// SAMPLE_MS (CPU per sample, default 400).
import { mkdtempSync, rmSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { workerdCpuMs } from "./workerd-cpu.mjs";

const ROUNDS = Number(process.env.ROUNDS ?? 7);
const ITERATIONS = Number(process.env.ITERATIONS ?? 100);
const CALLS = Number(process.env.CALLS ?? 100);
const here = dirname(fileURLToPath(import.meta.url));

const { Miniflare, convertV4MiniflareOptions } = await import("miniflare");
const state = mkdtempSync(join(process.platform === "linux" ? "/dev/shm" : "/tmp", "bench-meter-storage-"));
const root = resolve(here, "..");
const mf = new Miniflare({
  ...convertV4MiniflareOptions({
    workers: [
      {
        name: "meter-storage",
        modules: true,
        modulesRoot: root,
        scriptPath: join(here, "bench-meter-storage.worker.mjs"),
        compatibilityDate: "2025-04-01",
        durableObjects: { PROBE: { className: "Probe", useSQLite: true } },
        d1Databases: ["DB"],
      },
    ],
  }),
  resourcePersistencePath: state,
});
const url = await mf.ready;
if (workerdCpuMs() === null) throw new Error("bench:meter-storage reads workerd's CPU from /proc: Linux only");
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * CPU µs per unit (a step or a call) of requests repeated until they used SAMPLE_MS of CPU: /proc counts in 10 ms
 * ticks, so a sample needs a few hundred of them to be read to a few per cent.
 */
const SAMPLE_MS = Number(process.env.SAMPLE_MS ?? 400);
async function measure(params, units) {
  const c0 = workerdCpuMs();
  let requests = 0;
  do {
    const res = await fetch(`${url}?${new URLSearchParams(params)}`);
    if (!res.ok) throw new Error(`${params.variant}: ${res.status} ${await res.text()}`);
    await res.text();
    requests++;
  } while (workerdCpuMs() - c0 < SAMPLE_MS);
  return ((workerdCpuMs() - c0) * 1000) / (units * requests);
}

/** Each case once per round (every other round backwards), after one uncounted request each; medians in µs. */
async function compare(cases) {
  for (const c of cases) await measure(c.params, c.units); // warms each object and code path
  const samples = new Map(cases.map((c) => [c.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const c of round % 2 ? [...cases].reverse() : cases) samples.get(c.name).push(await measure(c.params, c.units));
  }
  return new Map(cases.map((c) => [c.name, median(samples.get(c.name))]));
}

const row = (name, us, base) => console.log(`  ${name.padEnd(44)} ${us.toFixed(0).padStart(6)} µs${base === undefined ? "" : `   (${(us - base >= 0 ? "+" : "") + (us - base).toFixed(0)} µs)`}`);

console.log(`bench:meter-storage on ${cpus().length}× ${cpus()[0]?.model ?? "?"}; ${ROUNDS} rounds; workerd CPU, medians\n`);

for (const keys of ["sequential", "random"]) {
  const variants = ["call", "chunk, 9 values a row", "chunk, 4 values a row", "chunk, key only"];
  const r = await compare(
    variants.map((variant) => ({ name: variant, units: ITERATIONS, params: { variant, rows: "20", iterations: String(ITERATIONS), keys, object: `${variant}/${keys}` } })),
  );
  console.log(`A 20-event chunk insert inside one transaction, ${keys === "random" ? "random (UUID) keys" : 'keys "e<n>" as bench:usage sends'}; against an empty step:`);
  for (const v of variants) row(v, r.get(v), v === "call" ? undefined : r.get("call"));
}

const calls = ["call-without-savepoint", "call", "one event", "one event + aggregate, 7 values", "one event + aggregate, 2 values"];
const r = await compare(calls.map((variant) => ({ name: variant, units: CALLS, params: { variant, calls: String(CALLS), rows: "1" } })));
console.log(`\nA call from the worker into a Durable Object (calls in a row, each its own transaction and commit); against the one before:`);
calls.forEach((v, i) => row(v, r.get(v), i === 0 ? undefined : r.get(v.includes("aggregate") ? "one event" : calls[i - 1])));

const payloads = ["payload: none", "payload: objects", "payload: JSON text", "payload: JSON rows"];
const rp = await compare(payloads.map((variant) => ({ name: variant, units: CALLS, params: { variant, calls: String(CALLS), rows: "20" } })));
console.log(`\nA call handing a meter 20 events as bench:usage's batches do (5 meters a batch), by the payload's shape; against none:`);
payloads.forEach((v, i) => row(v, rp.get(v), i === 0 ? undefined : rp.get(payloads[0])));

const d1 = await compare([
  { name: "none", units: CALLS, params: { variant: "none" } },
  { name: "D1 batch of one upsert", units: CALLS, params: { variant: "D1 batch of one upsert", calls: String(CALLS) } },
]);
console.log(`\nLocal D1 (Miniflare's), as a meter's rollup flush writes it:`);
row("D1 batch of one upsert", d1.get("D1 batch of one upsert") - d1.get("none"));

await mf.dispose();
rmSync(state, { recursive: true, force: true });
