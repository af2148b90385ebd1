import { Middleware as ChannelsMiddleware } from "@moleculer/channels";
import { Transporters, type Middleware } from "moleculer";
import type { BrokerOptions, LoggerInstance, ServiceBroker } from "moleculer";
import type pg from "pg";
import { randomUUID } from "node:crypto";
import { ContractError, parseEnvelope, type AnyEnvelope, type AnyEmit, type AnyNewMessage } from "./catalogue.js";
import { inCurrentTrace } from "../../observability/tracing.js";
import { observeConsumerTransaction } from "../../observability/metrics.js";
import type { EnvelopeFactory } from "../messaging/envelope-factory.js";
import { InProcessChannels } from "../messaging/in-process-channels.js";
import type { Config } from "./config.js";
import { withTransaction, type Tx } from "./database.js";
import { joinCheckoutSql, type PgEventStore, type StoredEvent } from "../event-store/pg-event-store.js";
import { committed } from "./signals.js";
import { Batcher, BatchFailed, NO_LINGER, type Linger } from "./batcher.js";

/**
 * Requests a service process takes from RabbitMQ before the first is answered. Moleculer's AMQP
 * transporter acknowledges a request only once its action has finished and prefetches 1 by
 * default, so each process ran its actions one at a time: checkouts reached the order service's
 * placement batch, and lookups the users' coalesced read, one by one, and every consumer batch
 * downstream held one message (bench/baselines/HISTORY.md). NATS has no such limit; this one is set
 * above the bench's closed-loop clients and the largest consumer batch.
 */
const AMQP_REQUEST_PREFETCH = 64;

/**
 * The wire, chosen by configuration in this one place: the Moleculer transporter and the
 * durable-channel adapter both follow `TRANSPORTER`. Business code never names a transport.
 */
export function transporterOptions(config: Config): BrokerOptions["transporter"] {
  switch (config.transport) {
    case "memory":
      return undefined;
    case "nats":
      return { type: "NATS", options: { url: config.transporterUrl } };
    case "amqp":
      // Without noDelay every request/reply hop waits ~40 ms (Nagle against delayed ACKs).
      return new AmqpTransporter({ url: config.transporterUrl, socketOptions: { noDelay: true }, prefetch: AMQP_REQUEST_PREFETCH });
  }
}

/**
 * Moleculer's AMQP transporter, whose publish rejects instead of throwing. Its `send` calls
 * amqplib's `publish`, which throws at once on a channel that is closing; Moleculer's callers
 * (the heartbeat timer above all, which can fire while `broker.stop()` disconnects) only catch a
 * rejected promise, so the throw escaped as an unhandled rejection. As a rejection, the caller's
 * own handling applies: the heartbeat logs it, a request fails.
 */
class AmqpTransporter extends Transporters.AMQP {
  override send(topic: string, data: Buffer, meta: Parameters<Transporters.Base["send"]>[2]): Promise<void> {
    try {
      return super.send(topic, data, meta);
    } catch (err) {
      return Promise.reject(err);
    }
  }
}

type ChannelsHooks = Middleware & {
  created(broker: unknown): unknown;
  serviceCreated(svc: unknown): Promise<unknown>;
  started(broker: unknown): Promise<unknown>;
};

/** The parts of @moleculer/channels' AMQP adapter that `recoverAmqpChannels` works with. */
interface AmqpAdapter {
  stopping: boolean;
  logger: { warn(line: string): void };
  connection: { close(): Promise<void> } | null;
  channel: AmqpChannel | null;
  subscriptions: Map<string, { consumerTag: string }>;
  tryConnect(): Promise<void>;
}
interface AmqpChannel {
  ack(msg: AmqpMessage, ...rest: unknown[]): void;
  nack(msg: AmqpMessage, ...rest: unknown[]): void;
  on(event: "close", listener: () => void): unknown;
}
interface AmqpMessage {
  fields: { consumerTag: string };
}

/**
 * Two gaps of the channels AMQP adapter (0.1) that a RabbitMQ restart opens:
 * - a handler still running when the connection dropped acknowledges its message, once done, on
 *   the *new* channel, with a delivery tag that channel never issued; RabbitMQ answers by closing
 *   the channel (406 PRECONDITION_FAILED, "unknown delivery tag");
 * - a channel closed by the server while the connection stays up is only logged: its consumers
 *   stay dead until the process restarts, and their messages wait in the queue.
 * So: an acknowledgement of a message delivered on a channel that is gone is dropped (RabbitMQ has
 * already put the message back, and the inbox absorbs its second delivery), and a channel the
 * server closes takes its connection down with it, which the adapter does recover from: it
 * reconnects and subscribes every channel again.
 */
function recoverAmqpChannels(adapter: AmqpAdapter): void {
  const tryConnect = adapter.tryConnect.bind(adapter);
  adapter.tryConnect = async () => {
    await tryConnect();
    const { channel, connection } = adapter;
    if (!channel || !connection) return;
    const current = (msg: AmqpMessage) => {
      if ([...adapter.subscriptions.values()].some((s) => s.consumerTag === msg.fields.consumerTag)) return true;
      adapter.logger.warn(`AMQP: not acknowledging a message of consumer ${msg.fields.consumerTag}, whose channel is gone; RabbitMQ delivers it again`);
      return false;
    };
    const ack = channel.ack.bind(channel);
    const nack = channel.nack.bind(channel);
    channel.ack = (msg, ...rest) => (current(msg) ? ack(msg, ...rest) : undefined);
    channel.nack = (msg, ...rest) => (current(msg) ? nack(msg, ...rest) : undefined);
    channel.on("close", () => {
      if (adapter.stopping || adapter.connection !== connection) return;
      try {
        void connection.close().catch(() => undefined); // already closing: the adapter reconnects anyway
      } catch {
        // closed already
      }
    });
  };
}

export function channelsMiddleware(config: Config): Middleware {
  const channels = ChannelsMiddleware(channelsOptions(config) as never) as unknown as ChannelsHooks;
  // @moleculer/channels registers a service's channels in an async serviceCreated hook, which
  // Moleculer does not await, and its started hook subscribes only the channels registered by
  // then: a broker that starts quickly (in memory) lost the orchestrator's last subscriptions.
  const registering: Promise<unknown>[] = [];
  return {
    ...channels,
    created(broker: unknown) {
      const result = channels.created(broker);
      if (config.transport === "amqp") recoverAmqpChannels((broker as { channelAdapter: AmqpAdapter }).channelAdapter);
      return result;
    },
    serviceCreated(svc: unknown) {
      const done = channels.serviceCreated(svc);
      registering.push(done);
      return done;
    },
    async started(broker: unknown) {
      await Promise.all(registering);
      return channels.started(broker);
    },
  } as Middleware;
}

/**
 * Messages in flight per channel and process: what a consumer's next transaction can take while
 * one runs. At saturation each consumer is a stage running one transaction at a time, holding
 * about half of these; 16 left the busiest stages batches of 8 (bench/baselines/HISTORY.md).
 */
export const MAX_IN_FLIGHT = 32;

function channelsOptions(config: Config): object {
  switch (config.transport) {
    case "memory":
      return { adapter: new InProcessChannels({ maxInFlight: MAX_IN_FLIGHT, prefix: config.namespace }) };
    case "nats":
      return {
        adapter: {
          type: "NATS",
          options: {
            maxInFlight: MAX_IN_FLIGHT,
            // NAMESPACE, not the broker's per-system transit namespace (system.ts)
            prefix: config.namespace,
            maxRetries: 50,
            nats: {
              url: config.transporterUrl,
              // no stack trace captured for each JetStream publish and its timeout (the
              // relay's publishes spent a quarter of their process's CPU in them)
              connectionOptions: { noAsyncTraces: true },
              streamConfig: { storage: "file" },
              consumerOptions: { config: { deliver_policy: "new", ack_policy: "explicit", ack_wait: 10e9 } },
            },
          },
        },
      };
    case "amqp":
      return {
        adapter: {
          type: "AMQP",
          options: {
            maxInFlight: MAX_IN_FLIGHT,
            // NAMESPACE, not the broker's per-system transit namespace (system.ts)
            prefix: config.namespace,
            maxRetries: 50,
            amqp: {
              url: config.transporterUrl,
              socketOptions: { noDelay: true },
              queueOptions: { durable: true },
              exchangeOptions: { durable: true },
              messageOptions: { persistent: true },
              // an event nobody subscribes to (yet) must not close the channel with 404
              publishAssertExchange: { enabled: true, exchangeOptions: { durable: true } },
            },
          },
        },
      };
  }
}

/**
 * Fault injection (CHAOS_DUPLICATE_DELIVERY=1): every channel message reaches its handler twice,
 * both copies at once, as a broker's redelivery after a lost acknowledgement would.
 */
export function duplicateDeliveryMiddleware(): Middleware {
  return {
    name: "DuplicateDelivery",
    localChannel(next: (msg: unknown, raw: unknown) => Promise<unknown>) {
      return async (msg: unknown, raw: unknown) => {
        await Promise.all([next(msg, raw), next(msg, raw)]);
      };
    },
  } as unknown as Middleware;
}

export interface HandlerContext {
  tx: Tx;
  /** The message being handled. */
  cause: AnyEnvelope;
  /** The transaction's batch: the messages it handles, and work done once for all of them. */
  batch: BatchScope;
}

/** What the handlers of one transaction share. */
export interface BatchScope {
  /** Every message this transaction handles, in order (duplicates left out). */
  readonly messages: readonly AnyEnvelope[];
  /**
   * The value under `key`, made by the first handler that asks (for instance the rows of every
   * message's saga, read and locked in one statement). `flush`, given with it, runs once after
   * the batch's last handler and before its append (writing those rows back in one statement).
   */
  shared<T>(key: symbol, open: () => Promise<T>, flush?: (value: T) => Promise<void>): Promise<T>;
}

export interface ConsumerDeps {
  broker: ServiceBroker;
  pool: pg.Pool;
  store: PgEventStore;
  envelopes: EnvelopeFactory;
  serviceName: string;
  maxRetries: number;
  logger: LoggerInstance;
  /** Under load, how long a consumer's next batch may wait to grow (`CONSUMER_LINGER_MS`; 0: never). */
  lingerMs?: number;
}

export type ConsumeOutcome = "handled" | "duplicate" | "dead-lettered";

export interface Work<P> {
  /** Slow work outside the transaction (a provider call, a lookup in another service). */
  prepare?(): Promise<P>;
  handle(ctx: HandlerContext & { prepared: P }): Promise<readonly AnyEmit[]>;
}

/**
 * Handles one channel message exactly once in effect: the inbox row, the handler's state changes
 * and the events it emits commit in one transaction, so a redelivered message finds its id in the
 * inbox and changes nothing. Failures are retried with backoff; after `maxRetries` the message is
 * parked in `messaging.dead_letters` (listed and replayed through the event-store service).
 *
 * Messages for one consumer that arrive while its transaction runs are handled together in the
 * next one (see `ConsumerBatcher`): under load, one commit and one append serve many messages.
 */
export async function consume<P>(
  deps: ConsumerDeps,
  consumer: string,
  channel: string,
  message: AnyEnvelope,
  work: Work<P>,
): Promise<ConsumeOutcome> {
  let solo = false;
  for (let attempt = 1; ; attempt++) {
    try {
      // No look in the inbox before `prepare`: the transaction's claim decides, and a rare
      // redelivery redoing `prepare` costs less than one more round trip on every message.
      const prepared = work.prepare ? await work.prepare() : (undefined as P);
      const item: Batched = {
        message,
        queuedAt: performance.now(),
        // the handler runs, and its messages are built, in this message's trace
        run: inCurrentTrace(async (tx: Tx, batch: BatchScope) => {
          const emits = await work.handle({ tx, cause: message, batch, prepared });
          return deps.envelopes.causedBy(emits, message, deps.serviceName);
        }),
      };
      const outcome = solo ? (await handleBatch(deps, consumer, [item]))[0] : await batcherOf(deps, consumer).submit(item);
      if (outcome === "handled") committed();
      return outcome;
    } catch (err) {
      if (err instanceof BatchFailed) {
        // a batch fails as a whole: each of its messages is tried again alone, as the first attempt
        solo = true;
        attempt--;
        continue;
      }
      if (attempt > deps.maxRetries) {
        await deadLetter(deps, consumer, channel, message, err, attempt);
        return "dead-lettered";
      }
      deps.logger.warn(`${consumer}: ${message.event_type} ${message.event_id} failed (attempt ${attempt}): ${String(err)}`);
      await new Promise((r) => setTimeout(r, Math.min(50 * 2 ** attempt, 5_000)));
    }
  }
}

/** One message waiting for its consumer's next transaction. */
interface Batched {
  message: AnyEnvelope;
  /** When it joined its consumer's queue (`performance.now()`). */
  queuedAt: number;
  /** The handler, inside the transaction: returns the messages it emits. */
  run(tx: Tx, batch: BatchScope): Promise<AnyNewMessage[]>;
}

/** Joins the writers of every checkout of the batch, then claims every message in the inbox. */
const CLAIM = `WITH joined AS MATERIALIZED (SELECT count(${joinCheckoutSql("c")}) AS n FROM unnest($3::text[]) AS c)
  INSERT INTO messaging.inbox (consumer, message_id)
  SELECT $1, m FROM joined, unnest($2::uuid[]) AS m ON CONFLICT DO NOTHING RETURNING message_id`;

/** Largest number of messages one transaction takes (twice `MAX_IN_FLIGHT`: an orchestrator takes several channels). */
export const MAX_BATCH = 64;

/**
 * One transaction for a consumer's messages: it joins every checkout's writers and claims every
 * message in one statement, runs the handlers one after the other in arrival order (each sees
 * what the ones before it wrote) and appends everything they emit in one statement. A message
 * already in the inbox (a redelivery, or two copies in one batch) is a duplicate and runs nothing.
 */
async function handleBatch(deps: ConsumerDeps, consumer: string, items: readonly Batched[]): Promise<("handled" | "duplicate")[]> {
  const started = performance.now();
  let committed: { messages: number; waitedSeconds: number } | null = null;
  try {
    const outcomes = await runBatch(deps, consumer, items);
    committed = { messages: items.length, waitedSeconds: items.reduce((sum, i) => sum + (started - i.queuedAt), 0) / 1000 };
    return outcomes;
  } finally {
    observeConsumerTransaction(deps.broker, consumer, (performance.now() - started) / 1000, committed);
  }
}

async function runBatch(deps: ConsumerDeps, consumer: string, items: readonly Batched[]): Promise<("handled" | "duplicate")[]> {
  return withTransaction(deps.pool, async (tx) => {
    const checkouts = [...new Set(items.map((i) => i.message.correlation_id))].sort();
    const { rows } = await tx.query(CLAIM, [consumer, items.map((i) => i.message.event_id), checkouts]);
    const claimed = new Set(rows.map((r) => String(r.message_id)));
    // a copy of a message already claimed by this batch is a duplicate too
    const outcomes = items.map((i) => (claimed.delete(i.message.event_id.toLowerCase()) ? "handled" : "duplicate"));
    const fresh = items.filter((_, n) => outcomes[n] === "handled");
    const memo = new Map<symbol, Promise<unknown>>();
    const flushes: (() => Promise<void>)[] = [];
    const batch: BatchScope = {
      messages: fresh.map((i) => i.message),
      shared<T>(key: symbol, open: () => Promise<T>, flush?: (value: T) => Promise<void>) {
        let value = memo.get(key) as Promise<T> | undefined;
        if (!value) {
          memo.set(key, (value = open()));
          if (flush) flushes.push(async () => flush(await value!));
        }
        return value;
      },
    };
    const emitted: AnyNewMessage[] = [];
    for (const item of fresh) emitted.push(...(await item.run(tx, batch)));
    for (const flush of flushes) await flush();
    await deps.store.append(tx, emitted);
    return outcomes;
  });
}

/**
 * A consumer under load (its last batch took 4 messages or more) lets its next batch wait, up to
 * `CONSUMER_LINGER_MS`, for four times as many. A stage that is not the bottleneck otherwise runs
 * a small transaction for every burst its upstream commits, each paying BEGIN, the claim, the
 * append and COMMIT again, and takes the CPU from the stage that is; at low load (batches of one
 * to three) nothing waits. Measured in bench/baselines/HISTORY.md (sixteenth machine).
 */
export function consumerLinger(ms: number): Linger {
  return ms > 0 ? { ms, from: 4, growth: 4 } : NO_LINGER;
}

type ConsumerBatcher = Batcher<Batched, "handled" | "duplicate">;
const batchers = new WeakMap<pg.Pool, Map<string, ConsumerBatcher>>();

/** A consumer's messages that arrive while its transaction runs go together into the next one. */
function batcherOf(deps: ConsumerDeps, consumer: string): ConsumerBatcher {
  let byConsumer = batchers.get(deps.pool);
  if (!byConsumer) batchers.set(deps.pool, (byConsumer = new Map()));
  let batcher = byConsumer.get(consumer);
  if (!batcher) byConsumer.set(consumer, (batcher = new Batcher((items) => handleBatch(deps, consumer, items), MAX_BATCH, consumerLinger(deps.lingerMs ?? 0))));
  return batcher;
}

/**
 * Parses a channel message against the catalogue. One that does not match can never succeed, so
 * it is dead-lettered at once (and acknowledged) instead of being retried.
 */
export async function receive(deps: ConsumerDeps, consumer: string, channel: string, raw: unknown): Promise<AnyEnvelope | null> {
  try {
    return parseEnvelope(raw);
  } catch (err) {
    if (!(err instanceof ContractError)) throw err;
    await deadLetter(deps, consumer, channel, raw, err, 1);
    return null;
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

async function deadLetter(deps: ConsumerDeps, consumer: string, channel: string, message: unknown, err: unknown, attempts: number): Promise<void> {
  const m = (message ?? {}) as { event_id?: unknown; event_type?: unknown };
  const id = typeof m.event_id === "string" && UUID.test(m.event_id) ? m.event_id : randomUUID();
  deps.logger.error(`${consumer}: ${String(m.event_type)} ${id} dead-lettered after ${attempts} attempt(s): ${String(err)}`);
  await deps.pool.query(
    `INSERT INTO messaging.dead_letters (consumer, channel, message_id, envelope, error, attempts)
     VALUES ($1, $2, $3, $4, $5, $6)`,
    [consumer, channel, id, JSON.stringify(message ?? null), String(err instanceof Error ? err.stack ?? err.message : err), attempts],
  );
}

export type { StoredEvent };
