// Checks the deploy configuration (`npm run check:wrangler`, run by CI): `npm run deploy` deploys production;
// development (the top level of wrangler.toml) and production share no D1, queue or R2 resource; every queue
// consumer, the dead-letter consumers included, has a consumed dead-letter queue, so no message is dropped after
// its last retry; production is not on workers.dev and uploads source maps; and a production build succeeds.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unstable_readConfig as readConfig } from "wrangler";
import { offlineEnv } from "./wrangler-env.mjs";

const failures = [];
const check = (ok, what) => {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures.push(what);
};
const sameSet = (a, b) => JSON.stringify([...new Set(a)].sort()) === JSON.stringify([...new Set(b)].sort());
const shared = (a, b) => [...new Set(a)].filter((x) => new Set(b).has(x));

const deploy = JSON.parse(readFileSync("package.json", "utf8")).scripts?.deploy ?? "";
const deploys = [...deploy.matchAll(/wrangler deploy[^&;|]*/g)].map((m) => m[0]);
check(deploys.length > 0 && deploys.every((d) => /--env[ =]production\b/.test(d)), `npm run deploy deploys production (${JSON.stringify(deploy)})`);

const quiet = { hideWarnings: true };
const dev = readConfig({ config: "wrangler.toml" }, quiet);
const prod = readConfig({ config: "wrangler.toml", env: "production" }, quiet);

check(dev.vars?.ENVIRONMENT === "development" && prod.vars?.ENVIRONMENT === "production", "ENVIRONMENT is development at the top level, production in [env.production]");
check(prod.vars?.TEST_CLOCKS === "off", "test clocks are off in production");
check(prod.workers_dev === false, "production is not served on workers.dev (workers_dev = false)");
check(!prod.vars?.LIMITS, "production runs without the per-invocation limit counter (LIMITS empty; src/platform/limits.ts)");
check(prod.upload_source_maps === true, "production uploads source maps (upload_source_maps = true)");

const resources = (c) => ({
  "D1 database name": c.d1_databases.map((d) => d.database_name),
  "D1 database id": c.d1_databases.map((d) => d.database_id),
  queue: [...c.queues.producers.map((p) => p.queue), ...c.queues.consumers.flatMap((q) => [q.queue, q.dead_letter_queue].filter(Boolean))],
  "R2 bucket": c.r2_buckets.map((b) => b.bucket_name),
});
const devRes = resources(dev);
const prodRes = resources(prod);
for (const kind of Object.keys(devRes)) {
  const both = shared(devRes[kind], prodRes[kind]);
  check(both.length === 0, `development and production share no ${kind}${both.length ? `: ${both.join(", ")}` : ""}`);
}

// Production must have every binding development has (nothing configured only where it is not deployed).
const bindings = (c) => ({
  vars: Object.keys(c.vars ?? {}),
  secrets: c.secrets?.required ?? [],
  D1: c.d1_databases.map((d) => d.binding),
  "Durable Objects": c.durable_objects.bindings.map((d) => `${d.name}:${d.class_name}`),
  "queue producers": c.queues.producers.map((p) => p.binding),
  R2: c.r2_buckets.map((b) => b.binding),
  crons: c.triggers?.crons ?? [],
});
const devBind = bindings(dev);
const prodBind = bindings(prod);
for (const kind of Object.keys(devBind)) check(sameSet(devBind[kind], prodBind[kind]), `production and development have the same ${kind} (${devBind[kind].join(", ")} / ${prodBind[kind].join(", ")})`);
check(dev.queues.consumers.length === prod.queues.consumers.length, "production and development have the same number of queue consumers");

for (const [name, c] of [
  ["development", dev],
  ["production", prod],
]) {
  const consumed = new Set(c.queues.consumers.map((q) => q.queue));
  for (const p of c.queues.producers) check(consumed.has(p.queue), `${name}: ${p.queue} (${p.binding}) has a consumer`);
  for (const q of c.queues.consumers) {
    const dlq = q.dead_letter_queue;
    check(Boolean(dlq) && dlq !== q.queue && consumed.has(dlq), `${name}: ${q.queue} ends in a consumed dead-letter queue (${dlq ?? "none"}), so no message is dropped`);
  }
}

// The production bundle builds, with its source map (no network needed for a dry run).
const out = mkdtempSync(join(tmpdir(), "wrangler-prod-"));
try {
  const r = spawnSync("wrangler", ["deploy", "--dry-run", "--env", "production", "--outdir", out], { env: offlineEnv, encoding: "utf8" });
  check(r.status === 0, `wrangler deploy --dry-run --env production succeeds${r.status === 0 ? "" : `:\n${r.stdout}\n${r.stderr}`}`);
  check(existsSync(join(out, "index.js")) && existsSync(join(out, "index.js.map")), "the production bundle comes with its source map");
} finally {
  rmSync(out, { recursive: true, force: true });
}

if (failures.length) {
  console.error(`\n${failures.length} wrangler configuration check(s) failed`);
  process.exit(1);
}
console.log("\nwrangler configuration ok");
