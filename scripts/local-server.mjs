// Starts `wrangler dev` for scripts (benchmarks, smoke checks) on its own port and state dir, and stops it.
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, readFileSync, rmSync } from "node:fs";
import { SignJWT } from "jose";
import { offlineEnv, parseDotenv } from "./wrangler-env.mjs";

export async function startServer({ port = 3411, persist = ".wrangler/bench-state", fresh = true, logLevel = "warn" } = {}) {
  if (!existsSync(".dev.vars")) copyFileSync(".dev.vars.example", ".dev.vars");
  if (fresh) rmSync(persist, { recursive: true, force: true });
  const m = spawnSync("wrangler", ["d1", "migrations", "apply", "DB", "--local", "--persist-to", persist], { env: offlineEnv, encoding: "utf8" });
  if (m.status !== 0) throw new Error(`migrations failed:\n${m.stdout}\n${m.stderr}`);
  // Own process group, so stopping it also stops workerd.
  const child = spawn("wrangler", ["dev", "--local", "--port", String(port), "--persist-to", persist, "--log-level", logLevel, "--show-interactive-dev-session=false"], {
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
    .setExpirationTime("2h")
    .sign(new TextEncoder().encode(secret));
}
