import type { ServiceBroker } from "moleculer";
import type { MessageType } from "../services/shared/catalogue.js";

/**
 * The saga metrics, kept in each process's Moleculer metric registry and served for the whole
 * cluster by the gateway's `/metrics` (it asks every node and labels each series with its node).
 */
export const METRIC = {
  published: "saga_messages_published_total",
  consumed: "saga_messages_consumed_total",
  compensations: "saga_compensations_total",
  duration: "saga_duration_seconds",
} as const;

/** Events that record a compensation done, by the step they undo. */
export const COMPENSATION_EVENTS: Partial<Record<MessageType, string>> = {
  StockReleased: "reserve_stock",
  PaymentRefunded: "charge_payment",
  ShipmentCancelled: "schedule_shipment",
  OrderCancelled: "initiate",
};

export function registerSagaMetrics(broker: ServiceBroker): void {
  if (!broker.isMetricsEnabled()) return;
  broker.metrics.register({
    type: "counter",
    name: METRIC.published,
    description: "Messages the relay handed to the broker, by type",
    labelNames: ["type"],
  });
  broker.metrics.register({
    type: "counter",
    name: METRIC.consumed,
    description: "Messages consumers received, by consumer, type and outcome (handled, duplicate = redelivery absorbed, dead-lettered)",
    labelNames: ["consumer", "type", "outcome"],
  });
  broker.metrics.register({
    type: "counter",
    name: METRIC.compensations,
    description: "Compensations done, by the step undone",
    labelNames: ["step"],
  });
  broker.metrics.register({
    type: "histogram",
    name: METRIC.duration,
    description: "Checkout saga duration from OrderInitiated to its terminal event",
    labelNames: ["mode", "outcome"],
    buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
  });
}

export function increment(broker: ServiceBroker, name: string, labels: Record<string, string>): void {
  if (broker.isMetricsEnabled()) broker.metrics.increment(name, labels);
}

export function observe(broker: ServiceBroker, name: string, labels: Record<string, string>, value: number): void {
  if (broker.isMetricsEnabled()) broker.metrics.observe(name, value, labels);
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
          for (const [le, count] of Object.entries(v.buckets ?? {})) e.lines.push(`${m.name}_bucket${labelText({ ...labels, le })} ${count}`);
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
