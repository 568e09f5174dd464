// Keeps wrangler fully offline: no telemetry, no Request.cf lookup.
import { appendFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
export const offlineEnv = { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false", CI: "true" };

/** Reads KEY=value lines of a dotenv file (no quoting rules beyond optional surrounding quotes). */
export function parseDotenv(text) {
  const out = {};
  for (const line of text.split(/\r?\n/)) {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)\s*$/.exec(line);
    if (!m || line.trimStart().startsWith("#")) continue;
    out[m[1]] = m[2].replace(/^(['"])(.*)\1$/, "$2");
  }
  return out;
}

/**
 * Creates .dev.vars from .dev.vars.example, or adds the keys a newer example has that an older .dev.vars lacks
 * (wrangler refuses to start when a required secret is missing). Existing values are never changed.
 */
export function ensureDevVars() {
  const example = readFileSync(".dev.vars.example", "utf8");
  if (!existsSync(".dev.vars")) {
    writeFileSync(".dev.vars", example);
    console.log("created .dev.vars from .dev.vars.example");
    return;
  }
  const have = parseDotenv(readFileSync(".dev.vars", "utf8"));
  const missing = Object.entries(parseDotenv(example)).filter(([k]) => !(k in have));
  if (!missing.length) return;
  appendFileSync(".dev.vars", `\n# added from .dev.vars.example\n${missing.map(([k, v]) => `${k}=${v}`).join("\n")}\n`);
  console.log(`added to .dev.vars from .dev.vars.example: ${missing.map(([k]) => k).join(", ")}`);
}
