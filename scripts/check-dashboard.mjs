// Checks that every PromQL expression of monitoring/grafana-dashboard.json parses, with promtool (part of
// `npm run check:alerts`): each expression becomes a recording rule in a throwaway rules file.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dashboard = JSON.parse(readFileSync(new URL("../monitoring/grafana-dashboard.json", import.meta.url), "utf8"));
// Grafana's built-in interval variables, replaced by what Grafana would put there.
const grafanaVars = { $__rate_interval: "5m", $__interval: "1m", $__range: "24h" };
const rules = [];
for (const panel of dashboard.panels ?? []) {
  for (const target of panel.targets ?? []) {
    let expr = target.expr ?? "";
    for (const [name, value] of Object.entries(grafanaVars)) expr = expr.replaceAll(name, value);
    rules.push({ record: `dashboard:panel_${panel.id}:${target.refId}`, expr });
  }
}
if (rules.length === 0) {
  console.error("grafana-dashboard.json has no panel expressions");
  process.exit(1);
}
const dir = mkdtempSync(join(tmpdir(), "dashboard-promql-"));
try {
  const file = join(dir, "dashboard-rules.yml");
  // JSON is YAML: promtool reads it as a rules file.
  writeFileSync(file, JSON.stringify({ groups: [{ name: "grafana_dashboard", rules }] }, null, 2));
  execFileSync("promtool", ["check", "rules", file], { stdio: "inherit" });
  console.log(`${rules.length} dashboard expressions parse`);
} catch {
  console.error("a dashboard expression does not parse (see promtool's message above)");
  process.exitCode = 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
