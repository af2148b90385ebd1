import type { SagaMode, Transport } from "../services/shared/config.js";
import type { Scenario } from "./bench-scenarios.js";
import type { SagaCounts } from "./end-state-audit.js";
import type { StepSplit } from "./saga-analysis.js";
import type { ConsumerStage } from "./consumer-stages.js";
import type { Topology } from "./system-under-test.js";
import type { ProcessWindow } from "./process-stats.js";

/** The shape of results.json (one per run). */

export interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export interface CellResult {
  /** mode/transport/topology/scenario/kind@rate: the key --compare matches cells by. */
  key: string;
  mode: SagaMode;
  transport: Transport | "target";
  topology: Topology | "target";
  scenario: Scenario;
  /** `of_max`: an open-loop cell at this fraction of the style's maximum measured in the same run (`--of-max`). */
  load: { kind: "open" | "closed"; rate: number; duration_s: number; connections?: number; of_max?: number };
  repeat: number;
  sagas: SagaCounts;
  latency_ms: Percentiles;
  compensation_latency_ms: { p50: number; p99: number } | null;
  /** Completed (terminal) sagas per second, and the split. */
  throughput_sps: number;
  /**
   * Where a closed-loop cell's completed sagas were counted: the system's, from the event store,
   * or its clients' answers (about one saga per client per window fewer; every closed-loop cell
   * before the field, and with `--target`). Absent on open-loop cells.
   */
  completed_from?: "event store" | "answers";
  confirmed_sps: number;
  cancelled_sps: number;
  steps_ms: Record<string, number>;
  steps_split_ms: Record<string, StepSplit>;
  messages_per_saga: number;
  db_writes_per_saga: number | null;
  /** Counts of the floor model: messages and commits up to the terminal event, request/reply hops. */
  path: { messages: number; commits: number; request_reply_hops: number };
  processes: ProcessWindow[];
  /**
   * CPU seconds of the PostgreSQL backends serving the cell's database over the measured window;
   * null on PGlite (inside the system's process) or a server on another machine.
   */
  database_cpu_s: number | null;
  /**
   * CPU seconds of the broker's process (nats-server, RabbitMQ) over the measured window, the
   * whole broker's (the cell being the one at work); null in process, or for a broker on another
   * machine; absent in results of older runs.
   */
  broker_cpu_s?: number | null;
  /**
   * Each consumer's busy share of the measured window, the busiest first (consumer-stages.ts);
   * null where the system's /metrics had no counters for it, absent in results of older runs.
   */
  stages?: ConsumerStage[] | null;
  /**
   * Statements all the system's processes sent to its database over the measured window, each a
   * round trip (saga_db_statements_total); null where /metrics had none, absent in older results.
   */
  db_statements?: number | null;
  /**
   * Write-ahead log the PostgreSQL server wrote over the measured window, bytes (its WAL position
   * before and after; the whole server's, the cell's database being the one at work); null on
   * PGlite or where the server did not say, absent in older results.
   */
  db_wal_bytes?: number | null;
  /**
   * Checkouts the cell's warm-up made before its measured window: an open-loop cell's closed-loop
   * burst, then its own load (WARMUP_BURST in bench-options.ts); absent in older results.
   */
  warmup_sagas?: { burst: number; own: number };
  floor_ms: number | null;
  x_floor: number | null;
  audit: { ok: boolean; violations: string[] };
  errors: Record<string, number>;
  /** What could not be measured in this cell, and why. */
  unmeasured: string[];
  tracing?: { exports: number; spans: number | null; bytes: number };
  /** With --keep-data: the cell's database (a PGlite directory or a PostgreSQL URL). */
  database?: string;
}

export interface FloorResult {
  request_reply_ms: number;
  channel_hop_ms: number;
  commit_ms: number;
  /** One round trip of a trivial prepared statement; absent in older results. */
  statement_ms?: number;
  database: "pglite" | "postgresql";
}

export interface BenchResults {
  meta: {
    started_at: string;
    finished_at: string;
    machine: { cpus: number; cpu_model: string; memory_gb: number; os: string; load_avg_at_start: number[] };
    node: string;
    packages: Record<string, string>;
    commit: string;
    settings: Record<string, unknown>;
  };
  floor: Partial<Record<Transport, FloorResult>>;
  skipped: { what: string; why: string }[];
  cells: CellResult[];
}

/**
 * How a closed-loop cell's completed sagas were counted (undefined for an open loop). Results
 * from before `completed_from` was recorded tell it by their figures: a count of the answers is
 * the cell's answered sagas over its window, to the rounding of its sagas/s.
 */
export function completedFrom(c: Pick<CellResult, "load" | "throughput_sps" | "sagas" | "completed_from">): CellResult["completed_from"] {
  if (c.load.kind !== "closed") return undefined;
  if (c.completed_from) return c.completed_from;
  const answered = c.sagas.confirmed + c.sagas.cancelled;
  return Math.abs(c.throughput_sps * c.load.duration_s - answered) <= 0.01 * c.load.duration_s ? "answers" : "event store";
}

export const cellKey = (c: Pick<CellResult, "mode" | "transport" | "topology" | "scenario" | "load">): string =>
  `${c.mode}/${c.transport}/${c.topology}/${c.scenario}/${c.load.kind}@${c.load.kind === "closed" ? `c${c.load.connections}` : c.load.of_max ? `max×${c.load.of_max}` : c.load.rate}`;

/** "50% of max" for a cell at a fraction of the maximum (`--of-max`), else undefined. */
export const ofMaxLabel = (load: { of_max?: number }): string | undefined => (load.of_max ? `${Math.round(load.of_max * 100)}% of max` : undefined);
