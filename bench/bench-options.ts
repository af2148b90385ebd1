import path from "node:path";
import { parseArgs } from "node:util";
import { SAGA_MODES, type SagaMode, type Transport } from "../services/shared/config.js";
import { SCENARIOS, type Scenario } from "./bench-scenarios.js";
import type { Topology } from "./system-under-test.js";

/**
 * A fresh process runs its code in V8's interpreter until each function has been called often
 * enough to be compiled. In one process that takes a second or two of load; with one process per
 * service each process sees a twelfth of the calls, and on two cores the dozen compile at once:
 * with 3 s of warm-up a NATS cell spent 15% of the machine's CPU in the compiler during its
 * measured window, with 20 s 6%.
 */
export const DEFAULT_WARMUP_S: Readonly<Record<Topology, number>> = { single: 3, cluster: 20 };

/**
 * It is the number of calls that compiles the code, not the time: an open-loop cell at 10/s
 * makes 30 checkouts in 3 s, and its measured window then ran partly uncompiled code (a p50 a
 * quarter higher and half as much CPU per saga again as after 30 s of warm-up). So an open-loop cell's
 * warm-up starts with its scenario in a closed loop of these clients, for these seconds (at most
 * the warm-up's own), before its own rate.
 */
export const WARMUP_BURST = { seconds: 3, clients: 32 } as const;

/**
 * The most each figure may be. Beyond them a value is a typo (`1e9`), not a plan: a cell of 1e9
 * seconds would overflow Node's timers (24.8 days) and end at once, and 1e9 checkouts/s would
 * queue every request of the cell in the load generator's memory before the first answer.
 */
export const LIMITS = {
  "--rates": { max: 10_000, unit: "checkouts/s" },
  "--duration": { max: 3600, unit: "s" },
  "--warmup": { max: 3600, unit: "s" },
  "--connections": { max: 10_000, unit: "clients (one socket each)" },
  "--repeat": { max: 100, unit: "repetitions" },
} as const;

/** The cells' gateways take the ports from `--port` to `--port` + 89, one per cell in turn. */
export const PORTS_PER_RUN = 90;

export const HELP = `npm run bench -- [options]

Runs the checkout saga in both styles (orchestrated, choreographed) under load and reports
latency, throughput, compensation, where the time goes and an end-state audit per cell.

The matrix
  --modes LIST          orchestrated,choreographed (default: both)
  --transports LIST     memory,nats,amqp (default: memory, plus nats and amqp when DATABASE_URL
                        is set and the broker answers at NATS_URL / AMQP_URL)
  --topology T          single (one process) or cluster (one process per service);
                        default: single for memory, cluster for the brokers
  --scenarios LIST      ${SCENARIOS.join(",")} (default: all in process; happy,mixed on brokers)
The load
  --rates LIST          open-loop arrival rates, checkouts/s, for the happy scenario; the
                        failure scenarios run at the first (default 10,20; --quick 10)
  --duration S          measured seconds per cell (default 10; --quick 5; at most ${LIMITS["--duration"].max})
  --warmup S            warm-up seconds per cell, under the cell's own load, not measured
                        (default ${DEFAULT_WARMUP_S.single} in one process, ${DEFAULT_WARMUP_S.cluster} with one process per service, whose
                        dozen processes take that long to compile their hot code; --quick 2);
                        an open-loop cell first runs its scenario for up to ${WARMUP_BURST.seconds} s in a closed
                        loop of ${WARMUP_BURST.clients} clients, since its own rate is too few checkouts to compile it
  --saturate / --no-saturate
                        add a closed-loop (autocannon) cell per style and transport on the happy
                        scenario that finds the most completed checkouts/s (default on)
  --connections LIST    closed-loop clients, one closed-loop cell per count (default 32); more
                        clients make bigger batches: 32,128 shows how far that goes
  --of-max LIST         open-loop happy cells at these fractions of each style's maximum, its
                        most completed checkouts/s in the closed-loop cells just run on the same
                        transport: the latency at a load the system can carry (default 0.5;
                        none with --quick or --no-saturate; "none" for none)
  --repeat N            repetitions of every cell, styles interleaved A/B/A/B (default 1)
The rest
  --tracing on|off      run the system with the OpenTelemetry SDK exporting to a local sink (default off)
  --out DIR             where to write results (default bench/results/<timestamp>)
  --quick               fewer, shorter cells: in process happy, closed×32 and mixed; per broker
                        the happy path at 10/s only (6 cells, plus 2 per broker)
  --keep-data           keep each cell's database (its location is in results.json)
  --cpu-prof DIR        write a V8 CPU profile of every process of every cell to DIR/cell-N/
                        (open in Chrome DevTools or speedscope)
  --target URL          load an already-running deployment instead of starting one
  --api-key KEY         its API key (or BENCH_API_KEY)
  --compare A B         compare two results.json (or their directories) cell by cell; a side
                        may list several runs of one build (A1,A2,A3); with several runs a
                        side (or --repeat), each change's p-value, "~" where the runs'
                        spread does not show it
  --port N              first gateway port for the systems started; the cells take it and the
                        ${PORTS_PER_RUN - 1} after it in turn (default 18300)
  -h, --help            this text

Environment: DATABASE_URL (a PostgreSQL server: each cell gets a fresh database on it; unset →
embedded PGlite), NATS_URL (default nats://127.0.0.1:4222), AMQP_URL (default
amqp://guest:guest@127.0.0.1:5672), BENCH_API_KEY.

Stopping: Ctrl-C finishes the running cell and writes what ran; Ctrl-C again, or SIGTERM, stops
now, removing the running system's processes, database and broker namespace, and writes the
cells that ended.`;

export interface BenchOptions {
  modes: SagaMode[];
  /** undefined: decided from what this machine has. */
  transports?: Transport[];
  topology?: Topology;
  scenarios?: Scenario[];
  rates: number[];
  durationS: number;
  /** Warm-up seconds per cell: one figure, or the defaults by topology (`warmupOf`). */
  warmupS: number | Readonly<Record<Topology, number>>;
  saturate: boolean;
  /** One closed-loop cell per count. */
  connections: number[];
  /** Open-loop cells at these fractions of each style's measured maximum (needs `saturate`). */
  ofMax: number[];
  repeat: number;
  tracing: boolean;
  out?: string;
  quick: boolean;
  keepData: boolean;
  /** Where the system's processes write CPU profiles (`--cpu-prof DIR`). */
  cpuProfDir?: string;
  target?: string;
  apiKey?: string;
  compare?: [string, string];
  port: number;
  help: boolean;
}

export class UsageError extends Error {}

function list<T extends string>(flag: string, value: string | undefined, allowed: readonly T[]): T[] | undefined {
  if (value === undefined) return undefined;
  const items = value.split(",").map((s) => s.trim()).filter(Boolean);
  const bad = items.filter((i) => !(allowed as readonly string[]).includes(i));
  if (bad.length || items.length === 0) throw new UsageError(`${flag}: unknown value(s) ${bad.join(", ") || "(none)"}; allowed: ${allowed.join(", ")}`);
  return items as T[];
}

function positive(flag: string, value: string | undefined, fallback: number, integer = false): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) throw new UsageError(`${flag}: expected a positive ${integer ? "whole " : ""}number, got "${value}"`);
  const limit = (LIMITS as Record<string, { max: number; unit: string } | undefined>)[flag];
  if (limit && n > limit.max) throw new UsageError(`${flag}: at most ${limit.max} ${limit.unit}, got "${value}"`);
  return n;
}

function port(value: string | undefined): number {
  const first = positive("--port", value, 18300, true);
  const last = 65535 - (PORTS_PER_RUN - 1);
  if (first > last) throw new UsageError(`--port: at most ${last} (the cells use it and the ${PORTS_PER_RUN - 1} ports after it), got "${value}"`);
  return first;
}

/** The warm-up of a cell on this topology. */
export function warmupOf(o: Pick<BenchOptions, "warmupS">, topology: Topology): number {
  return typeof o.warmupS === "number" ? o.warmupS : o.warmupS[topology];
}

export function parseOptions(argv: string[], env: NodeJS.ProcessEnv = process.env): BenchOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        modes: { type: "string" },
        transports: { type: "string" },
        topology: { type: "string" },
        scenarios: { type: "string" },
        rates: { type: "string" },
        duration: { type: "string" },
        warmup: { type: "string" },
        saturate: { type: "boolean" },
        "no-saturate": { type: "boolean" },
        connections: { type: "string" },
        "of-max": { type: "string" },
        repeat: { type: "string" },
        tracing: { type: "string" },
        out: { type: "string" },
        quick: { type: "boolean" },
        "keep-data": { type: "boolean" },
        "cpu-prof": { type: "string" },
        target: { type: "string" },
        "api-key": { type: "string" },
        compare: { type: "boolean" },
        port: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const v = parsed.values;
  const quick = v.quick ?? false;
  let compare: [string, string] | undefined;
  if (v.compare) {
    if (parsed.positionals.length !== 2) throw new UsageError("--compare needs two results: --compare A/results.json B/results.json (a side may list several runs: A1,A2 B1,B2)");
    compare = [parsed.positionals[0], parsed.positionals[1]];
  } else if (parsed.positionals.length > 0) {
    throw new UsageError(`unexpected argument(s): ${parsed.positionals.join(" ")}`);
  }
  const topology = v.topology === undefined ? undefined : list("--topology", v.topology, ["single", "cluster"] as const)![0];
  if (v.tracing !== undefined && v.tracing !== "on" && v.tracing !== "off") throw new UsageError(`--tracing: expected on or off, got "${v.tracing}"`);
  const rates = v.rates?.split(",").map((r) => positive("--rates", r.trim(), 1)) ?? (quick ? [10] : [10, 20]);
  const saturate = v["no-saturate"] ? false : (v.saturate ?? true);
  const ofMax =
    v["of-max"] === undefined
      ? saturate && !quick
        ? [0.5]
        : []
      : v["of-max"].trim() === "none"
        ? []
        : v["of-max"].split(",").map((x) => {
            const f = positive("--of-max", x.trim(), 0.5);
            if (f > 1) throw new UsageError(`--of-max: a fraction of the maximum is at most 1, got "${x.trim()}"`);
            return f;
          });
  if (ofMax.length > 0 && !saturate) throw new UsageError("--of-max needs the closed-loop cells that measure the maximum: leave out --no-saturate");
  if (v.target !== undefined) {
    try {
      new URL(v.target);
    } catch {
      throw new UsageError(`--target: not a URL: "${v.target}"`);
    }
    if (!/^https?:$/.test(new URL(v.target).protocol)) throw new UsageError(`--target: expected an http:// or https:// URL, got "${v.target}"`);
  }
  return {
    modes: list("--modes", v.modes, SAGA_MODES) ?? [...SAGA_MODES],
    transports: list("--transports", v.transports, ["memory", "nats", "amqp"] as const),
    topology,
    scenarios: list("--scenarios", v.scenarios, SCENARIOS),
    rates,
    durationS: positive("--duration", v.duration, quick ? 5 : 10),
    warmupS: v.warmup === "0" ? 0 : v.warmup !== undefined ? positive("--warmup", v.warmup, 0) : quick ? 2 : DEFAULT_WARMUP_S,
    saturate,
    connections: v.connections?.split(",").map((c) => positive("--connections", c.trim(), 32, true)) ?? [32],
    ofMax,
    repeat: positive("--repeat", v.repeat, 1, true),
    tracing: v.tracing === "on",
    out: v.out,
    quick,
    keepData: v["keep-data"] ?? false,
    cpuProfDir: v["cpu-prof"] === undefined ? undefined : path.resolve(v["cpu-prof"]),
    target: v.target,
    apiKey: v["api-key"] ?? env.BENCH_API_KEY,
    compare,
    port: port(v.port),
    help: v.help ?? false,
  };
}
