import { Middleware as ChannelsMiddleware } from "@moleculer/channels";
import { Transporters, type Middleware } from "moleculer";
import type { BrokerOptions } from "moleculer";
import { InProcessChannels } from "./in-process-channels.js";
import type { Config } from "../shared/config.js";

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
