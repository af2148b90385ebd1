import { describe, expect, it } from "vitest";
import { loadConfig } from "../services/shared/config.js";
import { createSystem } from "../services/system.js";
import { channelOf, type AnyNewMessage } from "../services/shared/catalogue.js";
import { withTransaction } from "../services/database/database.js";
import { committed } from "../services/event-store/commit-signal.js";
import type { StoredEvent } from "../services/event-store/pg-event-store.js";
import { HandledWatermark } from "../services/event-store/handled-watermark.js";
import { orderInitiated } from "./support/messages.js";

/**
 * The in-process transport (the embedded default, and every one-process bench cell) delivers a
 * channel's messages through Moleculer events behind a bulkhead of `maxInFlight` handlers. Under
 * a burst (the relay publishes up to 500 stored messages at once) the messages beyond those in
 * flight must wait, however many they are: the relay has already moved its checkpoint past them,
 * so one dropped here is an accepted order that never takes its next step.
 */
const BURST = 600;

describe("in-process channels under a burst", () => {
  it(`hands every one of ${BURST} messages published at once to the handler`, async () => {
    const system = await createSystem(loadConfig({ SERVICES: "none", PGLITE_DIR: "memory", LOG_LEVEL: "fatal" }), { logger: false });
    const seen = new Set<number>();
    system.broker.createService({
      name: "burst-probe",
      channels: {
        "test.burst": {
          group: "burst-probe",
          async handler(payload: { n: number }) {
            await new Promise((r) => setTimeout(r, 2)); // a handler that takes a moment, as a transaction does
            seen.add(payload.n);
          },
        },
      },
    } as never);
    await system.start();
    try {
      const broker = system.broker as unknown as { sendToChannel(channel: string, payload: unknown): Promise<void> };
      await Promise.all(Array.from({ length: BURST }, (_, n) => broker.sendToChannel("test.burst", { n })));
      const deadline = Date.now() + 20_000;
      while (seen.size < BURST && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(seen.size).toBe(BURST);
    } finally {
      await system.stop();
    }
  });
});

/**
 * In process no broker holds a message between the relay and its consumers: the relay's
 * checkpoint may pass a message only once every consumer has handled it, or a crash in between
 * loses it (the restarted relay starts after it, and nothing else has it).
 */
describe("the relay over in-process channels", () => {
  /** A system of the relay alone, and a consumer of OrderInitiated whose handling the test steers. */
  async function relayWithProbe() {
    const system = await createSystem(loadConfig({ SERVICES: "event-store", PGLITE_DIR: "memory", LOG_LEVEL: "fatal" }), { logger: false });
    const seen: string[] = [];
    /** `hold`: the next message delivered is handled once this resolves; `failFirst`: a message's first delivery fails. */
    const steer: { hold?: Promise<void>; failFirst: boolean } = { failFirst: false };
    system.broker.createService({
      name: "relay-probe",
      channels: {
        [channelOf("OrderInitiated")]: {
          group: "relay-probe",
          async handler(message: { event_id: string }) {
            const first = !seen.includes(message.event_id);
            seen.push(message.event_id);
            const hold = steer.hold;
            steer.hold = undefined;
            await hold;
            if (first && steer.failFirst) throw new Error("the probe's consumer failed");
          },
        },
      },
    } as never);
    await system.start();
    let n = 0;
    /** Stores one OrderInitiated, as the order service would, and wakes the relay. */
    const store = async (): Promise<StoredEvent> => {
      n++;
      const message = orderInitiated(`order_${980000 + n}`);
      const [stored] = await withTransaction(system.db.pool, (tx) =>
        system.store.append(tx, [system.envelopes.create(message, { correlation_id: `checkout_probe${n}`, service_name: "orders" }) as AnyNewMessage]),
      );
      committed();
      return stored!;
    };
    const until = async (what: string, done: () => boolean | Promise<boolean>) => {
      const deadline = Date.now() + 15_000;
      while (!(await done())) {
        if (Date.now() > deadline) throw new Error(`not within 15 s: ${what}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    return { system, seen, steer, store, until, checkpoint: () => system.store.checkpoint("relay") };
  }

  it("moves its checkpoint past a message only once the consumer has handled it", async () => {
    const { system, seen, steer, store, until, checkpoint } = await relayWithProbe();
    try {
      let release!: () => void;
      steer.hold = new Promise<void>((r) => (release = r));
      const first = await store();
      await until("the consumer has the first message", () => seen.includes(first.event_id));
      // later messages, each handled at once, in batches far enough apart for the checkpoint to be written
      for (let i = 0; i < 3; i++) {
        await new Promise((r) => setTimeout(r, 250));
        const later = await store();
        await until("the consumer has a later message", () => seen.includes(later.event_id));
      }
      await new Promise((r) => setTimeout(r, 250));
      await store();
      expect(await checkpoint()).toBeLessThan(first.position);

      release();
      // the next batch written after the first message was handled carries the checkpoint past it
      await until("the checkpoint passes the handled message", async () => {
        await store();
        await new Promise((r) => setTimeout(r, 250));
        return (await checkpoint()) >= first.position;
      });
    } finally {
      await system.stop();
    }
  });

  it("publishes again a message its consumer failed on, as a broker redelivers it", async () => {
    const { system, seen, steer, store, until } = await relayWithProbe();
    try {
      steer.failFirst = true;
      const message = await store();
      await until("the message is delivered a second time", () => seen.filter((id) => id === message.event_id).length >= 2);
    } finally {
      await system.stop();
    }
  });
});

describe("HandledWatermark", () => {
  it("stops at the first batch not yet handled, whatever finishes after it", async () => {
    const w = new HandledWatermark();
    const gates = [1, 2, 3].map(() => {
      let open!: () => void;
      return { promise: new Promise<void>((r) => (open = r)), open: () => open() };
    });
    w.add(10, gates[0]!.promise);
    w.add(20, gates[1]!.promise);
    w.add(30, gates[2]!.promise);
    gates[1]!.open();
    gates[2]!.open();
    await new Promise((r) => setImmediate(r));
    expect(w.position).toBe(0);
    gates[0]!.open();
    await new Promise((r) => setImmediate(r));
    expect(w.position).toBe(30);
    w.add(40); // a broker holds it: safe at once
    expect(w.position).toBe(40);
  });

  it("holds where a batch never handled stands (the relay stopped first)", async () => {
    const w = new HandledWatermark();
    w.add(10);
    const never = Promise.reject(new Error("the relay stopped"));
    w.add(20, never);
    w.add(30);
    await new Promise((r) => setImmediate(r));
    expect(w.position).toBe(10);
  });
});
