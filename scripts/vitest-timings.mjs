// A vitest reporter for finding where test time goes: per file, vitest's setup/collect/test durations and the CPU the
// file's workerd runtime spent (exact when one file runs at a time, the default on 2 cores). Usage:
//   TIMINGS_OUT=artifacts/timings.json npx vitest run --reporter=./scripts/vitest-timings.mjs --reporter=dot
//   node scripts/vitest-timings.mjs artifacts/timings.json     (prints the files by workerd CPU)
import fs from "node:fs";
const TICK = 10; // ms per clock tick
function descendants(root) {
  const kids = new Map();
  for (const d of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = fs.readFileSync(`/proc/${d}/stat`, "utf8");
      const rest = s.slice(s.lastIndexOf(")") + 2).split(" ");
      const name = s.slice(s.indexOf("(") + 1, s.lastIndexOf(")"));
      const ppid = Number(rest[1]);
      (kids.get(ppid) ?? kids.set(ppid, []).get(ppid)).push({ pid: Number(d), name, ticks: Number(rest[11]) + Number(rest[12]) });
    } catch {}
  }
  const out = [];
  const walk = (p) => { for (const k of kids.get(p) ?? []) { out.push(k); walk(k.pid); } };
  walk(root);
  return out;
}
const seen = new Map(); // pid -> last ticks, so exited runtimes still count
function workerdTotal() {
  for (const p of descendants(process.pid)) if (p.name === "workerd") seen.set(p.pid, p.ticks * TICK);
  let t = 0; for (const v of seen.values()) t += v; return t;
}
export default class TimingReporter {
  starts = new Map(); cpu = new Map(); t0 = Date.now(); at = new Map();
  onTestModuleStart(m) { this.starts.set(m.moduleId, workerdTotal()); this.at.set(m.moduleId, { startMs: Date.now() - this.t0 }); }
  onTestModuleEnd(m) { this.cpu.set(m.moduleId, workerdTotal() - (this.starts.get(m.moduleId) ?? 0)); Object.assign(this.at.get(m.moduleId) ?? {}, { endMs: Date.now() - this.t0 }); }
  onTestRunEnd(testModules) {
    const rows = testModules.map((m) => {
      const d = m.diagnostic();
      return { file: m.moduleId.replace(`${process.cwd()}/`, ""), project: m.project.name, setup: d.setupDuration, collect: d.collectDuration, prepare: d.prepareDuration, duration: d.duration, workerdCpu: this.cpu.get(m.moduleId), ...this.at.get(m.moduleId), tests: [...m.children.allTests()].map((t) => ({ name: t.fullName, ms: t.diagnostic()?.duration })) };
    });
    const main = process.cpuUsage();
    fs.writeFileSync(process.env.TIMINGS_OUT || "artifacts/timings.json", JSON.stringify({ wallMs: Date.now() - this.t0, mainCpuMs: (main.user + main.system) / 1000, workerdCpuMs: workerdTotal(), rows }, null, 1));
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const j = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const r0 = (x) => String(Math.round(x ?? 0)).padStart(7);
  console.log("  setup collect    test  wdCPU (ms) project file");
  for (const r of j.rows.sort((a, b) => (b.workerdCpu ?? 0) - (a.workerdCpu ?? 0))) console.log(r0(r.setup), r0(r.collect), r0(r.duration), r0(r.workerdCpu), r.project, r.file);
  console.log(`main process CPU ${Math.round(j.mainCpuMs)} ms, workerd CPU ${Math.round(j.workerdCpuMs)} ms`);
}
