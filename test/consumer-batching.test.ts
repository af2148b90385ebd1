import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomUUID } from "node:crypto";
import { ServiceBroker, type LoggerInstance } from "moleculer";
import { PgEventStore } from "../services/event-store/pg-event-store.js";
import { emit, newMessage, type AnyEnvelope } from "../services/shared/catalogue.js";
import { openDatabase, type Database } from "../services/database/database.js";
import { consume, MAX_BATCH, type ConsumerDeps, type Work } from "../services/messaging/consume.js";
import { envelopeFactory } from "../services/messaging/envelope-factory.js";
import { METRIC, metricsMiddleware } from "../observability/metrics.js";
import { available, freshPostgresDatabase } from "./support/infrastructure.js";

/**
 * A consumer's messages that arrive while its transaction runs are handled together in the next
 * one. These tests hold batching to the guarantees of one message per transaction: each message's
 * effect exactly once (a copy in the same batch is a duplicate), and a failing message does not
 * take the rest of its batch down with it. Each handler records the id of the transaction it ran
 * in, which shows that batches really formed.
 */

const reachable = await available("postgres");
const SYSTEM_ID = randomUUID();
const envelopes = envelopeFactory({ systemId: SYSTEM_ID, sagaMode: "choreographed" });
/** The failed attempts the consumer logged. */
const warnings: string[] = [];
const logger = { info() {}, warn: (line: string) => warnings.push(line), error() {}, debug() {}, trace() {}, fatal() {} } as unknown as LoggerInstance;

let sequence = 0;
function message(): AnyEnvelope {
  const order_id = `order_${++sequence}`;
  return newMessage(emit("OrderConfirmed", { order_id, shipment_id: "shp_1", estimated_delivery: "2026-12-01" }), {
    correlation_id: randomUUID(),
    service_name: "orders",
    metadata: { saga_mode: "choreographed", system_id: SYSTEM_ID, trace_id: "0".repeat(32) },
  }) as unknown as AnyEnvelope;
}

describe.skipIf(!reachable)("a consumer's batched transactions (PostgreSQL)", () => {
  let db: Database;
  let deps: ConsumerDeps;
  let drop: () => Promise<void>;

  beforeAll(async () => {
    const fresh = await freshPostgresDatabase();
    drop = fresh.drop;
    db = await openDatabase({ databaseUrl: fresh.url });
    await db.pool.query("CREATE TABLE public.effects (message_id uuid NOT NULL, tx bigint NOT NULL)");
    deps = {
      broker: undefined as never,
      pool: db.pool,
      store: new PgEventStore(db.pool),
      envelopes,
      serviceName: "notifications",
      maxRetries: 3,
      logger,
    };
  });
  afterAll(async () => {
    await db?.close();
    await drop?.();
  });

  /** Records the message's effect and emits one event, as a participant does. */
  const recording = (m: AnyEnvelope, failFirst = 0): Work<undefined> => {
    let failures = 0;
    return {
      async handle({ tx }) {
        if (failures < failFirst) {
          failures++;
          throw new Error(`${m.event_id} fails on purpose (${failures})`);
        }
        await tx.query("INSERT INTO public.effects (message_id, tx) SELECT $1, txid_current()", [m.event_id]);
        return [emit("NotificationSent", { order_id: (m.data as { order_id: string }).order_id, channel: "email", recipient: "a@example.com", template: "order_confirmed" })];
      },
    };
  };

  const effectsOf = async (ids: string[]) => {
    const { rows } = await db.pool.query("SELECT message_id, tx FROM public.effects WHERE message_id = ANY($1::uuid[])", [ids]);
    return rows as { message_id: string; tx: string }[];
  };

  it("handles messages that arrive together in fewer transactions than messages, each exactly once", async () => {
    const messages = Array.from({ length: 3 * MAX_BATCH }, message);
    const outcomes = await Promise.all(messages.map((m) => consume(deps, "batching:together", "c", m, recording(m))));
    expect(outcomes.every((o) => o === "handled")).toBe(true);
    const effects = await effectsOf(messages.map((m) => m.event_id));
    expect(effects).toHaveLength(messages.length);
    const transactions = new Set(effects.map((e) => e.tx)).size;
    expect(transactions).toBeLessThan(messages.length);
    expect(transactions).toBeGreaterThanOrEqual(3);
    // every emitted event was appended, in the transaction of the message that caused it
    const { rows } = await db.pool.query(
      "SELECT metadata->>'causation_id' AS cause FROM event_store.events WHERE metadata->>'causation_id' = ANY($1::text[])",
      [messages.map((m) => m.event_id)],
    );
    expect(rows).toHaveLength(messages.length);
  });

  it("treats a second copy of a message in the same batch as a duplicate", async () => {
    const messages = Array.from({ length: 10 }, message);
    const copies = [...messages, ...messages];
    const outcomes = await Promise.all(copies.map((m) => consume(deps, "batching:copies", "c", m, recording(m))));
    expect(outcomes.filter((o) => o === "handled")).toHaveLength(10);
    expect(outcomes.filter((o) => o === "duplicate")).toHaveLength(10);
    expect(await effectsOf(messages.map((m) => m.event_id))).toHaveLength(10);
  });

  it("when one message of a batch fails, handles the others once and retries the failing one alone", async () => {
    const messages = Array.from({ length: 12 }, message);
    const flaky = messages[5];
    const outcomes = await Promise.all(messages.map((m) => consume(deps, "batching:flaky", "c", m, recording(m, m === flaky ? 1 : 0))));
    expect(outcomes.every((o) => o === "handled")).toBe(true);
    const effects = await effectsOf(messages.map((m) => m.event_id));
    expect(effects.map((e) => e.message_id).sort()).toEqual(messages.map((m) => m.event_id).sort());
    // no failed attempt was counted against the messages that shared its batch
    const failed = messages.filter((m) => m !== flaky && warnings.some((w) => w.includes(m.event_id)));
    expect(failed).toEqual([]);
  });

  it("opens a batch's shared work once, for every message it handles, and flushes it once in the same transaction", async () => {
    const KEY = Symbol("test.shared");
    const opened: { tx: string; messages: string[] }[] = [];
    const flushed: { tx: string; seen: string[] }[] = [];
    const sharing = (m: AnyEnvelope): Work<undefined> => ({
      async handle({ tx, batch }) {
        const seen = await batch.shared(
          KEY,
          async () => {
            const { rows } = await tx.query("SELECT txid_current()::text AS tx");
            opened.push({ tx: rows[0].tx, messages: batch.messages.map((b) => b.event_id) });
            return { tx: rows[0].tx as string, ids: [] as string[] };
          },
          async (value) => {
            const { rows } = await tx.query("SELECT txid_current()::text AS tx");
            expect(rows[0].tx).toBe(value.tx);
            flushed.push({ tx: value.tx, seen: value.ids });
          },
        );
        seen.ids.push(m.event_id);
        return [];
      },
    });
    const messages = Array.from({ length: 2 * MAX_BATCH }, message);
    const copies = [...messages, messages[0]];
    const outcomes = await Promise.all(copies.map((m) => consume(deps, "batching:shared", "c", m, sharing(m))));
    expect(outcomes.filter((o) => o === "handled")).toHaveLength(messages.length);
    // one open and one flush per transaction, fewer transactions than messages
    expect(opened.length).toBe(flushed.length);
    expect(opened.length).toBeLessThan(messages.length);
    expect(new Set(opened.map((o) => o.tx)).size).toBe(opened.length);
    for (const o of opened) {
      const f = flushed.find((x) => x.tx === o.tx)!;
      // the flush saw every message the batch handled (duplicates left out), in order
      expect(f.seen).toEqual(o.messages);
    }
    expect(opened.flatMap((o) => o.messages).sort()).toEqual(messages.map((m) => m.event_id).sort());
  });

  it("counts how long each message waited for its consumer's transaction to start", async () => {
    const broker = new ServiceBroker({ logger: false, metrics: { enabled: true }, middlewares: [metricsMiddleware(true)] });
    await broker.start();
    try {
      const counted = (name: string) => (broker.metrics.getMetric(name)?.get({ consumer: "batching:wait" })?.value as number | undefined) ?? 0;
      const HOLD_MS = 300;
      // the first message's transaction holds the consumer; the three behind it wait for it to end
      let firstSleptUntil = 0;
      const holding = (m: AnyEnvelope): Work<undefined> => ({
        async handle({ tx }) {
          await tx.query("SELECT pg_sleep($1)", [HOLD_MS / 1000]);
          if (m === first) firstSleptUntil = performance.now();
          return [];
        },
      });
      const [first, ...behind] = Array.from({ length: 4 }, message);
      const held = consume({ ...deps, broker }, "batching:wait", "c", first!, holding(first!));
      await new Promise((r) => setTimeout(r, 50));
      // each joins the queue as consume is called (nothing to prepare), so by now all three have
      const rest = behind.map((m) => consume({ ...deps, broker }, "batching:wait", "c", m, holding(m)));
      const joinedBy = performance.now();
      const outcomes = await Promise.all([held, ...rest]);
      expect(outcomes.every((o) => o === "handled")).toBe(true);
      expect(counted(METRIC.stageMessages)).toBe(4);
      expect(counted(METRIC.stageTransactions)).toBe(2);
      // the three joined while the first's transaction slept, and their transaction began after it
      // ended: the first did not wait, and each of the three at least from joining to that sleep's
      // end (measured here rather than assumed from the timer, which a busy machine fires late)
      expect(firstSleptUntil).toBeGreaterThan(joinedBy);
      const waited = counted(METRIC.stageWait);
      expect(waited).toBeGreaterThanOrEqual((3 * (firstSleptUntil - joinedBy)) / 1000);
      expect(waited).toBeLessThan(counted(METRIC.stageBusy) * 3);
    } finally {
      await broker.stop();
    }
  });

  it("dead-letters a message that always fails and still handles the rest of its batch", async () => {
    const messages = Array.from({ length: 8 }, message);
    const broken = messages[2];
    const outcomes = await Promise.all(messages.map((m) => consume(deps, "batching:broken", "c", m, recording(m, m === broken ? 1_000 : 0))));
    expect(outcomes.filter((o) => o === "dead-lettered")).toHaveLength(1);
    expect(outcomes.filter((o) => o === "handled")).toHaveLength(7);
    const effects = await effectsOf(messages.map((m) => m.event_id));
    expect(effects.map((e) => e.message_id).sort()).toEqual(messages.filter((m) => m !== broken).map((m) => m.event_id).sort());
    const { rows } = await db.pool.query("SELECT count(*)::int AS n FROM messaging.dead_letters WHERE message_id = $1", [broken.event_id]);
    expect(rows[0].n).toBe(1);
    expect(messages.filter((m) => warnings.some((w) => w.includes(m.event_id)))).toEqual([broken]);
  }, 60_000);
});
