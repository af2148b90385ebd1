import type { Service, ServiceSchema } from "moleculer";
import {
  channelOf,
  participantOf,
  type AnyEnvelope,
  type CommandType,
  type DataOf,
  type Participant,
} from "../services/shared/catalogue.js";
import { consume, receive, type ConsumerDeps } from "../services/shared/messaging.js";
import type { CommandHandler, ParticipantHandlers } from "../services/shared/participant.js";
import type { ParticipantDriver } from "../services/shared/service-deps.js";
import type { Config } from "../services/shared/config.js";
import type { Database } from "../services/shared/database.js";
import type { PgEventStore } from "../services/event-store/pg-event-store.js";
import { checkoutReactions, type OrderLookup } from "./checkout.reactions.js";
import { checkoutSteps } from "./checkout.steps.js";

const FORWARD = new Set<CommandType>(checkoutSteps.map((s) => s.invoke));

/**
 * The two ways a participant is driven. Orchestrated: it subscribes to its own command channels.
 * Choreographed: it subscribes to the events its reactions follow and builds the same commands
 * from them. Either way the participant's handlers are the same code.
 */

export interface DriverDeps {
  config: Config;
  db: Database;
  store: PgEventStore;
}

/** Messages in flight per channel and process. */
const MAX_IN_FLIGHT = 16;

export function consumerDeps(deps: DriverDeps, svc: Service): ConsumerDeps {
  return {
    broker: svc.broker,
    pool: deps.db.pool,
    store: deps.store,
    serviceName: svc.name,
    sagaMode: deps.config.sagaMode,
    maxRetries: deps.config.maxRetries,
    logger: svc.logger,
  };
}

/** Runs a participant's command for one message; building the command is retried with it. */
function run<C extends CommandType>(
  deps: ConsumerDeps,
  consumer: string,
  channel: string,
  message: AnyEnvelope,
  handler: CommandHandler<DataOf<C>>,
  command: () => DataOf<C> | Promise<DataOf<C>>,
) {
  return consume(deps, consumer, channel, message, {
    prepare: async () => {
      const data = await command();
      return { data, prepared: handler.prepare ? await handler.prepare(data) : undefined };
    },
    handle: ({ tx, cause, prepared }) => handler.handle(prepared.data, { tx, cause, prepared: prepared.prepared }),
  });
}

export function orchestratedDriver(deps: DriverDeps): ParticipantDriver {
  return <P extends Participant>(participant: P, handlers: ParticipantHandlers<P>): Partial<ServiceSchema> => {
    const channels: ServiceSchema["channels"] = {};
    for (const [command, handler] of Object.entries(handlers) as [CommandType, CommandHandler<never>][]) {
      const channel = channelOf(command);
      channels[channel] = {
        group: participant,
        maxInFlight: MAX_IN_FLIGHT,
        async handler(this: Service, raw: unknown) {
          const consumer = `${participant}:${command}`;
          const cdeps = consumerDeps(deps, this);
          const message = await receive(cdeps, consumer, channel, raw);
          if (message) await run(cdeps, consumer, channel, message, handler, () => message.data as never);
        },
      };
    }
    return { channels };
  };
}

export function choreographedDriver(deps: DriverDeps): ParticipantDriver {
  const orderOf: OrderLookup = async (order_id) => {
    const [initiated] = await deps.store.byAggregate("orders", order_id);
    if (!initiated || initiated.event_type !== "OrderInitiated") throw new Error(`no OrderInitiated for ${order_id}`);
    return initiated.data;
  };
  return <P extends Participant>(participant: P, handlers: ParticipantHandlers<P>): Partial<ServiceSchema> => {
    const channels: ServiceSchema["channels"] = {};
    for (const reaction of checkoutReactions) {
      if (participantOf(reaction.run) !== participant) continue;
      const handler = (handlers as Record<string, CommandHandler<never>>)[reaction.run];
      const channel = channelOf(reaction.on);
      const consumer = `${participant}:${reaction.on}->${reaction.run}`;
      // the channel name is the key (the adapter prefixes it with the namespace), so a
      // participant reacts to one event type in one way
      if (channels[channel]) throw new Error(`${participant} has two reactions to ${reaction.on}`);
      channels[channel] = {
        // NATS durable names allow no dots, wildcards or arrows
        group: `${participant}_${reaction.on}_${reaction.run}`,
        maxInFlight: MAX_IN_FLIGHT,
        async handler(this: Service, raw: unknown) {
          const cdeps = consumerDeps(deps, this);
          const message = await receive(cdeps, consumer, channel, raw);
          if (!message) return;
          if (reaction.when && !reaction.when(message.data as never)) return;
          // a checkout the watchdog timed out takes no further step forward
          if (FORWARD.has(reaction.run) && (await deps.store.byAggregate("sagas", message.correlation_id)).length > 0) return;
          await run(cdeps, consumer, channel, message, handler, () => reaction.build(message.data as never, orderOf) as never);
        },
      };
    }
    return { channels };
  };
}
