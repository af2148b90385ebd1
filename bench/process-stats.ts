import fs from "node:fs";
import { execFileSync } from "node:child_process";

export interface ProcessStats {
  name: string;
  pid: number;
  /** User + system CPU seconds since the process started. */
  cpu_s: number;
  /** Peak resident set size (VmHWM), MB. */
  peak_rss_mb: number;
}

let ticks: number | undefined;
function clockTicks(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

/** Reads /proc/<pid>/stat and status (Linux); zeros where /proc is not there. */
export function readProcessStats(name: string, pid: number): ProcessStats {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    // the command name (field 2) may hold spaces: count fields after its closing parenthesis
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const cpu = (Number(fields[11]) + Number(fields[12])) / clockTicks();
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0);
    return { name, pid, cpu_s: cpu, peak_rss_mb: Math.round((hwm / 1024) * 10) / 10 };
  } catch {
    return { name, pid, cpu_s: 0, peak_rss_mb: 0 };
  }
}

/** This process's own figures, from Node (the load generator). */
export function ownStats(name: string): ProcessStats {
  const u = process.cpuUsage();
  return { name, pid: process.pid, cpu_s: (u.user + u.system) / 1e6, peak_rss_mb: Math.round((process.resourceUsage().maxRSS / 1024) * 10) / 10 };
}
