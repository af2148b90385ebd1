import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ServiceBroker } from "moleculer";
import { loadConfig } from "../services/shared/config.js";
import { transporterOptions } from "../services/messaging/transport.js";
import { removeNamespace } from "../bench/broker-cleanup.js";
import { AMQP_URL, available } from "./support/infrastructure.js";

/**
 * Moleculer's heartbeat can fire while `broker.stop()` closes the AMQP channel. amqplib throws
 * at once on a closing channel, and Moleculer's heartbeat only catches a rejection, so the throw
 * used to surface as an unhandled rejection (it ended a test run). The project's transporter turns
 * it into a rejection, which the heartbeat logs.
 */

const reachable = await available("amqp");

describe.skipIf(!reachable)("the AMQP transporter on a closing channel", () => {
  const namespace = `t${randomBytes(4).toString("hex")}`;
  const config = loadConfig({ TRANSPORTER: AMQP_URL, NAMESPACE: namespace, LOG_LEVEL: "fatal" });
  let broker: ServiceBroker;

  beforeAll(async () => {
    broker = new ServiceBroker({ nodeID: `${namespace}-heartbeat`, namespace, logger: false, transporter: transporterOptions(config) });
    await broker.start();
  });

  afterAll(async () => {
    await broker?.stop();
    await removeNamespace(AMQP_URL, namespace);
  });

  it("rejects a publish instead of throwing, so a heartbeat sent then is caught", async () => {
    const transit = (broker as unknown as { transit: { tx: { channel: { close(): Promise<void> } }; sendHeartbeat(node: unknown): Promise<void> } }).transit;
    const localNode = (broker as unknown as { registry: { nodes: { localNode: unknown } } }).registry.nodes.localNode;
    const closing = transit.tx.channel.close();
    // the channel is closing: amqplib's publish throws at once
    let sent: Promise<void> | undefined;
    expect(() => (sent = transit.sendHeartbeat(localNode))).not.toThrow();
    await expect(sent).resolves.toBeUndefined();
    await closing;
  });
});
