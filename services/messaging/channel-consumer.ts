import type { Service, ServiceSchema } from "moleculer";
import type pg from "pg";
import type { AnyEnvelope } from "../shared/catalogue.js";
import { receive, type ConsumeOutcome, type ConsumerDeps } from "./consume.js";
import { MAX_IN_FLIGHT } from "./transport.js";
import type { PgEventStore } from "../event-store/pg-event-store.js";
import type { EnvelopeFactory } from "./envelope-factory.js";

/** What a subscription's handler returns; the metrics middleware counts it. */
export type ChannelOutcome = ConsumeOutcome | "foreign" | "skipped";

export interface ConsumerBase {
  pool: pg.Pool;
  store: PgEventStore;
  envelopes: EnvelopeFactory;
  maxRetries: number;
  lingerMs: number;
}

export interface Subscription {
  channel: string;
  /** The consumer group on the broker (NATS durable names allow no dots or arrows). */
  group: string;
  /** Names the consumer in the inbox, dead letters, logs and metrics. */
  consumer: string;
  handle(message: AnyEnvelope, deps: ConsumerDeps): Promise<ConsumeOutcome | "skipped">;
}

/** A channel definition that also names its consumer, for the middlewares. */
export type ConsumerChannel = NonNullable<ServiceSchema["channels"]>[string] & { consumer: string };

export function consumerDeps(base: ConsumerBase, svc: Service): ConsumerDeps {
  return { ...base, broker: svc.broker, serviceName: svc.name, logger: svc.logger };
}

/**
 * Every subscription of the system is built here: the message is parsed against the catalogue
 * (a malformed one is dead-lettered at once), a message of another system (another database
 * sharing the broker namespace, or a durable consumer left by an earlier run) is acknowledged
 * and dropped, and the rest goes to the subscription's handler. Spans and counts are added
 * around it by the middlewares (observability/).
 */
export function consumerChannels(base: ConsumerBase, subscriptions: readonly Subscription[]): NonNullable<ServiceSchema["channels"]> {
  const channels: Record<string, ConsumerChannel> = {};
  // Each system has its own consumer groups: two systems sharing a namespace would otherwise
  // compete for one queue, and a message taken (and dropped) by the other would be lost to its own.
  const system = base.envelopes.identity.systemId.replace(/-/g, "").slice(0, 12);
  for (const s of subscriptions) {
    // the channel name is the key (the adapter prefixes it with the namespace)
    if (channels[s.channel]) throw new Error(`two subscriptions to ${s.channel} in one service (${s.consumer})`);
    channels[s.channel] = {
      group: `${s.group}_${system}`,
      maxInFlight: MAX_IN_FLIGHT,
      consumer: s.consumer,
      async handler(this: Service, raw: unknown): Promise<ChannelOutcome> {
        const deps = consumerDeps(base, this);
        const message = await receive(deps, s.consumer, s.channel, raw);
        if (!message) return "dead-lettered";
        const own = base.envelopes.identity.systemId;
        if (message.metadata.system_id !== own) {
          this.logger.warn(
            `${s.consumer}: dropped ${message.event_type} ${message.event_id} of system ${String(message.metadata.system_id ?? "(none)")}; this system is ${own}`,
          );
          return "foreign";
        }
        return s.handle(message, deps);
      },
    };
  }
  return channels;
}
