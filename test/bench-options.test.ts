import { describe, expect, it } from "vitest";
import { parseOptions, UsageError } from "../bench/bench-options.js";
import { planRun } from "../bench/bench-runner.js";

/** The bench's command line, and the cells it plans from it (no system is started). */

describe("npm run bench -- --connections", () => {
  it("defaults to one closed-loop cell of 32 clients", () => {
    expect(parseOptions([], {}).connections).toEqual([32]);
  });

  it("takes a list, and refuses what is not a positive whole number", () => {
    expect(parseOptions(["--connections", "32, 128"], {}).connections).toEqual([32, 128]);
    for (const bad of ["0", "32,x", "1.5", "32,"]) {
      expect(() => parseOptions(["--connections", bad], {}), bad).toThrow(UsageError);
    }
  });

  it("plans one closed-loop cell per count, per style, on the happy path only", async () => {
    const o = parseOptions(["--transports", "memory", "--scenarios", "happy,mixed", "--rates", "10", "--connections", "32,128"], {});
    const { cells } = await planRun(o);
    const closed = cells.filter((c) => c.load.kind === "closed").map((c) => `${c.mode} ${c.scenario} ${c.load.kind === "closed" ? c.load.connections : ""}`);
    expect(closed.sort()).toEqual(["choreographed happy 128", "choreographed happy 32", "orchestrated happy 128", "orchestrated happy 32"]);
    expect(cells.filter((c) => c.load.kind === "open")).toHaveLength(4);
  });
});
