import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { ServiceBroker } from "moleculer";
import { loadConfig } from "../services/shared/config.js";
import { channelsMiddleware } from "../services/messaging/transport.js";
import { removeNamespace } from "../bench/broker-cleanup.js";
import { AMQP_URL, available } from "./support/infrastructure.js";

/**
 * The channels AMQP adapter after its connection drops while a handler is still running: the
 * handler's late acknowledgement must not kill the new channel, and the consumer must go on
 * receiving. (Without `recoverAmqpChannels` the late acknowledgement carries a delivery tag the
 * new channel never issued, RabbitMQ closes that channel, and nothing more is consumed.)
 */

const reachable = await available("amqp");

interface Adapter {
  connection: { close(): Promise<void> } | null;
  connectionCount: number;
}

const waitFor = async (what: string, check: () => boolean, ms = 20_000) => {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

describe.skipIf(!reachable)("a RabbitMQ connection lost while a handler runs", () => {
  const namespace = `t${randomBytes(4).toString("hex")}`;
  const config = loadConfig({ TRANSPORTER: AMQP_URL, NAMESPACE: namespace, LOG_LEVEL: "fatal" });
  const received: number[] = [];
  let releaseFirst: () => void = () => undefined;
  const firstHeld = new Promise<void>((r) => (releaseFirst = r));
  let broker: ServiceBroker;

  beforeAll(async () => {
    broker = new ServiceBroker({ nodeID: `${namespace}-recovery`, namespace, logger: false, middlewares: [channelsMiddleware(config)] });
    broker.createService({
      name: "recovery",
      channels: {
        "recovery.test": {
          group: "recovery",
          async handler(payload: { n: number }) {
            received.push(payload.n);
            // the first delivery of the first message is still running when the connection drops
            if (payload.n === 1 && received.length === 1) await firstHeld;
          },
        },
      },
    } as never);
    await broker.start();
  });

  afterAll(async () => {
    releaseFirst();
    await broker?.stop();
    await removeNamespace(AMQP_URL, namespace);
  });

  it("drops the stale acknowledgement and keeps consuming on the new channel", async () => {
    const adapter = (broker as unknown as { channelAdapter: Adapter }).channelAdapter;
    await broker.sendToChannel("recovery.test", { n: 1 });
    await waitFor("the first message reaches its handler", () => received.length === 1);

    // the connection drops under the running handler; the adapter reconnects and subscribes again
    await adapter.connection!.close();
    await waitFor("the adapter reconnects", () => adapter.connectionCount === 2);
    // RabbitMQ puts the unacknowledged message back: it arrives again on the new channel
    await waitFor("the first message is delivered again", () => received.filter((n) => n === 1).length === 2);

    // the first handler ends now and acknowledges, late, on what is now the new channel
    releaseFirst();
    await new Promise((r) => setTimeout(r, 500));

    await broker.sendToChannel("recovery.test", { n: 2 });
    await waitFor("a later message is still consumed", () => received.includes(2));
    expect(received.filter((n) => n === 2)).toHaveLength(1);
  }, 60_000);
});
