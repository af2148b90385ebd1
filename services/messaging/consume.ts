import type { LoggerInstance, ServiceBroker } from "moleculer";
import type pg from "pg";
import { ContractError, parseEnvelope, type AnyEnvelope, type AnyEmit, type AnyNewMessage } from "../shared/catalogue.js";
import { inCurrentTrace } from "../../observability/tracing.js";
import { observeConsumerTransaction } from "../../observability/metrics.js";
import type { EnvelopeFactory } from "./envelope-factory.js";
import { withTransaction, type Queryable, type Tx } from "../database/database.js";
import { joinCheckoutSql, type PgEventStore, type StoredEvent } from "../event-store/pg-event-store.js";
import { committed } from "../event-store/commit-signal.js";
import { Batcher, BatchFailed, NO_LINGER, type Linger } from "../shared/batcher.js";
import { parkDeadLetter } from "./dead-letters.js";

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

function deadLetter(deps: ConsumerDeps, consumer: string, channel: string, message: unknown, error: unknown, attempts: number): Promise<void> {
  return parkDeadLetter(deps.pool, deps.logger, { consumer, channel, message, error, attempts });
}

export type { StoredEvent };

/** A consumer's claim on one message, as its inbox records it. */
export interface Claim {
  consumer: string;
  message_id: string;
}

const claimKey = (c: Claim) => `${c.consumer} ${c.message_id.toLowerCase()}`;

/**
 * The claims their consumers have settled: handled (the inbox holds them) or, with
 * `deadLetters`, given up on and not yet replayed (those wait for an operator). For the sweeps
 * that look for messages lost on their way; one statement.
 */
export async function settledClaims(db: Queryable, claims: readonly Claim[], opts: { deadLetters: boolean }): Promise<(claim: Claim) => boolean> {
  if (claims.length === 0) return () => false;
  const { rows } = await db.query(
    `SELECT i.consumer, i.message_id::text AS message_id
       FROM unnest($1::text[], $2::uuid[]) AS c(consumer, message_id)
       JOIN messaging.inbox i ON i.consumer = c.consumer COLLATE "C" AND i.message_id = c.message_id
     UNION ALL
     SELECT consumer, message_id::text FROM messaging.dead_letters
      WHERE $3 AND message_id = ANY($2::uuid[]) AND replayed_at IS NULL`,
    [claims.map((c) => c.consumer), claims.map((c) => c.message_id), opts.deadLetters],
  );
  const settled = new Set(rows.map((r) => claimKey(r as Claim)));
  return (claim) => settled.has(claimKey(claim));
}
