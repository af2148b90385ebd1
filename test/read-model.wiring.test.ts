import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../services/shared/config.js";
import { createSystem } from "../services/system.js";
import { CheckoutHarness } from "./support/checkout-harness.js";

/** READ_MODEL_STORE picks the projections' store in services/system.ts, and nowhere else. */
describe("read-model store wiring", () => {
  let h: CheckoutHarness | undefined;
  beforeAll(async () => {
    h = await CheckoutHarness.start({ mode: "orchestrated", env: { READ_MODEL_STORE: "postgres" } });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it("keeps the views in the system's PostgreSQL database with READ_MODEL_STORE=postgres", async () => {
    if (!h) throw new Error("the system did not start");
    const { accepted } = await h.checkout({ user_id: 456, product_id: 101, quantity: 1 });
    const { rows } = await h.pool.query("SELECT status FROM read_model.orders WHERE order_id = $1", [accepted.order_id]);
    expect(rows).toEqual([{ status: "confirmed" }]);
  });

  it("refuses READ_MODEL_STORE=mongodb without MONGO_URL, naming the variable", () => {
    expect(() => loadConfig({ READ_MODEL_STORE: "mongodb" })).toThrow(ConfigError);
    expect(() => loadConfig({ READ_MODEL_STORE: "mongodb" })).toThrow(/MONGO_URL/);
    expect(() => loadConfig({ READ_MODEL_STORE: "mongo" })).toThrow(/READ_MODEL_STORE/);
  });

  it("connects the projections to MongoDB with READ_MODEL_STORE=mongodb (start fails when MONGO_URL answers nothing)", async () => {
    // port 9 (discard) on loopback: nothing listens, so server selection fails
    const config = loadConfig({
      READ_MODEL_STORE: "mongodb",
      MONGO_URL: "mongodb://127.0.0.1:9/sagabench?serverSelectionTimeoutMS=500",
      SERVICES: "projections",
      PGLITE_DIR: "memory",
    });
    const system = await createSystem(config, { logger: false });
    try {
      await expect(system.start()).rejects.toThrow(/127\.0\.0\.1:9|ECONNREFUSED|Server selection/i);
    } finally {
      await system.stop().catch(() => undefined);
    }
  }, 120_000); // an embedded database starts first
});
