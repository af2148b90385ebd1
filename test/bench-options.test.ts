import { describe, expect, it } from "vitest";
import { parseOptions, UsageError, warmupOf } from "../bench/bench-options.js";
import { completedRates, planRun, rateAtFraction } from "../bench/bench-runner.js";
import type { Outcome } from "../bench/load-generator.js";
import { cpuMsPerSaga } from "../bench/bench-report.js";
import { sagasEndedBetween } from "../bench/saga-analysis.js";
import type { CellResult } from "../bench/bench-results.js";

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
    expect(cells.filter((c) => c.load.kind === "open" && !c.load.ofMax)).toHaveLength(4);
  });
});

describe("npm run bench -- --warmup", () => {
  it("defaults by topology: longer for one process per service, short with --quick", () => {
    const o = parseOptions([], {});
    expect([warmupOf(o, "single"), warmupOf(o, "cluster")]).toEqual([3, 20]);
    const quick = parseOptions(["--quick"], {});
    expect([warmupOf(quick, "single"), warmupOf(quick, "cluster")]).toEqual([2, 2]);
  });

  it("takes one figure for every cell, 0 for none, and refuses the rest", () => {
    const o = parseOptions(["--warmup", "7.5"], {});
    expect([warmupOf(o, "single"), warmupOf(o, "cluster")]).toEqual([7.5, 7.5]);
    expect(warmupOf(parseOptions(["--warmup", "0"], {}), "cluster")).toBe(0);
    for (const bad of ["-1", "x", ""]) expect(() => parseOptions(["--warmup", bad], {}), bad).toThrow(UsageError);
  });
});

describe("npm run bench -- --of-max", () => {
  it("defaults to half the maximum, and to none where no closed-loop cell measures it", () => {
    expect(parseOptions([], {}).ofMax).toEqual([0.5]);
    expect(parseOptions(["--no-saturate"], {}).ofMax).toEqual([]);
    expect(parseOptions(["--quick"], {}).ofMax).toEqual([]);
    expect(parseOptions(["--of-max", "none"], {}).ofMax).toEqual([]);
    expect(parseOptions(["--of-max", "0.25, 0.8"], {}).ofMax).toEqual([0.25, 0.8]);
  });

  it("refuses what is not a fraction, and a fraction of a maximum nothing measures", () => {
    for (const bad of ["0", "1.5", "half", "0.5,"]) expect(() => parseOptions(["--of-max", bad], {}), bad).toThrow(UsageError);
    expect(() => parseOptions(["--of-max", "0.5", "--no-saturate"], {})).toThrow(/leave out --no-saturate/);
  });

  it("plans each style's cells at a fraction after the closed-loop cells that measure its maximum", async () => {
    const { cells } = await planRun(parseOptions(["--transports", "memory", "--scenarios", "happy,mixed", "--rates", "10", "--connections", "32,128", "--of-max", "0.5"], {}));
    const name = (c: (typeof cells)[number]) => `${c.mode} ${c.scenario} ${c.load.kind === "closed" ? `closed ${c.load.connections}` : c.load.ofMax ? `max×${c.load.ofMax}` : `${c.load.rate}/s`}`;
    const fractions = cells.flatMap((c, i) => (c.load.kind === "open" && c.load.ofMax ? [i] : []));
    expect(fractions.map((i) => name(cells[i]!))).toEqual(["orchestrated happy max×0.5", "choreographed happy max×0.5"]);
    const lastClosed = Math.max(...cells.flatMap((c, i) => (c.load.kind === "closed" ? [i] : [])));
    expect(Math.min(...fractions)).toBeGreaterThan(lastClosed);
  });

  it("takes the rate from the style's best client count (the median of its repetitions), on the same transport", () => {
    const closed = (mode: string, transport: string, connections: number, sps: number) =>
      ({ mode, transport, topology: transport === "memory" ? "single" : "cluster", scenario: "happy", load: { kind: "closed", connections }, throughput_sps: sps }) as unknown as CellResult;
    const done = [
      closed("orchestrated", "memory", 32, 100),
      closed("orchestrated", "memory", 32, 140),
      closed("orchestrated", "memory", 32, 120),
      closed("orchestrated", "memory", 128, 90),
      closed("choreographed", "memory", 32, 400),
      closed("orchestrated", "nats", 32, 300),
    ];
    const cell = { mode: "orchestrated", transport: "memory", topology: "single", scenario: "happy" } as const;
    expect(rateAtFraction(done, cell, 0.5)).toBe(60);
    expect(rateAtFraction(done, cell, 0.25)).toBe(30);
    expect(rateAtFraction(done, { ...cell, transport: "amqp", topology: "cluster" }, 0.5)).toBeNull();
  });
});

describe("npm run bench -- figures past their limits", () => {
  it.each([
    ["--duration", "1e9", /--duration: at most 3600 s/],
    ["--warmup", "5000", /--warmup: at most 3600 s/],
    ["--rates", "10,1e9", /--rates: at most 10000 checkouts\/s, got "1e9"/],
    ["--connections", "100000", /--connections: at most 10000 clients/],
    ["--repeat", "1000", /--repeat: at most 100 repetitions/],
    ["--port", "70000", /--port: at most 65446 \(the cells use it and the 89 ports after it\)/],
    ["--port", "65500", /--port: at most 65446/],
    ["--target", "ftp://127.0.0.1/", /--target: expected an http:\/\/ or https:\/\/ URL/],
  ])("refuses %s %s", (flag, value, message) => {
    expect(() => parseOptions([flag, value], {})).toThrow(UsageError);
    expect(() => parseOptions([flag, value], {})).toThrow(message);
  });

  it("takes each figure at its limit", () => {
    const o = parseOptions(["--duration", "3600", "--warmup", "3600", "--rates", "10000", "--connections", "10000", "--repeat", "100", "--port", "65446", "--target", "https://example.test/"], {});
    expect([o.durationS, o.warmupS, o.rates, o.connections, o.repeat, o.port]).toEqual([3600, 3600, [10_000], [10_000], 100, 65446]);
  });
});

describe("an open-loop cell's completed sagas/s", () => {
  // n checkouts due every 1000/rate ms from t = 0, each ending `latency(i)` ms after it was due
  const outcomes = (n: number, rate: number, latency: (i: number) => number): Outcome[] =>
    Array.from({ length: n }, (_, i) => {
      const due = (i * 1000) / rate;
      return { order_id: String(i), correlation_id: `c${i}`, status: i % 10 === 9 ? "cancelled" : "confirmed", due_at: due, done_at: due + latency(i), latency_ms: latency(i) };
    });

  it("is the offered rate when the system kept up", () => {
    expect(completedRates("open", outcomes(100, 10, () => 25), 10)).toEqual({ throughput_sps: 10, confirmed_sps: 9, cancelled_sps: 1 });
  });

  it("is the rate the system finished at when the load outran it, not the rate it was sent at", () => {
    // 3000/s for 5 s, finished at 250/s in arrival order: the i-th ends at i/250 s
    const r = completedRates("open", outcomes(15_000, 3000, (i) => (i * 1000) / 250 - (i * 1000) / 3000 + 30), 5);
    expect(r.throughput_sps).toBeCloseTo(250, 0);
    expect(r.confirmed_sps + r.cancelled_sps).toBeCloseTo(r.throughput_sps, 1);
  });

  it("leaves out the checkouts that never ended, and counts a closed loop over its own window", () => {
    const o = outcomes(100, 10, () => 25);
    o[0]!.status = "pending";
    expect(completedRates("open", o, 10).throughput_sps).toBe(9.9);
    expect(completedRates("closed", outcomes(3000, 300, () => 400), 10).throughput_sps).toBe(300);
  });
});

describe("a closed-loop cell's completed sagas/s", () => {
  const answered: Outcome[] = Array.from({ length: 3000 }, (_, i) => ({ order_id: String(i), correlation_id: `c${i}`, status: "confirmed", due_at: 0, done_at: i, latency_ms: 0 }));

  it("is what the system ended in the window, read from the event store, not what its clients were answered", () => {
    // 128 clients' answers miss the checkouts the warm-up left running and those still running at the end
    expect(completedRates("closed", answered, 10, { confirmed: 3100, cancelled: 28 })).toEqual({ throughput_sps: 312.8, confirmed_sps: 310, cancelled_sps: 2.8 });
    expect(completedRates("closed", answered, 10).throughput_sps).toBe(300);
  });

  it("counts the terminal events within the window, whichever request started them", () => {
    const at = (event_type: string, timestamp: number, i: number) => ({ position: i, event_type, correlation_id: `c${i}`, timestamp });
    const events = [at("OrderConfirmed", 999, 1), at("OrderConfirmed", 1000, 2), at("OrderCancelled", 1500, 3), at("PaymentProcessed", 1600, 4), at("OrderConfirmed", 10_999, 5), at("OrderConfirmed", 11_000, 6)];
    expect(sagasEndedBetween(events, 1000, 11_000)).toEqual({ confirmed: 2, cancelled: 1 });
  });

  it("divides the window's CPU by the sagas completed in it", () => {
    const cell = { load: { kind: "closed", rate: 312.8, duration_s: 10, connections: 128 }, throughput_sps: 312.8, sagas: { confirmed: 3000, cancelled: 0 }, processes: [{ name: "all", cpu_s: 6.256 }, { name: "bench (load generator)", cpu_s: 1 }] } as unknown as CellResult;
    expect(cpuMsPerSaga(cell)).toBeCloseTo(2, 6);
    const open = { ...cell, load: { kind: "open", rate: 300, duration_s: 10 } } as unknown as CellResult;
    expect(cpuMsPerSaga(open)).toBeCloseTo(6.256 / 3, 6);
  });
});
