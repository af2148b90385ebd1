import fs from "node:fs";
import { randomBytes } from "node:crypto";
import os from "node:os";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import type * as hdr from "hdr-histogram-js";
import type { SagaMode, Transport } from "../services/shared/config.js";
import { needsSystemFaults, scenarioEnv, SCENARIOS, SEEDED_STOCK, type Scenario } from "./bench-scenarios.js";
import { cellKey, ofMaxLabel, type BenchResults, type CellResult, type FloorResult, type Percentiles } from "./bench-results.js";
import { PORTS_PER_RUN, WARMUP_BURST, warmupOf, type BenchOptions } from "./bench-options.js";
import { auditCheckouts, type AuditResult } from "./end-state-audit.js";
import { measureDatabaseFloor, measureTransportFloor } from "./floor.js";
import { getJson, newHistogram, openLoop, saturate, type LoadResult, type Outcome, type Target } from "./load-generator.js";
import { OtlpSink } from "./otlp-sink.js";
import { backendCpuBetween, brokerCpuBetween, ownStats, processesBetween, readBrokerCpu, walBetween, type BackendCpu, type BrokerCpu, type ProcessStats } from "./process-stats.js";
import { ProgressDisplay } from "./progress-display.js";
import { reachable } from "./reachable.js";
import { analyseSagas, median, sagasEndedBetween, type SagaEvent } from "./saga-analysis.js";
import { describeStage, readSystemCounters, stagesBetween, statementsBetween, type ConsumerStage } from "./consumer-stages.js";
import { SystemUnderTest, type Topology } from "./system-under-test.js";

const distDir = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const repoDir = path.dirname(distDir);
export const OTEL_SDK = path.join(distDir, "observability", "otel-sdk.js");

const NATS_URL = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
const AMQP_URL = process.env.AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672";
const FAULT_SEED = "bench-42";
/** How long after the last request a cell waits for its sagas to end. */
const DRAIN_S = 30;

interface CellPlan {
  mode: SagaMode;
  transport: Transport;
  topology: Topology;
  scenario: Scenario;
  /** `ofMax`: the rate is that fraction of the style's maximum, known once its closed-loop cells have run. */
  load: { kind: "open"; rate: number; ofMax?: number } | { kind: "closed"; connections: number };
  repeat: number;
}

/**
 * The rate of an open-loop cell at `fraction` of its style's maximum: the most completed
 * sagas/s of the closed-loop cells already run for the same style, transport and scenario (the
 * median of each client count's repetitions, then the best count). Null when none completed.
 */
export function rateAtFraction(done: readonly CellResult[], cell: Pick<CellPlan, "mode" | "transport" | "topology" | "scenario">, fraction: number): number | null {
  const byCount = new Map<number, number[]>();
  for (const c of done) {
    if (c.load.kind !== "closed" || c.mode !== cell.mode || c.transport !== cell.transport || c.topology !== cell.topology || c.scenario !== cell.scenario) continue;
    byCount.set(c.load.connections ?? 0, [...(byCount.get(c.load.connections ?? 0) ?? []), c.throughput_sps]);
  }
  const medians = [...byCount.values()].map(median);
  const most = Math.max(0, ...medians);
  return most > 0 ? Math.max(0.1, Math.round(most * fraction * 10) / 10) : null;
}

const loadText = (load: CellPlan["load"]) =>
  load.kind === "closed" ? `closed×${load.connections}` : `${load.rate}/s${load.ofMax ? ` (${ofMaxLabel({ of_max: load.ofMax })})` : ""}`;

export interface Plan {
  cells: CellPlan[];
  skipped: { what: string; why: string }[];
  transportUrl: Partial<Record<Transport, string>>;
  databaseUrl?: string;
}

/** Which cells this machine can run, and what is skipped and why. */
export async function planRun(o: BenchOptions): Promise<Plan> {
  const skipped: Plan["skipped"] = [];
  const databaseUrl = process.env.DATABASE_URL || undefined;
  const wanted: Transport[] = o.transports ?? ["memory", "nats", "amqp"];
  const transports: Transport[] = [];
  const transportUrl: Plan["transportUrl"] = {};
  for (const t of wanted) {
    if (t === "memory") {
      transports.push(t);
      continue;
    }
    const url = t === "nats" ? NATS_URL : AMQP_URL;
    const topology = o.topology ?? "cluster";
    if (topology === "cluster" && !databaseUrl) {
      skipped.push({ what: `${t} (one process per service)`, why: "no DATABASE_URL: the processes need a PostgreSQL server to share (embedded PGlite serves one process)" });
      continue;
    }
    if (!(await reachable(url))) {
      skipped.push({ what: t, why: `no broker answers at ${url.replace(/\/\/[^@/]*@/, "//…@")} (set ${t === "nats" ? "NATS_URL" : "AMQP_URL"})` });
      continue;
    }
    transports.push(t);
    transportUrl[t] = url;
  }
  const cells: CellPlan[] = [];
  for (const transport of transports) {
    const topology: Topology = o.topology ?? (transport === "memory" ? "single" : "cluster");
    const scenarios = o.scenarios ?? (o.quick ? (transport === "memory" ? ["happy", "mixed"] : ["happy"]) : transport === "memory" ? [...SCENARIOS] : ["happy", "mixed"]);
    const loads: CellPlan["load"][] = [];
    for (const scenario of scenarios) {
      // the load curve on the happy path; the failure mixes at the first rate
      for (const rate of scenario === "happy" ? o.rates : o.rates.slice(0, 1)) loads.push({ kind: "open", rate });
      // --quick measures no broker's saturation: a smoke test of the path, not its ceiling
      if (o.saturate && scenario === "happy" && !(o.quick && transport !== "memory")) {
        for (const connections of o.connections) loads.push({ kind: "closed", connections });
        // after the closed-loop cells, which measure the maximum they are a fraction of
        for (const ofMax of o.ofMax) loads.push({ kind: "open", rate: 0, ofMax });
      }
      // styles interleaved A/B/A/B, every repetition of a cell next to the other style's
      for (const load of loads.splice(0)) {
        for (let repeat = 1; repeat <= o.repeat; repeat++) {
          for (const mode of o.modes) cells.push({ mode, transport, topology, scenario: scenario as Scenario, load, repeat });
        }
      }
    }
  }
  return { cells, skipped, transportUrl, databaseUrl };
}

function percentiles(h: hdr.Histogram): Percentiles {
  const ms = (us: number) => Math.round(us / 10) / 100;
  if (h.totalCount === 0) return { p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };
  return {
    p50: ms(h.getValueAtPercentile(50)),
    p90: ms(h.getValueAtPercentile(90)),
    p99: ms(h.getValueAtPercentile(99)),
    p999: ms(h.getValueAtPercentile(99.9)),
    max: ms(h.maxValue),
  };
}

function compensationPercentiles(xs: number[]): { p50: number; p99: number } | null {
  if (xs.length === 0) return null;
  const h = newHistogram();
  for (const x of xs) h.recordValue(Math.max(1, Math.round(x * 1000)));
  const p = percentiles(h);
  return { p50: p.p50, p99: p.p99 };
}

/** Waits until the read model shows no checkout pending (or the drain time passes). */
async function drain(target: Target, seconds: number): Promise<void> {
  const until = Date.now() + seconds * 1000;
  while (Date.now() < until) {
    const { body } = await getJson<{ by_status?: { pending?: number } }>(target, "/cqrs/queries/statistics/orders").catch(() => ({ body: {} as { by_status?: { pending?: number } } }));
    if (body.by_status?.pending === 0) return;
    await new Promise((r) => setTimeout(r, 250));
  }
}

interface Measured {
  load: LoadResult;
  warmOutcomes: Outcome[];
  warmup: { burst: number; own: number };
  processes: CellResult["processes"];
  database_cpu_s: number | null;
  broker_cpu_s: number | null;
  stages: ConsumerStage[] | null;
  db_statements: number | null;
  db_wal_bytes: number | null;
  /** Wall-clock ms when the measured window began. */
  window_start_ms: number;
}

async function applyLoad(
  cell: CellPlan,
  target: Target,
  o: BenchOptions,
  progress: ProgressDisplay,
  label: string,
  statsOf: () => ProcessStats[],
  backendCpuOf: () => Promise<BackendCpu | null> = async () => null,
  walOf: () => Promise<number | null> = async () => null,
  brokerCpuOf: () => BrokerCpu | null = () => null,
): Promise<Measured> {
  let warmOutcomes: Outcome[] = [];
  const warmup = { burst: 0, own: 0 };
  let firstIndex = 0;
  const runId = `bench-${randomBytes(4).toString("hex")}`;
  const warmupS = warmupOf(o, cell.topology);
  if (warmupS > 0) {
    const onWarm = (p: { done: number; histogram: hdr.Histogram }) => progress.update(p.done, p.histogram.getValueAtPercentile(50) / 1000);
    // A cell warms up under its own load: a closed-loop cell under the same clients, so that
    // its measured window starts with the code paths of that load compiled (a fresh process's
    // JIT) rather than spending its first seconds compiling them. An open-loop cell's own rate
    // is too few checkouts for that (3 s at 10/s is 30, and the JIT wants hundreds), so it runs
    // its scenario in a closed loop first (WARMUP_BURST), then its own rate, which settles the
    // batches and the consumers' linger at its load.
    if (cell.load.kind === "open") {
      progress.start(label, "warm-up burst");
      const burst = await saturate({
        target,
        scenario: cell.scenario,
        durationS: Math.min(WARMUP_BURST.seconds, warmupS),
        connections: WARMUP_BURST.clients,
        firstIndex,
        onProgress: onWarm,
      });
      progress.start(label, "warm-up ");
      const own = await openLoop({
        target,
        runId: `${runId}-w`,
        scenario: cell.scenario,
        rate: cell.load.rate,
        durationS: warmupS,
        firstIndex: burst.next_index,
        drainS: DRAIN_S,
        onProgress: onWarm,
      });
      warmOutcomes = [...burst.outcomes, ...own.outcomes];
      warmup.burst = burst.outcomes.length;
      warmup.own = own.outcomes.length;
      firstIndex = own.next_index;
    } else {
      progress.start(label, "warm-up ");
      const warm = await saturate({ target, scenario: cell.scenario, durationS: warmupS, connections: cell.load.connections, firstIndex, onProgress: onWarm });
      warmOutcomes = warm.outcomes;
      warmup.own = warm.outcomes.length;
      firstIndex = warm.next_index;
    }
  }
  // a failed reading leaves the database's CPU unmeasured, not the cell
  const databaseBefore = await backendCpuOf().catch(() => null);
  const walBefore = await walOf().catch(() => null);
  const brokerBefore = brokerCpuOf();
  const before = [...statsOf(), ownStats("bench (load generator)")];
  const countersBefore = await readSystemCounters(target).catch(() => null);
  const windowStart = performance.now();
  const windowStartMs = Date.now();
  progress.start(label, "measured");
  const onProgress = (p: { done: number; histogram: hdr.Histogram }) => progress.update(p.done, p.histogram.getValueAtPercentile(50) / 1000);
  const load =
    cell.load.kind === "open"
      ? await openLoop({ target, runId, scenario: cell.scenario, rate: cell.load.rate, durationS: o.durationS, firstIndex, drainS: DRAIN_S, onProgress })
      : await saturate({ target, scenario: cell.scenario, durationS: o.durationS, connections: cell.load.connections, firstIndex, onProgress });
  const after = [...statsOf(), ownStats("bench (load generator)")];
  const windowS = (performance.now() - windowStart) / 1000;
  const countersAfter = await readSystemCounters(target).catch(() => null);
  const stages =
    countersBefore?.stages && countersAfter?.stages ? stagesBetween(countersBefore.stages, countersAfter.stages, windowS) : null;
  const databaseAfter = await backendCpuOf().catch(() => null);
  const walAfter = await walOf().catch(() => null);
  const brokerAfter = brokerCpuOf();
  return {
    load,
    warmOutcomes,
    warmup,
    processes: processesBetween(before, after, windowS),
    database_cpu_s: backendCpuBetween(databaseBefore, databaseAfter),
    broker_cpu_s: brokerCpuBetween(brokerBefore, brokerAfter),
    stages,
    db_statements: statementsBetween(countersBefore, countersAfter),
    db_wal_bytes: walBetween(walBefore, walAfter),
    window_start_ms: windowStartMs,
  };
}

const STAGES_UNMEASURED = "each consumer's busy time (the system's /metrics has no saga_consumer_* counters)";
const STATEMENTS_UNMEASURED = "database statements per saga (the system's /metrics has no saga_db_statements_total)";

/** The progress line's note of the busiest consumer, where it was measured. */
const busiest = (c: { stages?: ConsumerStage[] | null }) => (c.stages?.length ? `; busiest consumer ${describeStage(c.stages[0]!)}` : "");

/**
 * The seconds over which an open-loop cell's sagas count: its window, or the time from the first
 * of them ending to the last, if that was longer. A cell the system kept up with ends its sagas
 * as they come, over about its window, so it completes its offered rate; a cell sent faster than
 * the system finishes ends them over longer, and shows the rate the system finished them at, not
 * the rate the load generator sent them at (3000/s offered to a system that finishes 260/s:
 * 15,000 sagas ending over about 58 s).
 */
export function openLoopSpanS(done: readonly Pick<Outcome, "done_at">[], windowS: number): number {
  if (done.length === 0) return windowS;
  let first = Infinity;
  let last = -Infinity;
  for (const x of done) {
    if (x.done_at < first) first = x.done_at;
    if (x.done_at > last) last = x.done_at;
  }
  return Math.max(windowS, (last - first) / 1000);
}

/**
 * Completed sagas per second, and the split. An open loop counts its own sagas, over
 * `openLoopSpanS`. A closed loop counts the sagas the system ended within its window, read from
 * the event store where the bench can read it (`ended`): its clients' answers miss the checkouts
 * the warm-up left running, which the system ends in the window's first moments, and those still
 * running when the window closes, whose work the window holds: about one saga per client short
 * (128 clients over 10 s: 12.8 sagas/s). Without the event store (`--target`), the answers.
 */
export function completedRates(
  kind: "open" | "closed",
  outcomes: readonly Outcome[],
  windowS: number,
  ended?: { confirmed: number; cancelled: number },
): Pick<CellResult, "throughput_sps" | "confirmed_sps" | "cancelled_sps"> {
  const done = outcomes.filter((x) => x.status !== "pending");
  const seconds = kind === "open" ? openLoopSpanS(done, windowS) : windowS;
  const rate = (n: number) => Math.round((n / seconds) * 100) / 100;
  const counts =
    kind === "closed" && ended
      ? ended
      : { confirmed: done.filter((x) => x.status === "confirmed").length, cancelled: done.filter((x) => x.status === "cancelled").length };
  return { throughput_sps: rate(counts.confirmed + counts.cancelled), confirmed_sps: rate(counts.confirmed), cancelled_sps: rate(counts.cancelled) };
}

function baseCell(
  cell: CellPlan,
  o: BenchOptions,
  m: Measured,
  events?: readonly SagaEvent[],
): Omit<CellResult, "key" | "sagas" | "audit" | "steps_ms" | "steps_split_ms" | "messages_per_saga" | "db_writes_per_saga" | "path" | "floor_ms" | "x_floor" | "compensation_latency_ms" | "unmeasured"> {
  const ended = events && sagasEndedBetween(events, m.window_start_ms, m.window_start_ms + m.load.duration_s * 1000);
  const completed = completedRates(cell.load.kind, m.load.outcomes, m.load.duration_s, ended);
  return {
    mode: cell.mode,
    transport: cell.transport,
    topology: cell.topology,
    scenario: cell.scenario,
    load:
      cell.load.kind === "open"
        ? { kind: "open", rate: cell.load.rate, duration_s: o.durationS, ...(cell.load.ofMax ? { of_max: cell.load.ofMax } : {}) }
        : { kind: "closed", rate: completed.throughput_sps, duration_s: m.load.duration_s, connections: cell.load.connections },
    repeat: cell.repeat,
    latency_ms: percentiles(m.load.histogram),
    ...completed,
    ...(cell.load.kind === "closed" ? { completed_from: ended ? ("event store" as const) : ("answers" as const) } : {}),
    processes: m.processes,
    database_cpu_s: m.database_cpu_s,
    broker_cpu_s: m.broker_cpu_s,
    stages: m.stages,
    db_statements: m.db_statements,
    db_wal_bytes: m.db_wal_bytes,
    warmup_sagas: m.warmup,
    errors: m.load.errors,
  };
}

/** Reads what the cell's database says: events for the analysis, write transactions. */
async function inspectDatabase(sut: SystemUnderTest, allIds: string[], measuredIds: string[]): Promise<{ audit: AuditResult; measured: AuditResult; events: SagaEvent[]; writesPerSaga: number | null }> {
  const db = await sut.openDatabase();
  try {
    const audit = await auditCheckouts(db.pool, SEEDED_STOCK, allIds);
    const measured = await auditCheckouts(db.pool, SEEDED_STOCK, measuredIds);
    const { rows } = await db.pool.query(
      `SELECT position, event_type, correlation_id, (extract(epoch FROM timestamp) * 1000)::float8 AS timestamp, xmin::text AS xid
         FROM event_store.events ORDER BY position`,
    );
    // every participant's write records the message it handled (inbox) or appends an event
    const writes = await db.pool.query(
      `SELECT count(DISTINCT xid)::int AS n FROM (SELECT xmin::text AS xid FROM event_store.events UNION ALL SELECT xmin::text FROM messaging.inbox) t`,
    );
    const orders = await db.pool.query("SELECT count(*)::int AS n FROM orders.orders");
    return { audit, measured, events: rows as SagaEvent[], writesPerSaga: orders.rows[0].n ? Math.round((writes.rows[0].n / orders.rows[0].n) * 100) / 100 : null };
  } finally {
    await db.close();
  }
}

function floorOf(r: Pick<CellResult, "path" | "topology">, floor: FloorResult | undefined, memory: FloorResult | undefined): number | null {
  if (!floor || r.path.messages === 0) return null;
  const rr = r.topology === "single" ? (memory?.request_reply_ms ?? floor.request_reply_ms) : floor.request_reply_ms;
  return Math.round((r.path.request_reply_hops * rr + r.path.messages * floor.channel_hop_ms + r.path.commits * floor.commit_ms) * 1000) / 1000;
}

/** A cell at a fraction of the maximum gets its rate from the cells run before it; skipped (and said) when they measured none. */
function resolveRate(cell: CellPlan, done: readonly CellResult[], skipped: Plan["skipped"], progress: ProgressDisplay): CellPlan | null {
  if (cell.load.kind !== "open" || !cell.load.ofMax) return cell;
  const rate = rateAtFraction(done, cell, cell.load.ofMax);
  if (rate !== null) return { ...cell, load: { ...cell.load, rate } };
  const what = `${cell.mode} ${cell.transport}/${cell.topology} ${cell.scenario} at ${ofMaxLabel({ of_max: cell.load.ofMax })}`;
  const why = "no closed-loop cell of this style completed a saga, so its maximum is unknown";
  skipped.push({ what, why });
  progress.line(`skipped: ${what}: ${why}`);
  return null;
}

export interface RunContext {
  options: BenchOptions;
  outDir: string;
  progress: ProgressDisplay;
  /** True once the user asked to stop (Ctrl-C): no further cell starts. */
  interrupted(): boolean;
  /** Told, once the cells begin, how to read the results so far (to write them if the bench must leave early). */
  running?(sofar: () => BenchResults): void;
}

export async function runLocal(ctx: RunContext): Promise<BenchResults> {
  const o = ctx.options;
  const started = runStart();
  const plan = await planRun(o);
  for (const s of plan.skipped) ctx.progress.line(`skipped: ${s.what}: ${s.why}`);
  if (o.tracing && !fs.existsSync(OTEL_SDK)) {
    throw new Error(`--tracing on needs ${OTEL_SDK} (the OpenTelemetry SDK module), which this build does not have`);
  }
  const sink = o.tracing ? await OtlpSink.start() : undefined;
  const floor: BenchResults["floor"] = {};
  const transports = [...new Set(plan.cells.map((c) => c.transport))];
  ctx.progress.line(`floor: measuring ${transports.join(", ")} and one ${plan.databaseUrl ? "PostgreSQL" : "PGlite"} commit and statement`);
  const db = await measureDatabaseFloor(plan.databaseUrl);
  const database = plan.databaseUrl ? "postgresql" : "pglite";
  for (const t of transports.includes("memory") ? transports : ["memory" as Transport, ...transports]) {
    const f = await measureTransportFloor(t, plan.transportUrl[t]);
    floor[t] = { ...f, ...db, database };
  }
  ctx.progress.line(
    `floor: ${Object.entries(floor).map(([t, f]) => `${t} call ${f!.request_reply_ms} ms, channel hop ${f!.channel_hop_ms} ms`).join("; ")}; commit ${db.commit_ms} ms, statement ${db.statement_ms} ms (${database})`,
  );

  const cells: CellResult[] = [];
  ctx.running?.(() => ({ meta: meta(o, started), floor, skipped: [...plan.skipped], cells: [...cells] }));
  const logRoot = path.join(ctx.outDir, "logs");
  try {
    for (const [i, planned] of plan.cells.entries()) {
      if (ctx.interrupted()) {
        plan.skipped.push({ what: `${plan.cells.length - i} cell(s)`, why: "interrupted" });
        break;
      }
      const cell = resolveRate(planned, cells, plan.skipped, ctx.progress);
      if (!cell) continue;
      const label = `[${i + 1}/${plan.cells.length}] ${cell.mode.padEnd(13)} ${cell.transport}/${cell.topology} ${cell.scenario} ${loadText(cell.load)}${o.repeat > 1 ? ` #${cell.repeat}` : ""}`;
      ctx.progress.start(label, "starting");
      sink?.reset();
      const env: Record<string, string> = { ...scenarioEnv(cell.scenario, FAULT_SEED), RELAY_POLL_MS: "200" };
      if (sink) Object.assign(env, { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --import ${OTEL_SDK}`.trim(), OTEL_TRACES_EXPORTER: "otlp", OTEL_EXPORTER_OTLP_ENDPOINT: sink.endpoint });
      else env.OTEL_TRACES_EXPORTER = "none";
      let sut: SystemUnderTest;
      try {
        sut = await SystemUnderTest.start({
          mode: cell.mode,
          transport: cell.transport,
          transporterUrl: plan.transportUrl[cell.transport],
          topology: cell.topology,
          adminDatabaseUrl: plan.databaseUrl,
          port: o.port + (i % PORTS_PER_RUN),
          env,
          logDir: path.join(logRoot, `cell-${i + 1}`),
          // node writes the profile when the process exits (the cell's stop)
          execArgv: o.cpuProfDir ? ["--cpu-prof", "--cpu-prof-dir", path.join(o.cpuProfDir, `cell-${i + 1}`)] : undefined,
          keepDatabase: o.keepData,
        });
      } catch (err) {
        ctx.progress.line(`${label}: could not start: ${(err as Error).message}`);
        plan.skipped.push({ what: label, why: `the system did not start: ${(err as Error).message}` });
        continue;
      }
      try {
        const target: Target = { baseUrl: sut.baseUrl };
        const brokerUrl = cell.transport === "memory" ? undefined : plan.transportUrl[cell.transport];
        const brokerCpu = () => (brokerUrl ? readBrokerCpu(brokerUrl) : null);
        const m = await applyLoad(cell, target, o, ctx.progress, label, () => sut.stats(), () => sut.backendCpu(), () => sut.walPosition(), brokerCpu);
        // name each consumer's process as the process table does ("all", "orders", …)
        m.stages = m.stages?.map((st) => ({ ...st, node: st.node.replace(`${sut.namespace}-`, "") })) ?? null;
        ctx.progress.start(label, "draining");
        await drain(target, DRAIN_S);
        const processes = m.processes;
        await sut.stop();
        const measuredIds = m.load.outcomes.map((x) => x.order_id);
        const allIds = [...m.warmOutcomes.map((x) => x.order_id), ...measuredIds];
        const inspected = await inspectDatabase(sut, allIds, measuredIds);
        const measuredCids = new Set(m.load.outcomes.map((x) => x.correlation_id));
        const analysis = analyseSagas(inspected.events.filter((e) => measuredCids.has(e.correlation_id)), m.load.outcomes);
        const base = baseCell(cell, o, m, inspected.events);
        const partial = {
          ...base,
          sagas: { ...inspected.measured.sagas, lost: inspected.audit.sagas.lost, stuck: inspected.audit.sagas.stuck, duplicated: inspected.audit.sagas.duplicated },
          compensation_latency_ms: compensationPercentiles(analysis.compensation_ms),
          steps_ms: analysis.steps_ms,
          steps_split_ms: analysis.steps_split_ms,
          messages_per_saga: analysis.messages_per_saga,
          db_writes_per_saga: inspected.writesPerSaga,
          path: { messages: analysis.path_messages, commits: analysis.path_commits ?? analysis.path_messages, request_reply_hops: 1 },
          processes,
          audit: { ok: inspected.audit.ok && Object.keys(m.load.errors).length === 0, violations: [...inspected.audit.violations, ...Object.entries(m.load.errors).map(([k, n]) => `${n} request(s) failed: ${k}`)] },
          unmeasured: [
            ...(plan.databaseUrl && m.database_cpu_s === null ? ["the database's CPU (its PostgreSQL server is not on this machine, or /proc does not show its processes)"] : []),
            ...(brokerUrl && m.broker_cpu_s === null ? ["the broker's CPU (it is not on this machine, or /proc does not show the process listening on its port, or that is not nats-server or RabbitMQ's beam.smp: a container's port proxy, say)"] : []),
            ...(m.stages === null ? [STAGES_UNMEASURED] : []),
            ...(m.db_statements === null ? [STATEMENTS_UNMEASURED] : []),
            ...(plan.databaseUrl && m.db_wal_bytes === null ? ["the write-ahead log written per saga (the server did not give its WAL position)"] : []),
          ],
          ...(sink ? { tracing: { exports: sink.exports, spans: sink.spans, bytes: sink.bytes } } : {}),
          ...(o.keepData ? { database: sut.database.location } : {}),
        };
        const floor_ms = floorOf(partial, floor[cell.transport], floor.memory);
        const result: CellResult = {
          key: cellKey(partial),
          ...partial,
          floor_ms,
          x_floor: floor_ms && partial.latency_ms.p50 > 0 ? Math.round((partial.latency_ms.p50 / floor_ms) * 10) / 10 : null,
        };
        cells.push(result);
        ctx.progress.line(
          `${label}: ${result.throughput_sps} sagas/s, p50 ${result.latency_ms.p50} ms, p99 ${result.latency_ms.p99} ms, ${result.x_floor ?? "–"}× floor, audit ${result.audit.ok ? "clean" : `FAILED: ${result.audit.violations.join("; ")}`}${busiest(result)}`,
        );
      } finally {
        await sut.dispose();
      }
    }
  } finally {
    ctx.progress.stop();
    await sink?.close();
  }
  return { meta: meta(o, started), floor, skipped: plan.skipped, cells };
}

function packageVersions(): Record<string, string> {
  const pkg = JSON.parse(fs.readFileSync(path.join(repoDir, "package.json"), "utf8")) as { version: string; dependencies: Record<string, string> };
  const installed = (name: string) => {
    try {
      return (JSON.parse(fs.readFileSync(path.join(repoDir, "node_modules", name, "package.json"), "utf8")) as { version: string }).version;
    } catch {
      return "?";
    }
  };
  const names = ["moleculer", "@moleculer/channels", "nats", "amqplib", "pg", "@electric-sql/pglite", "autocannon", "hdr-histogram-js", "vega", "vega-lite"];
  return { "saga-bench": pkg.version, ...Object.fromEntries(names.map((n) => [n, installed(n)])) };
}

function gitCommit(): string {
  try {
    const sha = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: repoDir, encoding: "utf8" }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--untracked-files=no"], { cwd: repoDir, encoding: "utf8" }).trim();
    return dirty ? `${sha}+changes` : sha;
  } catch {
    return "unknown";
  }
}

/**
 * What a run records of its start: the time, the load, and the commit, read then (the build it
 * measures is the one compiled before it began; edits made while it runs are not in it).
 */
export interface RunStart {
  at: Date;
  loadAvg: number[];
  commit: string;
}

export const runStart = (): RunStart => ({ at: new Date(), loadAvg: os.loadavg(), commit: gitCommit() });

export function meta(o: BenchOptions, start: RunStart): BenchResults["meta"] {
  const cpus = os.cpus();
  const { help: _help, compare: _compare, apiKey, ...settings } = o;
  return {
    started_at: start.at.toISOString(),
    finished_at: new Date().toISOString(),
    machine: {
      cpus: cpus.length,
      cpu_model: cpus[0]?.model ?? "unknown",
      memory_gb: Math.round(os.totalmem() / 2 ** 30),
      os: `${os.type()} ${os.release()}`,
      load_avg_at_start: start.loadAvg.map((x) => Math.round(x * 100) / 100),
    },
    node: process.version,
    packages: packageVersions(),
    commit: start.commit,
    settings: { ...settings, apiKey: apiKey ? "(set)" : undefined, database: process.env.DATABASE_URL ? "postgresql" : "pglite" },
  };
}

/**
 * `--target URL`: load a deployment someone else started. Nothing is started here, so what
 * needs the system's processes or database (CPU, memory, write transactions, rate-based faults,
 * seeded stock, the floor of its transport) is not measured, and each cell says so.
 */
export async function runTarget(ctx: RunContext): Promise<BenchResults> {
  const o = ctx.options;
  const started = runStart();
  const target: Target = { baseUrl: o.target!.replace(/\/$/, ""), apiKey: o.apiKey };
  const health = await getJson<{ saga_mode?: SagaMode; status?: string }>(target, "/health").catch((err: Error) => {
    throw new Error(`--target ${target.baseUrl}: no answer from /health (${err.message})`);
  });
  if (health.status === 401) throw new Error(`--target ${target.baseUrl}: 401, give the API key with --api-key or BENCH_API_KEY`);
  const mode = health.body.saga_mode ?? "orchestrated";
  const skipped: BenchResults["skipped"] = [];
  const scenarios = (o.scenarios ?? ["happy", "out-of-stock"]).filter((s) => {
    if (!needsSystemFaults(s)) return true;
    skipped.push({ what: `scenario ${s} on --target`, why: "its faults are the deployment's PAYMENT_FAILURE_RATE / SHIPPING_FAILURE_RATE, which the bench cannot set" });
    return false;
  });
  skipped.push({ what: "the other saga style on --target", why: `the deployment runs ${mode}; restart it with the other SAGA_MODE and run again` });
  const cells: CellResult[] = [];
  ctx.running?.(() => ({ meta: meta(o, started), floor: {}, skipped: [...skipped], cells: [...cells] }));
  const stockOf = async () => {
    const xs = await Promise.all(SEEDED_STOCK.map((s) => getJson<{ available?: number; reserved?: number }>(target, `/api/v1/inventory/${s.product_id}`)));
    return xs.map((x, i) => ({ product_id: SEEDED_STOCK[i].product_id, stock: (x.body.available ?? 0) + (x.body.reserved ?? 0) }));
  };
  try {
    for (const scenario of scenarios) {
      const loads: CellPlan["load"][] = (scenario === "happy" ? o.rates : o.rates.slice(0, 1)).map((rate) => ({ kind: "open" as const, rate }));
      if (o.saturate && scenario === "happy") {
        for (const connections of o.connections) loads.push({ kind: "closed", connections });
        for (const ofMax of o.ofMax) loads.push({ kind: "open", rate: 0, ofMax });
      }
      for (const load of loads) {
        for (let repeat = 1; repeat <= o.repeat; repeat++) {
          if (ctx.interrupted()) break;
          // planned as memory/single, recorded as target/target: the cells done are matched as planned
          const cell = resolveRate({ mode, transport: "memory", topology: "single", scenario, load, repeat }, cells.map((c) => ({ ...c, transport: "memory", topology: "single" })), skipped, ctx.progress);
          if (!cell) continue;
          const label = `${mode} target ${scenario} ${loadText(cell.load)}`;
          const stockBefore = await stockOf();
          const m = await applyLoad(cell, target, o, ctx.progress, label, () => []);
          ctx.progress.start(label, "draining");
          await drain(target, DRAIN_S);
          const outcomes = m.load.outcomes;
          // the audit and the step breakdown through the API
          const violations: string[] = [];
          let lost = 0;
          let stuck = 0;
          let confirmed = 0;
          let cancelled = 0;
          for (const x of [...m.warmOutcomes, ...outcomes]) {
            const { status, body } = await getJson<{ status?: string }>(target, `/cqrs/queries/orders/${x.order_id}`);
            if (status === 404) lost++;
            else if (body.status !== "confirmed" && body.status !== "cancelled") stuck++;
            if (outcomes.includes(x)) {
              if (body.status === "confirmed") confirmed++;
              if (body.status === "cancelled") cancelled++;
            }
          }
          const events: SagaEvent[] = [];
          let duplicated = 0;
          for (const x of outcomes.slice(0, 300)) {
            const { body } = await getJson<{ events?: { position: number; event_type: string; correlation_id: string; timestamp: string }[] }>(target, `/event-store/api/v1/events/correlation/${x.correlation_id}?limit=500`);
            const list = (body.events ?? []).map((e) => ({ position: e.position, event_type: e.event_type, correlation_id: e.correlation_id, timestamp: Date.parse(e.timestamp) }));
            const n = (t: string) => list.filter((e) => e.event_type === t).length;
            if (n("OrderConfirmed") + n("OrderCancelled") > 1 || n("PaymentProcessed") > 1) duplicated++;
            events.push(...list);
          }
          const stockAfter = await stockOf();
          for (const [i, s] of stockAfter.entries()) {
            if (s.stock !== stockBefore[i].stock) violations.push(`stock: product ${s.product_id} not conserved (${stockBefore[i].stock} before, ${s.stock} after)`);
          }
          if (lost) violations.push(`lost: ${lost} accepted order(s) unknown to the API`);
          if (stuck) violations.push(`stuck: ${stuck} order(s) not in a terminal state`);
          if (duplicated) violations.push(`duplicated effects on ${duplicated} order(s) (of the ${Math.min(300, outcomes.length)} looked at)`);
          for (const [k, n] of Object.entries(m.load.errors)) violations.push(`${n} request(s) failed: ${k}`);
          const analysis = analyseSagas(events, outcomes);
          const base = baseCell(cell, o, m);
          const partial = {
            ...base,
            transport: "target" as const,
            topology: "target" as const,
            sagas: { started: outcomes.length, confirmed, cancelled, lost, stuck, duplicated },
            compensation_latency_ms: compensationPercentiles(analysis.compensation_ms),
            steps_ms: analysis.steps_ms,
            steps_split_ms: analysis.steps_split_ms,
            messages_per_saga: analysis.messages_per_saga,
            db_writes_per_saga: null,
            path: { messages: analysis.path_messages, commits: analysis.path_messages, request_reply_hops: 1 },
            processes: m.processes,
            floor_ms: null,
            x_floor: null,
            audit: { ok: violations.length === 0, violations },
            unmeasured: [
              "CPU seconds and peak RSS of the deployment's processes (only the load generator's), its database's CPU and the WAL it wrote",
              "database writes per saga (the bench has no access to the deployment's database)",
              "the floor and x_floor (the deployment's transport and database are not reachable from here)",
              "payments charged and refunded, reservations held (the audit reads orders, events and inventory through the API)",
              ...(m.stages === null ? [STAGES_UNMEASURED] : []),
              ...(m.db_statements === null ? [STATEMENTS_UNMEASURED] : []),
            ],
          };
          cells.push({ key: cellKey(partial), ...partial });
          ctx.progress.line(`${label}: ${partial.throughput_sps} sagas/s, p50 ${partial.latency_ms.p50} ms, p99 ${partial.latency_ms.p99} ms, audit ${partial.audit.ok ? "clean" : `FAILED: ${violations.join("; ")}`}${busiest(partial)}`);
        }
      }
    }
  } finally {
    ctx.progress.stop();
  }
  skipped.push({ what: "stock seeding on --target", why: "the deployment keeps its own stock; a product that runs out turns checkouts into stock_unavailable cancellations" });
  return { meta: meta(o, started), floor: {}, skipped, cells };
}
