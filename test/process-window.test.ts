import fs from "node:fs";
import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { processesBetween, readThreadSched, type ProcessStats } from "../bench/process-stats.js";

/**
 * The bench reports, per process, what the scheduler did with its main thread over the measured
 * window: on a core, waiting for one, preempted. Linux keeps these in /proc.
 */

const linux = fs.existsSync("/proc/self/task");

describe("a process's main thread over a window", () => {
  it.skipIf(!linux)("counts the time it ran on a core", async () => {
    // a child that spins until its own CPU reaches 600 ms (however busy the machine), then
    // reports and waits to be read
    const child = spawn(process.execPath, ["-e", "while (process.cpuUsage().user < 600_000); console.log('done'); setTimeout(() => {}, 10000);"]);
    try {
      const before = readThreadSched(child.pid!);
      expect(before).toBeDefined();
      await new Promise<void>((resolve) => child.stdout.once("data", () => resolve()));
      const after = readThreadSched(child.pid!)!;
      expect(after.run_s - before!.run_s).toBeGreaterThan(0.3);
      expect(after.wait_s).toBeGreaterThanOrEqual(before!.wait_s);
      expect(after.preempted).toBeGreaterThanOrEqual(before!.preempted);
    } finally {
      child.kill();
    }
  });

  it("gives shares of the window and preemptions per second, and nothing where /proc gave nothing", () => {
    const before: ProcessStats[] = [
      { name: "all", pid: 1, cpu_s: 10, peak_rss_mb: 100, thread: { run_s: 5, wait_s: 1, preempted: 1000 } },
      { name: "bench (load generator)", pid: 2, cpu_s: 1, peak_rss_mb: 50 },
    ];
    const after: ProcessStats[] = [
      { name: "all", pid: 1, cpu_s: 18, peak_rss_mb: 120, thread: { run_s: 11.5, wait_s: 3.5, preempted: 9000 } },
      { name: "bench (load generator)", pid: 2, cpu_s: 1.5, peak_rss_mb: 55 },
    ];
    expect(processesBetween(before, after, 10)).toEqual([
      { name: "all", cpu_s: 8, peak_rss_mb: 120, main_thread: { running: 0.65, waiting: 0.25, preempted_per_s: 800 } },
      { name: "bench (load generator)", cpu_s: 0.5, peak_rss_mb: 55 },
    ]);
  });

  it.skipIf(!linux)("reads nothing for a process that is gone", () => {
    expect(readThreadSched(2 ** 22 + 12345)).toBeUndefined();
  });
});
