import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { ServiceBroker } from "moleculer";
import { loadConfig } from "../services/shared/config.js";
import { transporterOptions } from "../services/messaging/transport.js";
import { removeNamespace } from "../bench/broker-cleanup.js";
import { available, BROKERS } from "./support/infrastructure.js";

/**
 * A service process takes the requests sent to it while it still runs earlier ones, over either
 * broker: what the order service's placement batch and the coalesced lookups rely on. Moleculer's
 * AMQP transporter, left at its default, hands a process one request at a time (it acknowledges a
 * request when its action ends, with a prefetch of 1), and every batch held one item.
 */

const CONCURRENT = 8;
/** How long the test waits for all the calls to be running at once before it lets them finish. */
const WAIT_MS = 15_000;

const reachable = Object.fromEntries(await Promise.all(BROKERS.map(async (b) => [b.kind, await available(b.kind)] as const)));

describe.each(BROKERS)("requests to one service process over $kind", ({ kind, url }) => {
  const namespace = `t${randomBytes(4).toString("hex")}`;
  const config = loadConfig({ TRANSPORTER: url, NAMESPACE: namespace, LOG_LEVEL: "fatal" });
  const brokers: ServiceBroker[] = [];
  let inFlight = 0;
  let mostAtOnce = 0;
  let release: () => void = () => undefined;
  const released = new Promise<void>((r) => (release = r));

  beforeAll(async () => {
    if (!reachable[kind]) return;
    const broker = (name: string) => new ServiceBroker({ nodeID: `${namespace}-${name}`, namespace, transporter: transporterOptions(config), logger: false, requestTimeout: 30_000 });
    const worker = broker("worker");
    worker.createService({
      name: "held",
      actions: {
        // each call runs until the test lets them all go: one process running them one at a
        // time never has more than one in flight
        async hold() {
          inFlight++;
          mostAtOnce = Math.max(mostAtOnce, inFlight);
          await released;
          inFlight--;
          return { done: true };
        },
      },
    });
    brokers.push(worker, broker("caller"));
    await Promise.all(brokers.map((b) => b.start()));
    await brokers[1].waitForServices("held", 20_000);
  });

  afterAll(async () => {
    await Promise.all(brokers.map((b) => b.stop()));
    if (reachable[kind]) await removeNamespace(url, namespace);
  });

  it.skipIf(!reachable[kind])(`runs ${CONCURRENT} calls sent at once side by side`, async () => {
    const answers = Promise.all(Array.from({ length: CONCURRENT }, () => brokers[1].call<{ done: boolean }, object>("held.hold", {})));
    const deadline = Date.now() + WAIT_MS;
    while (inFlight < CONCURRENT && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    release();
    expect((await answers).every((a) => a.done)).toBe(true);
    expect(mostAtOnce).toBe(CONCURRENT);
  });
});
