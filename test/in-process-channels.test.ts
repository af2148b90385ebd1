import { describe, expect, it } from "vitest";
import { loadConfig } from "../services/shared/config.js";
import { createSystem } from "../services/system.js";

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
