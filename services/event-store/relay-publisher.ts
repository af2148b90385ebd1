import amqp from "amqplib";
import type { ServiceBroker } from "moleculer";
import { channelOf, MESSAGE_TYPES, type AnyEnvelope } from "../shared/catalogue.js";
import type { Config } from "../shared/config.js";
import type { InProcessSendOptions } from "../messaging/in-process-channels.js";

/** How the relay hands stored messages to the broker; resolves once the broker holds them. */
export interface RelayPublisher {
  publish(batch: readonly AnyEnvelope[]): Promise<Published>;
  close(): Promise<void>;
}

export interface Published {
  /**
   * In process, where nothing holds a message but its handlers: settles once every consumer has
   * handled each message of the batch (rejects if a handler failed). Absent where a broker holds
   * the batch once it is published.
   */
  handled?: Promise<void>;
}

/**
 * Over NATS the channel adapter does the job: JetStream's publish resolves on the stream's
 * acknowledgement. In process the adapter tells when each message has been handled, which is
 * when it is safe (`inProcessPublisher`). The AMQP adapter publishes on a plain channel without
 * confirms, so over RabbitMQ the relay keeps its own confirm channel: a message counts as
 * published only when RabbitMQ has confirmed it, and the checkpoint moves only after that. Either way each message
 * passes the broker's channel send hooks (the tracing and metrics middlewares): its publish span
 * continues from the trace context stored with it.
 */
export function relayPublisher(config: Config, broker: ServiceBroker): RelayPublisher {
  const publisher = basePublisher(config, broker);
  if (!config.duplicateDelivery) return publisher;
  // fault injection: as if the relay had crashed after publishing, before its checkpoint
  return {
    publish: async (batch) => {
      const copies = [await publisher.publish(batch), await publisher.publish(batch)];
      const handled = copies.flatMap((c) => (c.handled ? [c.handled] : []));
      return handled.length ? { handled: Promise.all(handled).then(() => undefined) } : {};
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
  if (config.transport === "memory") return inProcessPublisher(broker);
  return {
    async publish(batch) {
      if (config.transport === "nats") await ensureStreams();
      await Promise.all(batch.map((e) => broker.sendToChannel(channelOf(e.event_type), e)));
      return {};
    },
    async close() {},
  };
}

/** Longest pause before a message a consumer failed on is published again in process. */
const REDELIVERY_MAX_MS = 5_000;

/**
 * In process the broker holds nothing: a message is safe once every consumer has handled it. The
 * batch's `handled` resolves then; a message a handler failed on (which a consumer does only when
 * it could not even dead-letter it) is published again after a pause, as a broker redelivers an
 * unacknowledged message, until it is handled or the relay stops. Consumers' inboxes absorb the
 * copies that reach the consumers that had handled it.
 */
function inProcessPublisher(broker: ServiceBroker): RelayPublisher {
  const logger = broker.getLogger("relay");
  let closed = false;
  const send = (e: AnyEnvelope) => {
    let sent!: Promise<void>;
    const handled = new Promise<void>((resolve, reject) => {
      const opts: InProcessSendOptions = { onHandled: (err) => (err === undefined ? resolve() : reject(err)) };
      sent = broker.sendToChannel(channelOf(e.event_type), e, opts);
    });
    return { sent, handled };
  };
  const untilHandled = async (e: AnyEnvelope, handled: Promise<void>): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await handled;
      } catch (err) {
        if (closed) throw err;
        logger.warn(`${e.event_type} ${e.event_id} failed in a consumer (${String(err)}); publishing it again`);
        await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** attempt, REDELIVERY_MAX_MS)).unref());
        if (closed) throw err;
        const again = send(e);
        handled = again.sent.then(() => again.handled);
      }
    }
  };
  return {
    async publish(batch) {
      const sends = batch.map(send);
      const handled = Promise.all(sends.map((s, n) => untilHandled(batch[n]!, s.handled))).then(() => undefined);
      handled.catch(() => undefined); // the relay stopped first: nothing waits for it
      await Promise.all(sends.map((s) => s.sent));
      return { handled };
    },
    async close() {
      closed = true;
    },
  };
}

/** RabbitMQ's confirm of one message: `null` once it holds the message, an error otherwise. */
type Confirmed = (err: unknown) => void;
type Send = (channel: string, payload: AnyEnvelope, opts: { headers?: Record<string, string>; confirmed?: Confirmed }) => Promise<void>;

/** Longest wait for RabbitMQ to open a connection, or to confirm a batch, before giving up on that connection. */
export const AMQP_CONFIRM_TIMEOUT_MS = 10_000;

/** RabbitMQ did not confirm a batch in time; the relay publishes it again on a new connection. */
export class ConfirmTimeout extends Error {}

export class AmqpConfirmPublisher implements RelayPublisher {
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
    private readonly confirmTimeoutMs = AMQP_CONFIRM_TIMEOUT_MS,
  ) {
    const raw: Send = async (name, e, opts) => {
      const exchange = `${this.prefix}.${name}`;
      if (!this.channel) throw new Error("the RabbitMQ connection closed during the batch");
      this.channel.publish(
        exchange,
        "",
        Buffer.from(JSON.stringify(e)),
        { persistent: true, contentType: "application/json", headers: opts.headers },
        opts.confirmed,
      );
    };
    this.send = (broker.wrapMethod as unknown as (name: string, handler: Send) => Send)("sendToChannel", raw);
  }

  private async open(): Promise<amqp.ConfirmChannel> {
    if (this.channel) return this.channel;
    // the timeout bounds the TCP connect and the AMQP handshake
    const connection = await amqp.connect(this.url, { noDelay: true, timeout: this.confirmTimeoutMs });
    const channel = await connection.createConfirmChannel();
    // events of a connection given up on must not clear its successor
    const reset = () => {
      if (this.connection !== connection) return;
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

  /**
   * Resolves once RabbitMQ has confirmed every message of the batch. Each message carries its own
   * confirm callback: a channel that closes fails each one still unconfirmed (a bare
   * `waitForConfirms` after such a close finds nothing left to wait for, and resolves). A confirm
   * that does not come in time (seen in a RabbitMQ restart: a publish sent as the broker began to
   * stop was never confirmed, and its connection never reported a close) gives that connection up; the relay then publishes the
   * batch again on a new one, and consumers' inboxes absorb any copy.
   */
  async publish(batch: readonly AnyEnvelope[]): Promise<Published> {
    const channel = await this.open();
    const confirms: Promise<void>[] = [];
    for (const e of batch) {
      const exchange = `${this.prefix}.${channelOf(e.event_type)}`;
      if (!this.asserted.has(exchange)) {
        await channel.assertExchange(exchange, "fanout", { durable: true });
        this.asserted.add(exchange);
      }
      let confirmed: Confirmed = () => undefined;
      const confirm = new Promise<void>((resolve, reject) => (confirmed = (err) => (err ? reject(err) : resolve())));
      confirm.catch(() => undefined); // a batch that fails before its last send awaits none of them
      confirms.push(confirm);
      await this.send(channelOf(e.event_type), e, { confirmed });
    }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new ConfirmTimeout(`RabbitMQ did not confirm a batch of ${batch.length} within ${this.confirmTimeoutMs} ms; publishing it again on a new connection`)), this.confirmTimeoutMs);
    });
    try {
      await Promise.race([Promise.all(confirms), late]);
      return {};
    } catch (err) {
      if (err instanceof ConfirmTimeout) void this.abandon();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Gives the current connection up: the next publish opens a new one. */
  private abandon(): Promise<void> {
    const connection = this.connection;
    this.channel = undefined;
    this.connection = undefined;
    this.asserted.clear();
    return connection ? closeOrDrop(connection) : Promise.resolve();
  }

  async close(): Promise<void> {
    await this.abandon();
  }
}

/** Closes an AMQP connection; one that does not answer the close within a second loses its socket. */
function closeOrDrop(connection: amqp.ChannelModel): Promise<void> {
  const socket = (connection as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream;
  return new Promise<void>((resolve) => {
    const drop = setTimeout(() => {
      socket?.destroy();
      resolve();
    }, 1_000);
    connection.close().then(
      () => {
        clearTimeout(drop);
        resolve();
      },
      () => {
        clearTimeout(drop);
        resolve();
      },
    );
  });
}
