import type { Context, Service, ServiceSchema } from "moleculer";
import { AGGREGATE_TYPES, isEventType, isCommandType, type AnyEnvelope } from "../shared/catalogue.js";
import { NotFound } from "../shared/errors.js";
import { countDeadLetters, listDeadLetters, takeDeadLetter } from "../messaging/dead-letters.js";
import type { ServiceDeps } from "../shared/service-deps.js";
import { replay } from "./aggregate-replay.js";
import { EventFollower } from "./event-follower.js";
import { CheckpointPace } from "./checkpoint-pace.js";
import { HandledWatermark } from "./handled-watermark.js";
import { relayPublisher, type RelayPublisher } from "./relay-publisher.js";
import type { StoredEvent } from "./pg-event-store.js";
import { ADVISORY_LOCKS } from "../database/advisory-locks.js";

const RELAY = "relay";
const RELAY_LOCK = ADVISORY_LOCKS.relayLeader;
/** The relay's checkpoint is written at most this often (a restart publishes at most that much again). */
const RELAY_CHECKPOINT_MS = 200;

const envelopeOf = ({ position: _, ...envelope }: StoredEvent): AnyEnvelope => envelope as AnyEnvelope;

const page = {
  limit: { type: "number", convert: true, integer: true, min: 1, max: 1000, optional: true },
  after: { type: "number", convert: true, integer: true, min: 0, optional: true },
} as const;

/**
 * The event store's API, and the outbox relay: it follows the global position and publishes each
 * stored message on its channel, then records how far it got. A restart resumes from that
 * checkpoint; what was published but not yet checkpointed goes out again, and consumers' inboxes
 * absorb the copy. Only one relay runs at a time (an advisory lock); others stand by.
 *
 * In process, where no broker holds a message, the checkpoint moves only past messages every
 * consumer has handled (`HandledWatermark`); one a handler failed on is published again
 * (relay-publisher.ts), as a broker would deliver it again.
 */
export function eventStoreService(deps: ServiceDeps): ServiceSchema {
  const { store, db } = deps;
  let relay: EventFollower | undefined;
  let publisher: RelayPublisher | undefined;
  const pace = new CheckpointPace(RELAY_CHECKPOINT_MS);
  const handled = new HandledWatermark();

  return {
    name: "event-store",
    actions: {
      list: {
        params: page,
        async handler(ctx: Context<{ limit?: number; after?: number }>) {
          const events = await store.readAll(ctx.params);
          return { events, next_after: events.length ? events[events.length - 1].position : (ctx.params.after ?? 0) };
        },
      },
      byType: {
        params: { event_type: "string", ...page },
        async handler(ctx: Context<{ event_type: string; limit?: number; after?: number }>) {
          const { event_type } = ctx.params;
          if (!isEventType(event_type) && !isCommandType(event_type)) {
            throw new NotFound(`"${event_type}" is not a message type of the catalogue`);
          }
          const events = await store.byType(event_type, ctx.params);
          return { event_type, events, next_after: events.length ? events[events.length - 1].position : (ctx.params.after ?? 0) };
        },
      },
      byCorrelation: {
        params: { correlation_id: "string" },
        async handler(ctx: Context<{ correlation_id: string }>) {
          const events = await store.byCorrelation(ctx.params.correlation_id);
          if (events.length === 0) throw new NotFound(`no events with correlation id ${ctx.params.correlation_id}`);
          return { correlation_id: ctx.params.correlation_id, events };
        },
      },
      replayAggregate: {
        params: { aggregate_type: "string", aggregate_id: "string" },
        async handler(ctx: Context<{ aggregate_type: string; aggregate_id: string }>) {
          const { aggregate_type } = ctx.params;
          if (!(AGGREGATE_TYPES as readonly string[]).includes(aggregate_type)) {
            throw new NotFound(`unknown aggregate type "${aggregate_type}"; known: ${AGGREGATE_TYPES.join(", ")}`);
          }
          // the orders aggregate is addressed as order_123 or 123
          const id = aggregate_type === "orders" && /^\d+$/.test(ctx.params.aggregate_id) ? `order_${ctx.params.aggregate_id}` : ctx.params.aggregate_id;
          const events = await store.byAggregate(aggregate_type, id);
          if (events.length === 0) throw new NotFound(`no events for ${aggregate_type}/${id}`);
          return { aggregate_type, aggregate_id: id, state: replay(events), events };
        },
      },
      deadLetterCount: {
        handler: () => countDeadLetters(db.pool),
      },
      deadLetters: {
        handler: () => listDeadLetters(db.pool),
      },
      /** Publishes a dead letter again to its channel; the consumer's inbox still guards against doubles. */
      replayDeadLetter: {
        params: { id: { type: "number", convert: true, integer: true, positive: true } },
        async handler(this: Service, ctx: Context<{ id: number }>) {
          const letter = await takeDeadLetter(db.pool, ctx.params.id);
          if (!letter) throw new NotFound(`no dead letter ${ctx.params.id}`);
          await this.broker.sendToChannel(letter.channel, letter.envelope);
          return { replayed: ctx.params.id, channel: letter.channel };
        },
      },
    },
    async started(this: Service) {
      const broker = this.broker;
      publisher = relayPublisher(deps.config, broker);
      const out = publisher;
      relay = new EventFollower({
        name: RELAY,
        db,
        store,
        logger: this.logger,
        pollMs: deps.config.relayPollMs,
        advisoryLock: RELAY_LOCK,
        async handle(events, upTo) {
          // consumers need no order within a batch: a checkout's messages that share one were written
          // by one transaction (several StockReserved lines, say), or went out once already (a
          // replay after a crash before the checkpoint), since each is caused by a published one
          handled.add(upTo, (await out.publish(events.map(envelopeOf))).handled);
          const due = pace.due;
          if (due) await store.saveCheckpoint(RELAY, handled.position);
          pace.handled(handled.position, due);
        },
      });
      await relay.start();
    },
    async stopped() {
      await relay?.stop();
      // how far every consumer got (a message still in a handler here is published again next time)
      if (handled.position > 0) await store.saveCheckpoint(RELAY, handled.position).catch(() => undefined);
      await publisher?.close();
    },
  };
}
