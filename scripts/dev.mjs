#!/usr/bin/env node
// `npm run dev`: local secrets, the console's bundle, local D1 migrations, then wrangler dev on :3401 (all state under .wrangler/).
import { spawn, spawnSync } from "node:child_process";
import { ensureDevVars, offlineEnv } from "./wrangler-env.mjs";

const port = process.env.PORT ?? "3401";
const persist = process.env.PERSIST_TO ?? ".wrangler/state";

ensureDevVars();

// The console (/console) is served from public/console: build it first (a second or two; SKIP_CONSOLE_BUILD=1 skips).
if (process.env.SKIP_CONSOLE_BUILD !== "1") {
  const build = spawnSync("vite", ["build", "--config", "console/vite.config.mjs"], { stdio: "inherit" });
  if (build.status !== 0) process.exit(build.status ?? 1);
}

const migrate = spawnSync("wrangler", ["d1", "migrations", "apply", "DB", "--local", "--persist-to", persist], {
  stdio: "inherit",
  env: offlineEnv,
});
if (migrate.status !== 0) process.exit(migrate.status ?? 1);

const dev = spawn("wrangler", ["dev", "--local", "--port", port, "--persist-to", persist, "--show-interactive-dev-session=false", ...process.argv.slice(2)], {
  stdio: "inherit",
  env: offlineEnv,
});
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => dev.kill(sig));
dev.on("exit", (code) => process.exit(code ?? 0));
