import type { Middleware, ServiceBroker } from "moleculer";
import { isCommandType, isEventType } from "../services/shared/catalogue.js";
import { compensatedStep } from "./saga-steps.js";

/**
 * The saga metrics, kept in each process's Moleculer metric registry and served for the whole
 * cluster by the gateway's `/metrics` (it asks every node and labels each series with its node).
 * Counted in one place, the middleware below: every message handed to the broker passes the
 * channel send hook, every message received passes the channel hook.
 */
export const METRIC = {
  published: "saga_messages_published_total",
  consumed: "saga_messages_consumed_total",
  compensations: "saga_compensations_total",
  duration: "saga_duration_seconds",
  stageBusy: "saga_consumer_busy_seconds_total",
  stageTransactions: "saga_consumer_transactions_total",
  stageMessages: "saga_consumer_transaction_messages_total",
  stageWait: "saga_consumer_wait_seconds_total",
  statements: "saga_db_statements_total",
} as const;

/** Ascending, as Prometheus expects them. */
export const DURATION_BUCKETS = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

function register(broker: ServiceBroker): void {
  broker.metrics.register({
    type: "counter",
    name: METRIC.published,
    description: "Messages handed to the broker (relay, re-sends, dead-letter replays), by type",
    labelNames: ["type"],
  });
  broker.metrics.register({
    type: "counter",
    name: METRIC.consumed,
    description:
      "Messages consumers received, by consumer, type and outcome (handled; duplicate = redelivery absorbed by the inbox; dead-lettered; foreign = another system's, dropped; skipped = a reaction that does not apply)",
    labelNames: ["consumer", "type", "outcome"],
  });
  broker.metrics.register({
    type: "counter",
    name: METRIC.compensations,
    description: "Compensations done (their event published), by the step undone",
    labelNames: ["step"],
  });
  broker.metrics.register({
    type: "histogram",
    name: METRIC.duration,
    description: "Checkout saga duration from OrderInitiated to its terminal event",
    labelNames: ["mode", "outcome"],
    buckets: DURATION_BUCKETS,
  });
  // A consumer runs one transaction at a time for the messages that wait for it, so under load
  // it is a stage of a pipeline: busy seconds over wall seconds says how near it is to being the
  // one that limits the rest (the bench reports it per cell), messages per transaction how much
  // its batches absorb.
  broker.metrics.register({
    type: "counter",
    name: METRIC.stageBusy,
    description: "Seconds a consumer's transactions ran (committed or not), by consumer",
    labelNames: ["consumer"],
  });
  broker.metrics.register({
    type: "counter",
    name: METRIC.stageTransactions,
    description: "A consumer's committed transactions, by consumer",
    labelNames: ["consumer"],
  });
  broker.metrics.register({
    type: "counter",
    name: METRIC.stageMessages,
    description: "Messages a consumer's committed transactions took (handled or found in the inbox), by consumer",
    labelNames: ["consumer"],
  });
  // the other half of a stage's share of a saga's latency: how long its messages stood in its
  // queue (behind the transaction running, and under load while the next batch grew)
  broker.metrics.register({
    type: "counter",
    name: METRIC.stageWait,
    description:
      "Seconds the messages of a consumer's committed transactions waited for their transaction to start (behind the one running, and while a batch grew under load), summed over those messages, by consumer",
    labelNames: ["consumer"],
  });
  // Each statement is a round trip to the database, the unit a hop's cost is made of; counted by
  // the database's pool (database.ts) and read from it whenever the metrics are listed.
  broker.metrics.register({
    type: "counter",
    name: METRIC.statements,
    description: "Statements this process sent to its database, each one round trip (BEGIN and COMMIT count)",
  });
}

type SendToChannel = (channel: string, payload: unknown, opts?: object) => Promise<unknown>;
type ChannelHandler = (msg: unknown, raw: unknown) => Promise<unknown>;

const typeOf = (msg: unknown): string => {
  const t = (msg as { event_type?: unknown } | null)?.event_type;
  return typeof t === "string" && (isEventType(t) || isCommandType(t)) ? t : "(malformed)";
};

type ActionHandler = (ctx: unknown) => Promise<unknown>;

/** What /metrics serves (the gateway lists each node's `saga_*` metrics, nothing else). */
const SERVED = "saga_";

/**
 * Metrics nobody reads are not recorded. With the registry enabled (for the saga metrics),
 * Moleculer and @moleculer/channels record their own on every message and packet: per channel a
 * sent and a received counter, an in-flight gauge up and down and a timing histogram with
 * quantiles, the bulkhead's gauges, the transit's packet counters. /metrics never serves them;
 * leaving them out took the CPU per saga in one process with 128 clients down by a quarter to a
 * third (bench/baselines/HISTORY.md, "Statements per saga, and metrics nobody reads").
 * Their registration stays (the libraries look their metrics up by name); their updates become
 * no-ops.
 */
function recordServedOnly(registry: ServiceBroker["metrics"]): void {
  const r = registry as unknown as Record<"increment" | "decrement" | "set" | "observe" | "timer", (name: string, ...rest: unknown[]) => unknown>;
  for (const method of ["increment", "decrement", "set", "observe"] as const) {
    const record = r[method].bind(registry);
    r[method] = (name, ...rest) => (name.startsWith(SERVED) ? record(name, ...rest) : null);
  }
  const timer = r.timer.bind(registry);
  const start = () => {
    const t0 = performance.now();
    return () => performance.now() - t0;
  };
  r.timer = (name, ...rest) => (typeof name === "string" && name.startsWith(SERVED) ? timer(name, ...rest) : start());
}

/**
 * Counts messages out and in, and serves `statements` (the process's database statements so far)
 * as a counter, read when the node's metrics are listed. Without a metric registry it adds no hook.
 */
export function metricsMiddleware(enabled: boolean, statements?: () => number): Middleware {
  if (!enabled) return { name: "SagaMetrics" } as unknown as Middleware;
  let broker: ServiceBroker;
  return {
    name: "SagaMetrics",
    created(b: ServiceBroker) {
      broker = b;
      register(b);
      recordServedOnly(b.metrics);
    },
    localAction(next: ActionHandler, action: { name: string }): ActionHandler {
      if (action.name !== "$node.metrics" || !statements) return next;
      return (ctx) => {
        broker.metrics.set(METRIC.statements, statements());
        return next(ctx);
      };
    },
    sendToChannel(next: SendToChannel): SendToChannel {
      return async (channel, payload, opts) => {
        const result = await next(channel, payload, opts);
        const type = typeOf(payload);
        broker.metrics.increment(METRIC.published, { type });
        const step = compensatedStep(type);
        if (step) broker.metrics.increment(METRIC.compensations, { step });
        return result;
      };
    },
    localChannel(next: ChannelHandler, chan: { group?: string; consumer?: string }): ChannelHandler {
      const consumer = chan.consumer ?? chan.group ?? "";
      return async (msg, raw) => {
        const outcome = await next(msg, raw);
        broker.metrics.increment(METRIC.consumed, { consumer, type: typeOf(msg), outcome: typeof outcome === "string" ? outcome : "handled" });
        return outcome;
      };
    },
  } as unknown as Middleware;
}

/**
 * One transaction of a consumer: how long it ran and, when it committed, how many messages it
 * took and how long they had waited for it, together.
 */
export function observeConsumerTransaction(broker: ServiceBroker, consumer: string, seconds: number, committed: { messages: number; waitedSeconds: number } | null): void {
  if (!broker?.isMetricsEnabled()) return;
  broker.metrics.increment(METRIC.stageBusy, { consumer }, seconds);
  if (committed === null) return;
  broker.metrics.increment(METRIC.stageTransactions, { consumer });
  broker.metrics.increment(METRIC.stageMessages, { consumer }, committed.messages);
  broker.metrics.increment(METRIC.stageWait, { consumer }, committed.waitedSeconds);
}

/** Saga duration, observed once per checkout by the projection that sees it end. */
export function observeSagaDuration(broker: ServiceBroker, mode: string, outcome: string, seconds: number): void {
  if (broker.isMetricsEnabled()) broker.metrics.observe(METRIC.duration, seconds, { mode, outcome });
}

interface MetricSnapshot {
  type: string;
  name: string;
  description?: string;
  values: {
    labels: Record<string, string | number>;
    value?: number;
    count?: number;
    sum?: number;
    buckets?: Record<string, number>;
  }[];
}

const escape = (v: string | number) => String(v).replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
const labelText = (labels: Record<string, string | number>) => {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escape(v)}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
};

/** One line of Prometheus text: a series and its value. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Reads the samples of Prometheus text (as `renderPrometheus` writes it; comments left out). */
export function parsePrometheus(text: string): Sample[] {
  return text
    .split("\n")
    .map((l) => /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({
      name: m[1]!,
      labels: Object.fromEntries([...(m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1]!, x[2]!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c))])),
      value: Number(m[3]),
    }));
}

/** Prometheus text format (0.0.4) from the metric snapshots of several nodes. */
export function renderPrometheus(nodes: { nodeID: string; metrics: MetricSnapshot[] }[], gauges: MetricSnapshot[] = []): string {
  const byName = new Map<string, { meta: MetricSnapshot; lines: string[] }>();
  const entry = (m: MetricSnapshot) => {
    let e = byName.get(m.name);
    if (!e) byName.set(m.name, (e = { meta: m, lines: [] }));
    return e;
  };
  for (const { nodeID, metrics } of nodes) {
    for (const m of metrics) {
      const e = entry(m);
      for (const v of m.values) {
        const labels = { ...v.labels, node: nodeID };
        if (m.type === "histogram") {
          // numeric order: object keys put "1", "2" … before "0.025"
          const buckets = Object.entries(v.buckets ?? {}).sort(([a], [b]) => Number(a) - Number(b));
          for (const [le, count] of buckets) e.lines.push(`${m.name}_bucket${labelText({ ...labels, le })} ${count}`);
          e.lines.push(`${m.name}_bucket${labelText({ ...labels, le: "+Inf" })} ${v.count ?? 0}`);
          e.lines.push(`${m.name}_sum${labelText(labels)} ${v.sum ?? 0}`);
          e.lines.push(`${m.name}_count${labelText(labels)} ${v.count ?? 0}`);
        } else {
          e.lines.push(`${m.name}${labelText(labels)} ${v.value ?? 0}`);
        }
      }
    }
  }
  for (const g of gauges) {
    const e = entry(g);
    for (const v of g.values) e.lines.push(`${g.name}${labelText(v.labels)} ${v.value ?? 0}`);
  }
  const out: string[] = [];
  for (const [name, { meta, lines }] of byName) {
    if (meta.description) out.push(`# HELP ${name} ${meta.description}`);
    out.push(`# TYPE ${name} ${meta.type}`);
    out.push(...lines);
  }
  return `${out.join("\n")}\n`;
}
