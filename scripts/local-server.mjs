// Starts `wrangler dev` for scripts (benchmarks, smoke checks) on its own port and state dir, and stops it.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { SignJWT } from "jose";
import { ensureDevVars, offlineEnv, parseDotenv } from "./wrangler-env.mjs";

export async function startServer({ port = 3411, persist = ".wrangler/bench-state", fresh = true, logLevel = "warn", inspectorPort, vars = {} } = {}) {
  ensureDevVars();
  if (fresh) rmSync(persist, { recursive: true, force: true });
  const m = spawnSync("wrangler", ["d1", "migrations", "apply", "DB", "--local", "--persist-to", persist], { env: offlineEnv, encoding: "utf8" });
  if (m.status !== 0) throw new Error(`migrations failed:\n${m.stdout}\n${m.stderr}`);
  // Own process group, so stopping it also stops workerd.
  const child = spawn("wrangler", ["dev", "--local", "--port", String(port), "--persist-to", persist, "--log-level", logLevel, "--show-interactive-dev-session=false", ...(inspectorPort ? ["--inspector-port", String(inspectorPort)] : []), ...Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}:${v}`])], {
    env: offlineEnv,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const r = await fetch(`${base}/health/live`);
      if (r.ok) break;
    } catch {}
    if (Date.now() > deadline || child.exitCode !== null) {
      stop(child);
      throw new Error(`wrangler dev did not come up:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { base, stop: () => stop(child), output: () => output };
}

function stop(child) {
  try {
    process.kill(-child.pid, "SIGTERM");
  } catch {}
}

export async function localToken(role = "admin") {
  const secret = parseDotenv(readFileSync(".dev.vars", "utf8")).JWT_SECRET;
  const config = readFileSync("wrangler.toml", "utf8");
  return new SignJWT({ role })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(`script-${role}`)
    .setIssuer(/JWT_ISSUER\s*=\s*"([^"]+)"/.exec(config)[1])
    .setAudience(/JWT_AUDIENCE\s*=\s*"([^"]+)"/.exec(config)[1])
    .setIssuedAt()
    .setExpirationTime("2h")
    .sign(new TextEncoder().encode(secret));
}

/**
 * Starts the bundled worker in workerd through Miniflare, with the worker's own socket exposed directly.
 * `wrangler dev` puts a proxy worker, Miniflare's dev entry worker and the inspector in front of every
 * request; on a 2-core machine those layers cost more than the worker itself (a worker that only
 * returns "ok" answers at p99 ≈ 66 ms through wrangler dev, ≈ 4 ms on its direct socket). Benchmarks
 * measure the worker, as Cloudflare runs it, so they use this.
 *
 * storage "memory" (the default) keeps D1/Durable Object files on tmpfs: local workerd fsyncs every SQLite
 * commit on its only thread, so on disk the figures measure this machine's disk flush (≈0.5 ms a commit here),
 * which Cloudflare's replicated storage does not do on the isolate. storage "disk" measures it anyway.
 */
export async function startWorkerd({ port = 3415, storage = "memory", logs = false, inspectorPort } = {}) {
  ensureDevVars();
  const outdir = ".wrangler/bench-dist";
  const build = spawnSync(process.execPath, [resolve("node_modules/wrangler/bin/wrangler.js"), "deploy", "--dry-run", "--outdir", outdir], { env: offlineEnv, encoding: "utf8" });
  if (build.status !== 0) throw new Error(`bundling failed:\n${build.stdout}\n${build.stderr}`);
  const { Miniflare, convertV4MiniflareOptions } = await import("miniflare");
  const { unstable_getMiniflareWorkerOptions, unstable_splitSqlQuery } = await import("wrangler");
  const { workerOptions } = unstable_getMiniflareWorkerOptions("wrangler.toml");
  delete workerOptions.modulesRules; // the bundle is one module
  // As Cloudflare runs it: production's LIMITS is empty, so no per-invocation counting wrapper and no "invocation"
  // log line per request (development's `enforce` costs CPU on every request). BENCH_LIMITS=enforce|count measures it.
  workerOptions.bindings = { ...workerOptions.bindings, LIMITS: process.env.BENCH_LIMITS ?? "" };
  // Miniflare points a worker's direct socket at its local asset router when the worker has [assets]: two more JS
  // workers (an RPC proxy and the router) on workerd's one thread in front of every request, which on Cloudflare are
  // the platform's, not the worker's isolate. They cost more than a no-op request (GET /health/live: 3,187 req/s,
  // p99 58 ms with them, 8,527 req/s, p99 22 ms without, 2026-12-01). So the socket gets the worker itself, and the
  // ASSETS binding a sibling worker that only serves ./public (what `env.ASSETS.fetch` reaches on Cloudflare).
  // BENCH_ASSET_ROUTER=1 keeps Miniflare's router in front, to measure it.
  const { assets, ...userOptions } = workerOptions;
  const assetRouter = process.env.BENCH_ASSET_ROUTER === "1" || !assets; // no [assets]: nothing to route around
  const assetWorker = assetRouter ? null : {
    name: "billing-engine-assets",
    modules: true,
    script: "export default { fetch: () => new Response(null, { status: 404 }) };",
    compatibilityDate: workerOptions.compatibilityDate,
    assets: { ...assets, binding: undefined, run_worker_first: false, routerConfig: { has_user_worker: false } },
  };
  const root = storage === "disk" || !existsSync("/dev/shm") ? ".wrangler" : "/dev/shm";
  const stateDir = mkdtempSync(join(root, "billing-bench-"));
  const mf = new Miniflare({
    ...convertV4MiniflareOptions({
      host: "127.0.0.1",
      port: 0,
      logRequests: false,
      ...(inspectorPort ? { inspectorPort } : {}),
      // Request logs are still written by the worker (their cost is measured), then dropped here.
      handleStructuredLogs: logs ? undefined : () => {},
      workers: assetRouter
        ? [{ ...workerOptions, name: "billing-engine", modules: true, scriptPath: resolve(outdir, "index.js"), unsafeDirectSockets: [{ host: "127.0.0.1", port }] }]
        : [
            { ...userOptions, name: "billing-engine", modules: true, scriptPath: resolve(outdir, "index.js"), serviceBindings: { ...userOptions.serviceBindings, [assets.binding]: assetWorker.name }, unsafeDirectSockets: [{ host: "127.0.0.1", port }] },
            assetWorker,
          ],
    }),
    resourcePersistencePath: stateDir,
  });
  await mf.ready;
  const db = await mf.getD1Database("DB");
  for (const file of readdirSync("migrations").filter((f) => f.endsWith(".sql")).sort()) {
    await db.batch(unstable_splitSqlQuery(readFileSync(`migrations/${file}`, "utf8")).map((sql) => db.prepare(sql)));
  }
  return {
    base: `http://127.0.0.1:${port}`,
    storage: root === "/dev/shm" ? "tmpfs (/dev/shm)" : `disk (${root})`,
    stop: async () => {
      await mf.dispose();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}
