import { afterAll, beforeAll, describe, expect, it } from "vitest";
import net from "node:net";
import { randomBytes, randomUUID } from "node:crypto";
import amqp from "amqplib";
import { ServiceBroker } from "moleculer";
import { AmqpConfirmPublisher, ConfirmTimeout } from "../services/event-store/relay-publisher.js";
import { channelOf, type AnyEnvelope } from "../services/shared/catalogue.js";
import { removeNamespace } from "../bench/broker-cleanup.js";
import { AMQP_URL, available } from "./support/infrastructure.js";

/**
 * The relay's publisher over RabbitMQ counts a batch as published only once RabbitMQ confirms it.
 * A connection that stays open but never answers (seen after a RabbitMQ restart: one opened as
 * the broker stopped) must not hold the relay for good: the publish fails after the confirm
 * timeout and the next one goes out on a new connection. The silent connection is made here by a
 * TCP proxy that stops forwarding without closing anything.
 */

const reachable = await available("amqp");

/** Forwards to RabbitMQ; `freeze()` stops forwarding on the connections open now, keeping them open. */
class FreezableProxy {
  private readonly server: net.Server;
  private readonly live = new Set<{ frozen: boolean; sockets: net.Socket[] }>();
  port = 0;

  constructor(target: URL) {
    this.server = net.createServer((client) => {
      const upstream = net.connect(Number(target.port || 5672), target.hostname);
      const pair = { frozen: false, sockets: [client, upstream] };
      this.live.add(pair);
      client.on("data", (d) => pair.frozen || upstream.write(d));
      upstream.on("data", (d) => pair.frozen || client.write(d));
      const end = () => {
        this.live.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on("error", end).on("close", end);
      upstream.on("error", end).on("close", end);
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  freeze(): number {
    for (const pair of this.live) pair.frozen = true;
    return this.live.size;
  }

  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const pair of [...this.live]) for (const s of pair.sockets) s.destroy();
    await closed;
  }
}

const envelope = (n: number): AnyEnvelope =>
  ({
    event_id: randomUUID(),
    event_type: "OrderConfirmed",
    aggregate_type: "orders",
    aggregate_id: `order_${n}`,
    version: 2,
    timestamp: new Date().toISOString(),
    correlation_id: randomUUID(),
    service_name: "orders",
    data: { order_id: `order_${n}` },
    metadata: {},
  }) as unknown as AnyEnvelope;

describe.skipIf(!reachable)("the relay's RabbitMQ publisher", () => {
  const namespace = `t${randomBytes(4).toString("hex")}`;
  const proxy = new FreezableProxy(new URL(AMQP_URL));
  const broker = new ServiceBroker({ nodeID: `${namespace}-relay`, logger: false });
  let publisher: AmqpConfirmPublisher;
  let watcher: amqp.ChannelModel;
  let queue: string;

  beforeAll(async () => {
    await proxy.start();
    const url = new URL(AMQP_URL);
    url.port = String(proxy.port);
    publisher = new AmqpConfirmPublisher(url.toString(), namespace, broker, 500);
    // a queue on the exchange the relay publishes OrderConfirmed to, read directly
    watcher = await amqp.connect(AMQP_URL);
    const ch = await watcher.createChannel();
    const exchange = `${namespace}.${channelOf("OrderConfirmed")}`;
    await ch.assertExchange(exchange, "fanout", { durable: true });
    queue = (await ch.assertQueue(`${namespace}.watch`, { durable: false, autoDelete: true })).queue;
    await ch.bindQueue(queue, exchange, "");
  });

  afterAll(async () => {
    await publisher?.close();
    await watcher?.close().catch(() => undefined);
    await proxy.stop();
    await removeNamespace(AMQP_URL, namespace);
  });

  async function received(): Promise<string[]> {
    const ch = await watcher.createChannel();
    const ids: string[] = [];
    for (let msg = await ch.get(queue, { noAck: true }); msg; msg = await ch.get(queue, { noAck: true })) {
      ids.push((JSON.parse(msg.content.toString()) as AnyEnvelope).aggregate_id);
    }
    await ch.close();
    return ids;
  }

  it("gives up a connection that stops answering, and publishes on a new one", async () => {
    await publisher.publish([envelope(1)]);
    expect(proxy.freeze()).toBeGreaterThan(0);

    // the frozen connection never confirms: the batch fails instead of waiting for good
    await expect(publisher.publish([envelope(2), envelope(3)])).rejects.toBeInstanceOf(ConfirmTimeout);

    // the relay publishes the batch again: it goes out on a new connection, and is confirmed
    await publisher.publish([envelope(2), envelope(3)]);
    const ids = await received();
    expect(ids).toContain("order_1");
    expect(ids.filter((id) => id === "order_2")).toHaveLength(1); // the frozen copy never reached RabbitMQ
    expect(ids).toContain("order_3");
  });
});
