import type { ServiceSchema } from "moleculer";
import {
  channelOf,
  isMessage,
  participantOf,
  type AnyEnvelope,
  type CommandType,
  type DataOf,
  type Participant,
} from "../services/shared/catalogue.js";
import { consume, type BatchScope, type ConsumerDeps } from "../services/messaging/consume.js";
import type { Tx } from "../services/database/database.js";
import { consumerChannels, type ConsumerBase, type Subscription } from "../services/messaging/channel-consumer.js";
import type { EnvelopeFactory } from "../services/messaging/envelope-factory.js";
import type { CommandHandler, ParticipantHandlers, QueuedCommand } from "../services/shared/participant.js";
import type { ParticipantDriver } from "../services/shared/service-deps.js";
import type { Config } from "../services/shared/config.js";
import type { Database } from "../services/database/database.js";
import type { PgEventStore } from "../services/event-store/pg-event-store.js";
import { checkoutReactions, reactionConsumer, type OrderLookup } from "./checkout.reactions.js";
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
  envelopes: EnvelopeFactory;
}

export function consumerBase(deps: DriverDeps): ConsumerBase {
  return { pool: deps.db.pool, store: deps.store, envelopes: deps.envelopes, maxRetries: deps.config.maxRetries, lingerMs: deps.config.consumerLingerMs };
}

const TIMED_OUT = Symbol("checkouts timed out");

/**
 * The checkouts of a batch that the watchdog has timed out, read once per transaction. The
 * transaction's claim has joined each checkout's writers, and the watchdog records a timeout
 * only as their sole writer: what this sees cannot change before the transaction commits.
 */
function timedOut(store: PgEventStore, tx: Tx, batch: BatchScope): Promise<Set<string>> {
  return batch.shared(TIMED_OUT, () => store.aggregatesWithEvents(tx, "sagas", [...new Set(batch.messages.map((m) => m.correlation_id))]));
}

const BATCH_EVENTS = Symbol("the events of a batch's commands, carried out together");

/** The command `prepare` built for each message, for handlers that carry out a batch at once. */
const queued = new WeakMap<AnyEnvelope, QueuedCommand<unknown, unknown>>();

/**
 * Runs a participant's command for one message; building the command is retried with it. A
 * step forward (`forward`) is not taken for a checkout the watchdog has timed out. A handler
 * that carries out a batch at once (`handleAll`) runs once for the transaction's messages, when
 * the first of them comes to it; each message then takes its own events.
 */
function run<D>(
  deps: ConsumerDeps,
  consumer: string,
  channel: string,
  message: AnyEnvelope,
  handler: CommandHandler<D>,
  command: () => D | Promise<D>,
  forward = false,
) {
  return consume(deps, consumer, channel, message, {
    prepare: async () => {
      const data = await command();
      const next: QueuedCommand<D> = { data, prepared: handler.prepare ? await handler.prepare(data) : undefined };
      if (handler.handleAll) queued.set(message, next);
      return next;
    },
    handle: async ({ tx, cause, batch, prepared }) => {
      const stopped = forward ? await timedOut(deps.store, tx, batch) : undefined;
      if (stopped?.has(cause.correlation_id)) return [];
      if (!handler.handleAll) return handler.handle(prepared.data, { tx, cause, prepared: prepared.prepared });
      const events = await batch.shared(BATCH_EVENTS, async () => {
        // every message of the batch came through here: a batch holds one consumer's messages
        const taking = batch.messages.filter((m) => !stopped?.has(m.correlation_id));
        const commands = taking.map((m) => queued.get(m) as QueuedCommand<D> | undefined);
        if (commands.some((c) => !c)) throw new Error(`${consumer}: a message of the batch has no prepared command`);
        const outcome = await handler.handleAll(tx, commands as QueuedCommand<D>[]);
        if (outcome.length !== taking.length) throw new Error(`${consumer}: ${outcome.length} outcomes for ${taking.length} commands`);
        return new Map(taking.map((m, i) => [m, outcome[i]!]));
      });
      return events.get(cause) ?? [];
    },
  });
}

type AnyCommandData = DataOf<CommandType>;

/**
 * A participant's handlers by command. The table pairs each command with its handler by name,
 * which the types cannot follow through a command named at run time: the handler takes the
 * command's data, checked against its type where the message comes in.
 */
const handlersByCommand = <P extends Participant>(handlers: ParticipantHandlers<P>) =>
  handlers as unknown as Partial<Record<CommandType, CommandHandler<AnyCommandData>>>;

/** A command message's data; the message came on its command's channel. */
function commandData(message: AnyEnvelope, command: CommandType): AnyCommandData {
  if (!isMessage(message, command)) throw new Error(`${command}'s channel brought a ${message.event_type}`);
  return message.data;
}

export function orchestratedDriver(deps: DriverDeps): ParticipantDriver {
  return <P extends Participant>(participant: P, handlers: ParticipantHandlers<P>): Partial<ServiceSchema> => {
    const subscriptions = Object.entries(handlersByCommand(handlers)).map(([name, handler]): Subscription => {
      const command = name as CommandType;
      const channel = channelOf(command);
      const consumer = `${participant}:${command}`;
      return {
        channel,
        group: participant,
        consumer,
        handle: (message, cdeps) => run(cdeps, consumer, channel, message, handler!, () => commandData(message, command)),
      };
    });
    return { channels: consumerChannels(consumerBase(deps), subscriptions) };
  };
}

/** Orders whose OrderInitiated a process keeps at hand (a few seconds of checkouts at full load). */
const ORDERS_KEPT = 2_000;

export function choreographedDriver(deps: DriverDeps): ParticipantDriver {
  // An order's OrderInitiated never changes, so what this process has seen of it (the reaction
  // to it runs here, or an earlier lookup did) needs no second read of the event store.
  const orders = new Map<string, DataOf<"OrderInitiated">>();
  const keep = (data: DataOf<"OrderInitiated">) => {
    orders.delete(data.order_id);
    orders.set(data.order_id, data);
    if (orders.size > ORDERS_KEPT) orders.delete(orders.keys().next().value!);
  };
  const orderOf: OrderLookup = async (order_id) => {
    const kept = orders.get(order_id);
    if (kept) return kept;
    const [initiated] = await deps.store.byAggregate("orders", order_id);
    if (!initiated || initiated.event_type !== "OrderInitiated") throw new Error(`no OrderInitiated for ${order_id}`);
    keep(initiated.data);
    return initiated.data;
  };
  return <P extends Participant>(participant: P, handlers: ParticipantHandlers<P>): Partial<ServiceSchema> => {
    const subscriptions: Subscription[] = [];
    for (const reaction of checkoutReactions) {
      if (participantOf(reaction.run) !== participant) continue;
      const handler = handlersByCommand(handlers)[reaction.run];
      if (!handler) throw new Error(`${participant} has no handler for ${reaction.run}, which the choreography sends it`);
      const channel = channelOf(reaction.on);
      const consumer = reactionConsumer(reaction);
      subscriptions.push({
        channel,
        // NATS durable names allow no dots, wildcards or arrows
        group: `${participant}_${reaction.on}_${reaction.run}`,
        consumer,
        async handle(message, cdeps) {
          if (isMessage(message, "OrderInitiated")) keep(message.data);
          if (!reaction.applies(message)) return "skipped";
          // a checkout the watchdog timed out takes no further step forward
          return run(cdeps, consumer, channel, message, handler, () => reaction.commandFor(message, orderOf), FORWARD.has(reaction.run));
        },
      });
    }
    // a participant reacts to one event type in one way: consumerChannels refuses a second
    return { channels: consumerChannels(consumerBase(deps), subscriptions) };
  };
}
