#!/usr/bin/env node
// Samples the worker's CPU over the V8 inspector of a running `wrangler dev` (or `INSPECTOR_PORT=… npm run
// bench:billing-run`) and prints self time by function and by file.
//   node scripts/profile-worker.mjs --port=9360 [--seconds=40] [--wait-for=FILE:TEXT] [--out=artifacts/worker.cpuprofile]
// --wait-for starts sampling once FILE contains TEXT (e.g. the bench's output reaching its first poll line), so the
// profile covers the billing run and not the set-up.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import WebSocket from "ws";

const flag = (name, d) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? d;
const port = Number(flag("port", process.env.INSPECTOR_PORT ?? 9229));
const seconds = Number(flag("seconds", 40));
const waitFor = flag("wait-for");
const out = flag("out", "artifacts/worker.cpuprofile");
const top = Number(flag("top", 40));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

if (waitFor) {
  const [file, ...rest] = waitFor.split(":");
  const text = rest.join(":");
  while (!(existsSync(file) && readFileSync(file, "utf8").includes(text))) await sleep(500);
}
let targets;
for (let i = 0; ; i++) {
  try {
    targets = await (await fetch(`http://127.0.0.1:${port}/json`)).json();
    if (targets.length) break;
  } catch {}
  if (i > 120) throw new Error(`no inspector target on :${port}`);
  await sleep(500);
}
const target = targets.find((t) => !/proxy|entry/i.test(t.title ?? "")) ?? targets[0];
const ws = new WebSocket(target.webSocketDebuggerUrl);
await new Promise((res, rej) => (ws.once("open", res), ws.once("error", rej)));
let id = 0;
const pending = new Map();
ws.on("message", (m) => {
  const msg = JSON.parse(m);
  if (msg.id && pending.has(msg.id)) (pending.get(msg.id)(msg), pending.delete(msg.id));
});
const send = (method, params = {}) => new Promise((res) => (pending.set(++id, res), ws.send(JSON.stringify({ id, method, params }))));
await send("Profiler.enable");
await send("Profiler.setSamplingInterval", { interval: 500 });
await send("Profiler.start");
console.error(`profiling ${target.title ?? target.id} for ${seconds} s`);
await sleep(seconds * 1000);
const { result } = await send("Profiler.stop");
ws.close();
const profile = result.profile;
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify(profile));

// Self time per node = samples whose leaf is that node.
const counts = new Map();
for (const s of profile.samples) counts.set(s, (counts.get(s) ?? 0) + 1);
const total = profile.samples.length;
const byFn = new Map();
const byFile = new Map();
const short = (url) => (url || "(native)").replace(/^.*\/(node_modules\/)/, "$1").replace(/^.*\/(src\/)/, "$1").replace(/^file:\/\/.*\.wrangler\/tmp\/[^/]+\//, "");
for (const node of profile.nodes) {
  const n = counts.get(node.id) ?? 0;
  if (!n) continue;
  const f = node.callFrame;
  const fn = `${f.functionName || "(anonymous)"} ${short(f.url)}:${f.lineNumber + 1}`;
  byFn.set(fn, (byFn.get(fn) ?? 0) + n);
  byFile.set(short(f.url), (byFile.get(short(f.url)) ?? 0) + n);
}
const pct = (n) => `${((100 * n) / total).toFixed(1).padStart(5)}%`;
console.log(`${total} samples over ${seconds} s`);
console.log("\nself time by function");
for (const [k, n] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(n)}  ${k}`);
console.log("\nself time by file");
for (const [k, n] of [...byFile].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(n)}  ${k}`);
