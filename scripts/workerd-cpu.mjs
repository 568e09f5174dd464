// CPU time of the workerd processes a bench script started, for the benches that report cost per request.
import { readdirSync, readFileSync } from "node:fs";

/**
 * CPU time (ms) the workerd processes started by this process have used: a runtime's cost per request can be read
 * from it whatever else loads the machine (wall-clock rates cannot). Linux /proc only (10 ms ticks); null elsewhere,
 * or when no such process runs.
 */
export function workerdCpuMs() {
  try {
    const tick = 100; // USER_HZ on Linux
    let total = 0;
    let found = false;
    for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
      let stat;
      try {
        stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      } catch {
        continue;
      }
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (comm !== "workerd" || Number(fields[1]) !== process.pid) continue;
      found = true;
      total += ((Number(fields[11]) + Number(fields[12])) * 1000) / tick;
    }
    return found ? total : null;
  } catch {
    return null;
  }
}
