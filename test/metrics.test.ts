import { METRIC } from "moleculer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CheckoutHarness } from "./support/checkout-harness.js";
import { parsePrometheus as parse, type Sample } from "../observability/metrics.js";

/**
 * The metrics middleware counts every message out and in. After a run of successes and
 * failures, /metrics agrees with the event store.
 */

const sum = (samples: Sample[], name: string, labels: Record<string, string>) =>
  samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((n, s) => n + s.value, 0);

describe.each(["orchestrated", "choreographed"] as const)("/metrics after successes and failures (%s)", (mode) => {
  let h: CheckoutHarness;
  let samples: Sample[] = [];
  let text = "";
  let stored = new Map<string, number>();
  let cancelled = 0;

  beforeAll(async () => {
    h = await CheckoutHarness.start({ mode });
    await h.seedProducts([{ id: 901, price: 10, stock: 3 }]);
    const orders = [
      { user_id: 457, product_id: 901, quantity: 1 },
      { user_id: 457, product_id: 901, quantity: 1, card_token: "tok_chargeDeclined" },
      { user_id: 457, product_id: 901, quantity: 1, shipping_address: { street: "1 Main", city: "Ottawa", postal_code: "00000" } },
      { user_id: 457, product_id: 901, quantity: 50 },
      { user_id: 457, product_id: 901, quantity: 2 },
    ];
    for (const o of orders) await h.checkout(o);
    // the relay publishes after the commit: wait until every stored message is out
    const deadline = Date.now() + 15_000;
    for (;;) {
      text = await (await fetch(`${h.baseUrl}/metrics`)).text();
      samples = parse(text);
      const published = sum(samples, "saga_messages_published_total", {});
      if (published === (await h.eventCount()) || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const { rows } = await h.pool.query("SELECT event_type, count(*)::int AS n FROM event_store.events GROUP BY 1");
    stored = new Map(rows.map((r) => [r.event_type as string, r.n as number]));
    cancelled = (await h.pool.query("SELECT count(*)::int AS n FROM orders.orders WHERE status = 'cancelled'")).rows[0].n;
  }, 120_000);

  afterAll(async () => {
    await h?.stop();
  });

  it("wires every subscription through the consumer builder (it names the consumer and the system's group)", async () => {
    const system = (await h.pool.query("SELECT replace(id::text, '-', '') AS id FROM messaging.system")).rows[0].id as string;
    const channels = h.broker.services.flatMap((svc) =>
      Object.entries((svc.schema.channels ?? {}) as Record<string, { consumer?: unknown; group?: string }>).map(([name, def]) => ({ svc: svc.name, name, def })),
    );
    expect(channels.length).toBeGreaterThan(10);
    for (const c of channels) {
      expect(typeof c.def.consumer, `${c.svc} ${c.name}`).toBe("string");
      expect(c.def.group, `${c.svc} ${c.name}`).toMatch(new RegExp(`_${system.slice(0, 12)}$`));
    }
  });

  it("keeps only the saga metrics: Moleculer's per-call timings are not collected, its other middlewares are in place", () => {
    const names = h.broker.metrics.list().map((m: { name: string }) => m.name);
    expect(names).toContain("saga_messages_consumed_total");
    // Moleculer's constants for them (its typings declare only the metric types)
    const constants = METRIC as unknown as Record<string, string | undefined>;
    const perCall = ["MOLECULER_REQUEST_TOTAL", "MOLECULER_REQUEST_TIME", "MOLECULER_EVENT_EMIT_TOTAL", "MOLECULER_EVENT_RECEIVED_TIME"].map((k) => constants[k]);
    expect(perCall.every((n) => typeof n === "string")).toBe(true);
    expect(names.filter((n: string) => perCall.includes(n))).toEqual([]);
    const middlewares = (h.broker.middlewares as unknown as { list: { name?: string }[] }).list.map((m) => m.name);
    for (const name of ["SagaMetrics", "ContextTracker", "Timeout", "ErrorHandler", "Validator"]) expect(middlewares).toContain(name);
  });

  it("records no metric /metrics does not serve on each message: Moleculer's and its channels' own stay registered and empty", () => {
    const list = (includes: string) => h.broker.metrics.list({ includes } as never) as { name: string; values: unknown[] }[];
    const recorded = (includes: string) =>
      list(includes).filter((m) => m.values.length > 0).map((m) => m.name);
    // the channels middleware registers these and updates them on every message
    expect(list("moleculer.channels.**").map((m) => m.name)).toEqual(expect.arrayContaining(["moleculer.channels.messages.total", "moleculer.channels.messages.time"]));
    // per message: the channels' counters, gauge and histogram, the event bulkhead's gauges
    for (const updatedPerMessage of ["moleculer.channels.**", "moleculer.event.**", "moleculer.transit.**"]) expect(recorded(updatedPerMessage)).toEqual([]);
    expect(recorded("saga_*")).toEqual(expect.arrayContaining(["saga_messages_published_total", "saga_messages_consumed_total", "saga_consumer_busy_seconds_total"]));
  });

  it("counts every stored message as published once, by type", () => {
    expect(stored.size).toBeGreaterThan(5);
    for (const [type, n] of stored) expect(sum(samples, "saga_messages_published_total", { type }), type).toBe(n);
  });

  it("counts every message each consumer received, by type, as the event store has them", () => {
    const consumed = samples.filter((s) => s.name === "saga_messages_consumed_total");
    expect(consumed.length).toBeGreaterThan(5);
    for (const s of consumed) {
      expect(s.labels.outcome, JSON.stringify(s.labels)).not.toBe("dead-lettered");
      // in memory each consumer group gets each message of its channel once
      expect(sum(consumed, s.name, { consumer: s.labels.consumer!, type: s.labels.type! }), JSON.stringify(s.labels)).toBe(stored.get(s.labels.type!));
    }
  });

  it("times each consumer's transactions, which took every message it handled or found in its inbox, once", () => {
    const consumers = new Set(samples.filter((s) => s.name === "saga_messages_consumed_total").map((s) => s.labels.consumer!));
    expect(consumers.size).toBeGreaterThan(5);
    for (const consumer of consumers) {
      const received = sum(samples, "saga_messages_consumed_total", { consumer, outcome: "handled" }) + sum(samples, "saga_messages_consumed_total", { consumer, outcome: "duplicate" });
      const transactions = sum(samples, "saga_consumer_transactions_total", { consumer });
      expect(sum(samples, "saga_consumer_transaction_messages_total", { consumer }), consumer).toBe(received);
      if (received === 0) continue; // a reaction that never applied (skipped) opens no transaction
      expect(transactions, consumer).toBeGreaterThan(0);
      expect(transactions, consumer).toBeLessThanOrEqual(received);
      expect(sum(samples, "saga_consumer_busy_seconds_total", { consumer }), consumer).toBeGreaterThan(0);
      // served for every consumer that committed (how long a wait is: consumer-batching.test.ts)
      expect(samples.some((x) => x.name === "saga_consumer_wait_seconds_total" && x.labels.consumer === consumer), consumer).toBe(true);
    }
  });

  it("serves the statements its process sent to the database, as the database's pool counted them", async () => {
    const before = h.system.db.statements();
    const served = sum(parse(await (await fetch(`${h.baseUrl}/metrics`)).text()), "saga_db_statements_total", {});
    expect(before).toBeGreaterThan(0);
    // read while the metrics were listed: no fewer than before, no more than after
    expect(served).toBeGreaterThanOrEqual(before);
    expect(served).toBeLessThanOrEqual(h.system.db.statements());
  });

  it("counts compensations as the event store records them, one order cancellation per cancelled order", () => {
    expect(cancelled).toBe(3);
    expect(sum(samples, "saga_compensations_total", { step: "initiate" })).toBe(cancelled);
    expect(sum(samples, "saga_compensations_total", { step: "reserve_stock" })).toBe(stored.get("StockReleased") ?? 0);
    expect(sum(samples, "saga_compensations_total", { step: "charge_payment" })).toBe(stored.get("PaymentRefunded") ?? 0);
  });

  it("gives the saga duration histogram by mode and outcome, its buckets in ascending order", () => {
    const buckets = samples.filter((s) => s.name === "saga_duration_seconds_bucket" && s.labels.mode === mode && s.labels.outcome === "cancelled");
    expect(buckets.length).toBeGreaterThan(3);
    const les = buckets.map((b) => (b.labels.le === "+Inf" ? Infinity : Number(b.labels.le)));
    expect(les).toEqual([...les].sort((a, b) => a - b));
    expect(buckets.at(-1)!.value).toBe(cancelled);
    expect(sum(samples, "saga_duration_seconds_count", { mode, outcome: "confirmed" })).toBe(2);
  });
});
