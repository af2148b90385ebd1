import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SAGA_MODES, type SagaMode } from "../services/shared/config.js";
import { AMQP_URL, clusterAvailable, NATS_URL, available } from "./support/infrastructure.js";
import { SpawnedSystem } from "./support/spawned-system.js";
import { TraceReceiver, waterfall, type ReceivedSpan } from "./support/trace-receiver.js";

/**
 * One checkout is one trace, across every service, broker hop and the outbox: each system runs as
 * a user runs it (`node --import otel-sdk`), exporting to a receiver this test starts. In the
 * multi-process runs the services export over three wires at once (OTLP http/json, OTLP
 * http/protobuf, the Jaeger exporter), so one trace is put together from all three.
 */

const PARTICIPANTS = ["gateway", "orders", "warehouse", "payments", "shipping", "notifications"];
const WIRES = ["otlp-json", "otlp-protobuf", "jaeger-thrift"] as const;

function exporterEnv(receiver: TraceReceiver, wire: (typeof WIRES)[number]): Record<string, string> {
  switch (wire) {
    case "otlp-json":
      return { OTEL_TRACES_EXPORTER: "otlp", OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "http/json" };
    case "otlp-protobuf":
      return { OTEL_TRACES_EXPORTER: "otlp", OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "http/protobuf" };
    case "jaeger-thrift":
      return { OTEL_TRACES_EXPORTER: "jaeger", OTEL_EXPORTER_JAEGER_ENDPOINT: `${receiver.url}/api/traces` };
  }
}

const serviceOf = (s: ReceivedSpan) => String(s.attributes["moleculer.service"] ?? s.service);

/** The spans of the checkout's trace, once every parent has arrived and the last step is in. */
async function traceOf(receiver: TraceReceiver, correlationId: string, mode: SagaMode): Promise<ReceivedSpan[]> {
  const expected = mode === "orchestrated" ? [...PARTICIPANTS, "saga-orchestrator"] : PARTICIPANTS;
  const deadline = Date.now() + 30_000;
  let spans: ReceivedSpan[] = [];
  while (Date.now() < deadline) {
    const mine = receiver.byCorrelation(correlationId);
    if (mine.length) {
      spans = receiver.byTrace(mine[0]!.traceId);
      const ids = new Set(spans.map((s) => s.spanId));
      const services = new Set(spans.map(serviceOf));
      const complete =
        expected.every((s) => services.has(s)) &&
        spans.every((s) => !s.parentSpanId || ids.has(s.parentSpanId)) &&
        spans.some((s) => s.attributes.event_type === "NotificationSent");
      if (complete) {
        await new Promise((r) => setTimeout(r, 500)); // stragglers of the same batch
        return receiver.byTrace(mine[0]!.traceId);
      }
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return spans;
}

const RUNS = [
  { transport: "memory", url: "memory" },
  { transport: "nats", url: NATS_URL },
  { transport: "amqp", url: AMQP_URL },
] as const;

describe.each(RUNS)("tracing over $transport", ({ transport, url }) => {
  describe.each(SAGA_MODES)("%s", (mode) => {
    let receiver: TraceReceiver;
    let system: SpawnedSystem | undefined;
    let correlationId = "";
    let spans: ReceivedSpan[] = [];
    let skip = false;

    beforeAll(async () => {
      skip = transport === "memory" ? !(await available("postgres")) : !(await clusterAvailable(transport));
      if (skip) return;
      receiver = await TraceReceiver.start();
      const processes = transport === "memory" ? ["all"] : [];
      system = await SpawnedSystem.start({
        mode,
        transporter: url,
        // one process: one wire per saga mode; many: the three wires by turns
        envFor: (name) => {
          const i = transport === "memory" ? (mode === "orchestrated" ? 0 : 1) : [...processes, name].length + name.length;
          return exporterEnv(receiver, WIRES[i % WIRES.length]!);
        },
      });
      const accepted = await system.order({ user_id: 457, product_id: 105, quantity: 1 });
      expect(accepted.status).toBe("confirmed");
      correlationId = accepted.correlation_id;
      spans = await traceOf(receiver, correlationId, mode);
      if (process.env.PRINT_WATERFALL) console.log(`${mode} over ${transport}, ${correlationId}:\n${waterfall(spans)}`);
    }, 900_000);

    afterAll(async () => {
      await system?.stop();
      await receiver?.stop();
    }, 60_000);

    it("puts every span of the checkout under one trace id, each carrying its correlation_id and saga.mode", ({ skip: s }) => {
      if (skip) return s();
      expect(spans.length).toBeGreaterThan(20);
      const strays = receiver.byCorrelation(correlationId).filter((x) => x.traceId !== spans[0]!.traceId);
      expect(strays.map((x) => `${serviceOf(x)} ${x.name} parent=${x.parentSpanId}`)).toEqual([]);
      expect(spans.filter((x) => x.attributes.correlation_id !== correlationId).map((x) => x.name)).toEqual([]);
      expect(spans.filter((x) => x.attributes["saga.mode"] !== mode).map((x) => x.name)).toEqual([]);
    });

    it("has spans from every service of the checkout", ({ skip: s }) => {
      if (skip) return s();
      const services = new Set(spans.map(serviceOf));
      for (const name of mode === "orchestrated" ? [...PARTICIPANTS, "saga-orchestrator"] : PARTICIPANTS) {
        expect(services, `spans of ${name}`).toContain(name);
      }
      // the HTTP request, the database and the broker hops are all in it
      expect(spans.some((x) => x.name.startsWith("POST"))).toBe(true);
      expect(spans.some((x) => String(x.attributes["db.system.name"] ?? x.attributes["db.system"]) === "postgresql")).toBe(true);
      const publish = spans.filter((x) => x.attributes["messaging.operation"] === "publish");
      expect(publish.length).toBeGreaterThanOrEqual(5);
      expect(new Set(publish.map((x) => x.attributes["messaging.system"]))).toEqual(
        new Set([{ memory: "moleculer-fake", nats: "nats", amqp: "rabbitmq" }[transport]]),
      );
      expect(spans.some((x) => x.attributes["saga.step"] === "charge_payment")).toBe(true);
    });

    it("has no broken hop: every parent is a span of the trace, and each consumer is the child of a publish span", ({ skip: s }) => {
      if (skip) return s();
      const byId = new Map(spans.map((x) => [x.spanId, x]));
      const roots = spans.filter((x) => !x.parentSpanId);
      expect(roots.map((x) => x.name)).toHaveLength(1);
      expect(spans.filter((x) => x.parentSpanId && !byId.has(x.parentSpanId)).map((x) => x.name)).toEqual([]);
      const consumers = spans.filter((x) => x.attributes["messaging.operation"] === "process");
      expect(consumers.length).toBeGreaterThanOrEqual(5);
      for (const c of consumers) expect(byId.get(c.parentSpanId!)?.attributes["messaging.operation"], c.name).toBe("publish");
      if (transport !== "memory") expect(new Set(spans.map((x) => x.via))).toEqual(new Set(WIRES));
    });

    // every message of the run (the run is this one checkout) went through the envelope factory
    it("stores the trace id, the traceparent and the system identity with every event of the run", async ({ skip: s }) => {
      if (skip) return s();
      const { rows } = await system!.pool.query("SELECT event_type, correlation_id, metadata FROM event_store.events");
      expect(new Set(rows.map((r) => r.correlation_id))).toEqual(new Set([correlationId]));
      const { rows: identity } = await system!.pool.query("SELECT id FROM messaging.system");
      expect(rows.length).toBeGreaterThanOrEqual(6);
      const traceId = spans[0]!.traceId;
      for (const r of rows) {
        expect(r.metadata.trace_id, r.event_type).toBe(traceId);
        expect(r.metadata.traceparent, r.event_type).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
        expect(r.metadata.system_id, r.event_type).toBe(identity[0].id);
      }
    });
  });
});

describe("tracing off (OTEL_TRACES_EXPORTER=none)", () => {
  let receiver: TraceReceiver;
  let system: SpawnedSystem | undefined;
  let skip = false;

  beforeAll(async () => {
    skip = !(await available("postgres"));
    if (skip) return;
    receiver = await TraceReceiver.start();
    system = await SpawnedSystem.start({
      mode: "orchestrated",
      transporter: "memory",
      env: { OTEL_TRACES_EXPORTER: "none", OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_EXPORTER_JAEGER_ENDPOINT: `${receiver.url}/api/traces` },
    });
  }, 120_000);

  afterAll(async () => {
    await system?.stop();
    await receiver?.stop();
  }, 60_000);

  it("exports nothing, and the checkout still has one trace id in its events, without a traceparent", async ({ skip: s }) => {
    if (skip) return s();
    const accepted = await system!.order({ user_id: 457, product_id: 105, quantity: 1 });
    expect(accepted.status).toBe("confirmed");
    await new Promise((r) => setTimeout(r, 1_500)); // longer than the batch delay the processes were given
    expect(receiver.requests).toEqual([]);
    const { rows } = await system!.pool.query("SELECT metadata FROM event_store.events WHERE correlation_id = $1", [accepted.correlation_id]);
    expect(new Set(rows.map((r) => r.metadata.trace_id)).size).toBe(1);
    expect(rows[0].metadata.trace_id).toMatch(/^[0-9a-f]{32}$/);
    expect(rows.filter((r) => r.metadata.traceparent)).toEqual([]);
  });
});
