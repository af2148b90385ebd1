import http from "node:http";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { parsePrometheus, renderPrometheus } from "../observability/metrics.js";
import { foldStages, readSystemCounters, stagesBetween, statementsBetween, type StageCounters } from "../bench/consumer-stages.js";

/**
 * The bench's reading of each consumer's busy share: counters as the gateway's /metrics writes
 * them, read back, and the difference over a window.
 */

const counters = (values: Record<string, [number, number, number, number]>): StageCounters =>
  new Map(
    Object.entries(values).map(([consumer, [busy_s, transactions, messages, wait_s]]) => [`n1\u0000${consumer}`, { consumer, node: "n1", busy_s, transactions, messages, wait_s }]),
  );

describe("consumer stages", () => {
  it("reads back what /metrics writes, labels with quotes, backslashes and line breaks included", () => {
    const odd = 'warehouse:"Reserve"\\Stock\nnext';
    const text = renderPrometheus([
      {
        nodeID: "ns-all",
        metrics: [
          { type: "counter", name: "saga_consumer_busy_seconds_total", values: [{ labels: { consumer: odd }, value: 1.25 }] },
          { type: "histogram", name: "saga_duration_seconds", values: [{ labels: { mode: "orchestrated" }, buckets: { "0.5": 2, "1": 3 }, count: 3, sum: 1.7 }] },
        ],
      },
    ]);
    const samples = parsePrometheus(text);
    expect(samples.find((s) => s.name === "saga_consumer_busy_seconds_total")).toEqual({ name: "saga_consumer_busy_seconds_total", labels: { consumer: odd, node: "ns-all" }, value: 1.25 });
    expect(samples.filter((s) => s.name === "saga_duration_seconds_bucket").map((s) => [s.labels.le, s.value])).toEqual([["0.5", 2], ["1", 3], ["+Inf", 3]]);
  });

  it("gives each consumer's busy share, transactions, batch size and wait per message over the window, the busiest first", () => {
    const before = counters({ orchestrator: [10, 100, 900, 5], warehouse: [4, 50, 50, 1] });
    const after = counters({ orchestrator: [19.5, 200, 2900, 25], warehouse: [6, 150, 350, 1.9], payments: [1, 10, 10, 0.01] });
    expect(stagesBetween(before, after, 10)).toEqual([
      { consumer: "orchestrator", node: "n1", busy: 0.95, transactions_per_s: 10, messages_per_transaction: 20, wait_ms: 10 },
      { consumer: "warehouse", node: "n1", busy: 0.2, transactions_per_s: 10, messages_per_transaction: 3, wait_ms: 3 },
      // first seen during the window: counted from zero
      { consumer: "payments", node: "n1", busy: 0.1, transactions_per_s: 1, messages_per_transaction: 1, wait_ms: 1 },
    ]);
    // idle over the window: left out
    expect(stagesBetween(after, after, 10)).toEqual([]);
  });

  it("folds repetitions into each consumer's medians, idle repetitions as zero", () => {
    const run = (busy: number, perTx: number, wait_ms?: number) => [{ consumer: "c", node: "n1", busy, transactions_per_s: 5, messages_per_transaction: perTx, wait_ms }];
    expect(foldStages([run(0.5, 4, 2), run(0.9, 8, 9), run(0.7, 6, 4)])).toEqual([
      { consumer: "c", node: "n1", busy: 0.7, transactions_per_s: 5, messages_per_transaction: 6, wait_ms: 4 },
    ]);
    expect(foldStages([run(0.9, 8, 3), [], []])![0]).toMatchObject({ busy: 0, transactions_per_s: 0, messages_per_transaction: 8, wait_ms: 3 });
    // results from before the wait was measured have none
    expect(foldStages([run(0.9, 8), run(0.7, 6)])![0]!.wait_ms).toBeNull();
    expect(foldStages([null, undefined])).toBeNull();
  });

  it("reads the statements of every process of the system from /metrics, summed, and their change over a window", async () => {
    const served = (statements: number[]) =>
      renderPrometheus(
        statements.map((n, i) => ({
          nodeID: `ns-node${i}`,
          metrics: [
            { type: "counter", name: "saga_db_statements_total", values: [{ labels: {}, value: n }] },
            { type: "counter", name: "saga_consumer_busy_seconds_total", values: [{ labels: { consumer: `c${i}` }, value: 1 }] },
          ],
        })),
      );
    let body = served([100, 20, 3]);
    const server = http.createServer((_, res) => res.end(body));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const target = { baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
      const before = await readSystemCounters(target);
      expect(before?.statements).toBe(123);
      expect(before?.stages?.size).toBe(3);
      body = served([150, 20, 13]);
      expect(statementsBetween(before, await readSystemCounters(target))).toBe(60);
      // a system whose /metrics has no such counter: not measured, rather than zero
      body = renderPrometheus([{ nodeID: "n", metrics: [{ type: "counter", name: "saga_consumer_busy_seconds_total", values: [{ labels: { consumer: "c" }, value: 1 }] }] }]);
      const without = await readSystemCounters(target);
      expect(without?.statements).toBeNull();
      expect(statementsBetween(before, without)).toBeNull();
    } finally {
      server.close();
    }
  });
});
