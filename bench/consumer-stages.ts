import { METRIC, parsePrometheus } from "../observability/metrics.js";
import type { Target } from "./load-generator.js";
import { median } from "./saga-analysis.js";

/**
 * How busy each consumer was over a cell's measured window, from the system's own counters
 * (`/metrics`: the seconds its transactions ran, how many committed, the messages they took).
 * A consumer runs one transaction at a time, so under load it is a stage of a pipeline: one
 * near 100% busy is the stage that holds the rest back, and more clients or a faster database
 * will not move the cell's throughput past it. The same reading gives the statements the
 * system's processes sent to the database (`saga_db_statements_total`), for statements per saga.
 */

export interface ConsumerStage {
  consumer: string;
  /** The Moleculer node (process) it ran in. */
  node: string;
  /** Seconds its transactions ran per second of the window (1 = never idle). */
  busy: number;
  transactions_per_s: number;
  messages_per_transaction: number | null;
  /**
   * How long its messages waited, on average, between reaching it and the start of their
   * transaction (behind the one running, and under load while the next batch grew): this stage's
   * queue in a saga's latency. Absent in results from before it was measured.
   */
  wait_ms?: number | null;
}

/** Counters of each consumer at one moment, keyed by node and consumer. */
export type StageCounters = Map<string, { consumer: string; node: string; busy_s: number; transactions: number; messages: number; wait_s: number }>;

const stageKey = (node: string, consumer: string) => `${node}\u0000${consumer}`;

const FIELDS = { [METRIC.stageBusy]: "busy_s", [METRIC.stageTransactions]: "transactions", [METRIC.stageMessages]: "messages", [METRIC.stageWait]: "wait_s" } as const;

/** The system's counters the bench reads at both ends of a measured window. */
export interface SystemCounters {
  /** Each consumer's; null when /metrics has none (a system without them). */
  stages: StageCounters | null;
  /** Statements sent to the database by all the system's processes; null when /metrics has none. */
  statements: number | null;
}

/** Reads the counters from the target's /metrics; null when it does not answer. */
export async function readSystemCounters(target: Target): Promise<SystemCounters | null> {
  const res = await fetch(new URL("/metrics", target.baseUrl), { headers: target.apiKey ? { "x-api-key": target.apiKey } : {}, signal: AbortSignal.timeout(5_000) });
  if (!res.ok) return null;
  const counters: StageCounters = new Map();
  let statements: number | null = null;
  for (const s of parsePrometheus(await res.text())) {
    if (s.name === METRIC.statements) statements = (statements ?? 0) + s.value; // one series per process
    const field = FIELDS[s.name as keyof typeof FIELDS];
    if (!field || !s.labels.consumer) continue;
    const node = s.labels.node ?? "";
    const key = stageKey(node, s.labels.consumer);
    let c = counters.get(key);
    if (!c) counters.set(key, (c = { consumer: s.labels.consumer, node, busy_s: 0, transactions: 0, messages: 0, wait_s: 0 }));
    c[field] += s.value;
  }
  return { stages: counters.size > 0 ? counters : null, statements };
}

/** Statements sent between two readings; null where either lacks them. */
export function statementsBetween(before: SystemCounters | null, after: SystemCounters | null): number | null {
  return before?.statements != null && after?.statements != null ? after.statements - before.statements : null;
}

const round = (x: number, digits: number) => Math.round(x * 10 ** digits) / 10 ** digits;

/** Each consumer's share of the window, the busiest first. */
export function stagesBetween(before: StageCounters, after: StageCounters, seconds: number): ConsumerStage[] {
  if (seconds <= 0) return [];
  return [...after]
    .map(([key, a]) => {
      const b = before.get(key) ?? { busy_s: 0, transactions: 0, messages: 0, wait_s: 0 };
      const transactions = a.transactions - b.transactions;
      const messages = a.messages - b.messages;
      return {
        consumer: a.consumer,
        node: a.node,
        busy: round((a.busy_s - b.busy_s) / seconds, 3),
        transactions_per_s: round(transactions / seconds, 1),
        messages_per_transaction: transactions > 0 ? round(messages / transactions, 1) : null,
        wait_ms: messages > 0 ? round(((a.wait_s - b.wait_s) * 1000) / messages, 1) : null,
      };
    })
    .filter((s) => s.busy > 0 || s.transactions_per_s > 0)
    .sort((x, y) => y.busy - x.busy || x.consumer.localeCompare(y.consumer));
}

/** "warehouse:ReserveStock 97% busy, 21.4 messages a transaction, each waiting 9.8 ms for it" */
export function describeStage(s: ConsumerStage): string {
  const n = s.messages_per_transaction;
  const waited = s.wait_ms == null ? "" : `, each waiting ${s.wait_ms} ms for it`;
  return `${s.consumer} ${Math.round(s.busy * 100)}% busy${n === null ? "" : `, ${n} message${n === 1 ? "" : "s"} a transaction${waited}`}`;
}

/** Repetitions of one cell folded: each consumer's median figures; null when no repetition measured them. */
export function foldStages(runs: readonly (ConsumerStage[] | null | undefined)[]): ConsumerStage[] | null {
  const measured = runs.filter((r): r is ConsumerStage[] => Array.isArray(r));
  if (measured.length === 0) return null;
  const byKey = new Map<string, ConsumerStage[]>();
  for (const run of measured) for (const s of run) byKey.set(stageKey(s.node, s.consumer), [...(byKey.get(stageKey(s.node, s.consumer)) ?? []), s]);
  return [...byKey.values()]
    .map((list) => {
      // a consumer idle in some repetitions counts as 0 there
      const all = (f: (s: ConsumerStage) => number) => median([...list.map(f), ...Array<number>(measured.length - list.length).fill(0)]);
      const batches = list.map((s) => s.messages_per_transaction).filter((x): x is number => x !== null);
      const waits = list.map((s) => s.wait_ms).filter((x): x is number => x != null);
      return {
        consumer: list[0]!.consumer,
        node: list[0]!.node,
        busy: round(all((s) => s.busy), 3),
        transactions_per_s: round(all((s) => s.transactions_per_s), 1),
        messages_per_transaction: batches.length ? round(median(batches), 1) : null,
        wait_ms: waits.length ? round(median(waits), 1) : null,
      };
    })
    .sort((x, y) => y.busy - x.busy || x.consumer.localeCompare(y.consumer));
}
