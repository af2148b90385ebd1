import amqp from "amqplib";
import type { ServiceBroker } from "moleculer";
import { channelOf, MESSAGE_TYPES, type AnyEnvelope } from "../shared/catalogue.js";
import type { Config } from "../shared/config.js";

/** How the relay hands stored messages to the broker; resolves once the broker holds them. */
export interface RelayPublisher {
  publish(batch: readonly AnyEnvelope[]): Promise<void>;
  close(): Promise<void>;
}

/**
 * In memory and over NATS the channel adapter does the job: JetStream's publish resolves on the
 * stream's acknowledgement. The AMQP adapter publishes on a plain channel without confirms, so
 * over RabbitMQ the relay keeps its own confirm channel: a message counts as published only when
 * RabbitMQ has confirmed it, and the checkpoint moves only after that. Either way each message
 * passes the broker's channel send hooks (the tracing and metrics middlewares): its publish span
 * continues from the trace context stored with it.
 */
export function relayPublisher(config: Config, broker: ServiceBroker): RelayPublisher {
  const publisher = basePublisher(config, broker);
  if (!config.duplicateDelivery) return publisher;
  // fault injection: as if the relay had crashed after publishing, before its checkpoint
  return {
    publish: async (batch) => {
      await publisher.publish(batch);
      await publisher.publish(batch);
    },
    close: () => publisher.close(),
  };
}

interface NatsChannelAdapter {
  addPrefixTopic(topic: string): string;
  createStream(name: string, subjects: string[], opts: object): Promise<void>;
}

function basePublisher(config: Config, broker: ServiceBroker): RelayPublisher {
  if (config.transport === "amqp") return new AmqpConfirmPublisher(config.transporterUrl!, config.namespace, broker);
  let streams: Promise<void> | undefined;
  // The NATS adapter creates a channel's stream when someone subscribes; a message on a channel
  // nobody has subscribed to yet would be refused (503). Create every channel's stream first.
  const ensureStreams = () =>
    (streams ??= (async () => {
      const adapter = (broker as unknown as { channelAdapter: NatsChannelAdapter }).channelAdapter;
      for (const type of MESSAGE_TYPES) {
        const subject = adapter.addPrefixTopic(channelOf(type));
        await adapter.createStream(subject.split(".").join("_"), [subject], {});
      }
    })().catch((err) => {
      streams = undefined;
      throw err;
    }));
  return {
    async publish(batch) {
      if (config.transport === "nats") await ensureStreams();
      await Promise.all(batch.map((e) => broker.sendToChannel(channelOf(e.event_type), e)));
    },
    async close() {},
  };
}

type Send = (channel: string, payload: AnyEnvelope, opts: { headers?: Record<string, string> }) => Promise<void>;

class AmqpConfirmPublisher implements RelayPublisher {
  private connection?: amqp.ChannelModel;
  private channel?: amqp.ConfirmChannel;
  private readonly asserted = new Set<string>();
  /** One message onto the open confirm channel, wrapped by the same hooks as `sendToChannel`. */
  private readonly send: Send;

  constructor(
    private readonly url: string,
    /** The channel adapter prefixes exchange names with the namespace; so must we. */
    private readonly prefix: string,
    broker: ServiceBroker,
  ) {
    const raw: Send = async (name, e, opts) => {
      const exchange = `${this.prefix}.${name}`;
      this.channel!.publish(exchange, "", Buffer.from(JSON.stringify(e)), {
        persistent: true,
        contentType: "application/json",
        headers: opts.headers,
      });
    };
    this.send = (broker.wrapMethod as unknown as (name: string, handler: Send) => Send)("sendToChannel", raw);
  }

  private async open(): Promise<amqp.ConfirmChannel> {
    if (this.channel) return this.channel;
    const connection = await amqp.connect(this.url, { noDelay: true });
    const channel = await connection.createConfirmChannel();
    const reset = () => {
      this.channel = undefined;
      this.connection = undefined;
      this.asserted.clear();
    };
    connection.on("error", reset);
    connection.on("close", reset);
    channel.on("error", reset);
    channel.on("close", reset);
    this.connection = connection;
    this.channel = channel;
    return channel;
  }

  async publish(batch: readonly AnyEnvelope[]): Promise<void> {
    const channel = await this.open();
    for (const e of batch) {
      const exchange = `${this.prefix}.${channelOf(e.event_type)}`;
      if (!this.asserted.has(exchange)) {
        await channel.assertExchange(exchange, "fanout", { durable: true });
        this.asserted.add(exchange);
      }
      await this.send(channelOf(e.event_type), e, {});
    }
    await channel.waitForConfirms();
  }

  async close(): Promise<void> {
    await this.connection?.close().catch(() => undefined);
  }
}
