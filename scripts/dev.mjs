#!/usr/bin/env node
// `npm run dev`: local secrets, local D1 migrations, then wrangler dev on :3401 (all state under .wrangler/).
// Migrations print one line (their tables only on failure); once the server answers, a banner says where things are.
import { spawn, spawnSync } from "node:child_process";
import { ensureDevVars, offlineEnv } from "./wrangler-env.mjs";

const port = process.env.PORT ?? "3401";
const persist = process.env.PERSIST_TO ?? ".wrangler/state";

ensureDevVars();

const migrate = spawnSync("wrangler", ["d1", "migrations", "apply", "DB", "--local", "--persist-to", persist], { env: offlineEnv, encoding: "utf8" });
if (migrate.status !== 0) {
  process.stdout.write(migrate.stdout ?? "");
  process.stderr.write(migrate.stderr ?? "");
  process.exit(migrate.status ?? 1);
}
const applied = [...(migrate.stdout ?? "").matchAll(/│\s*(\d{4}_[\w-]+\.sql)\s*│\s*✅/g)].map((m) => m[1]);
console.log(applied.length ? `D1 (local, ${persist}): applied ${applied.length} migration(s), last ${applied.at(-1)}` : `D1 (local, ${persist}): migrations up to date`);

const dev = spawn("wrangler", ["dev", "--local", "--port", port, "--persist-to", persist, "--show-interactive-dev-session=false", ...process.argv.slice(2)], {
  stdio: "inherit",
  env: offlineEnv,
});
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => dev.kill(sig));
dev.on("exit", (code) => process.exit(code ?? 0));

// The banner, once /health/live answers (wrangler's own "Ready on" line scrolls away under request logs).
const base = `http://localhost:${port}`;
for (let i = 0; i < 240 && dev.exitCode === null; i++) {
  try {
    if ((await fetch(`${base}/health/live`)).ok) {
      console.log(
        [
          "",
          `  Billing engine ready on ${base}`,
          `  API reference   ${base}/docs          (OpenAPI document: ${base}/openapi.json)`,
          `  Console         ${base}/console`,
          `  A token         export ADMIN_TOKEN=$(npm run -s token -- admin)     # roles: admin, finance, support, viewer`,
          `  Guides          README.md and docs/`,
          "",
        ].join("\n"),
      );
      break;
    }
  } catch {}
  await new Promise((r) => setTimeout(r, 500));
}
