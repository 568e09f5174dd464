// npm run lint:openapi: the served /openapi.json must pass Spectral (spectral:oas, .spectral.yaml) and Redocly
// (recommended, redocly.yaml) with zero errors and zero warnings.
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { openApiDocument } from "./openapi-dump.mjs";

const file = "artifacts/openapi.json";
mkdirSync("artifacts", { recursive: true });
writeFileSync(file, `${JSON.stringify(await openApiDocument(), null, 2)}\n`);

const run = (cmd, args) => spawnSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
let failed = false;

// Spectral: every finding (warnings and hints included) fails the check.
const spectral = run("spectral", ["lint", file, "--ruleset", ".spectral.yaml", "--fail-severity", "hint", "--format", "text"]);
process.stdout.write(spectral.stdout);
if (spectral.status !== 0) {
  failed = true;
  process.stderr.write(spectral.stderr);
  console.log("spectral: findings above");
} else console.log("spectral: 0 errors, 0 warnings");

// Redocly exits 0 on warnings: count them from its JSON report.
const redoclyReport = "artifacts/redocly-report.json";
const redocly = run("redocly", ["lint", file, "--config", "redocly.yaml", "--format", "json", "--max-problems", "1000"]);
writeFileSync(redoclyReport, redocly.stdout);
let problems;
try {
  problems = JSON.parse(redocly.stdout).problems ?? [];
} catch {
  failed = true;
  problems = [];
  process.stderr.write(redocly.stdout + redocly.stderr);
  console.log("redocly: no JSON report");
}
for (const p of problems) console.log(`redocly ${p.severity} ${p.ruleId}: ${p.message} (${p.location?.[0]?.pointer ?? ""})`);
if (problems.length) failed = true;
const count = (s) => problems.filter((p) => p.severity === s).length;
console.log(`redocly: ${count("error")} errors, ${count("warn")} warnings`);
process.exit(failed ? 1 : 0);
