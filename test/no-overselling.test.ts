import { describe, expect, it } from "vitest";
import { SAGA_MODES } from "../services/shared/config.js";
import { openDatabase } from "../services/database/database.js";
import { CheckoutHarness } from "./support/checkout-harness.js";
import { available, freshPostgresDatabase } from "./support/infrastructure.js";

/**
 * 20 concurrent checkouts for a product with 5 in stock confirm exactly 5, in both modes: on
 * PGlite (which runs one statement at a time) and on PostgreSQL, where the checkouts really
 * run in parallel and only the conditional stock update stands between them and overselling.
 */
const PRODUCT = { id: 9301, price: 49.5, stock: 5 };
const BUYERS = 20;

async function rush(h: CheckoutHarness) {
  await h.seedProducts([PRODUCT]);
  const accepted = await Promise.all(
    Array.from({ length: BUYERS }, (_, i) => h.placeOrder({ user_id: [456, 457, 458][i % 3], product_id: PRODUCT.id, quantity: 1 })),
  );
  const views = await Promise.all(accepted.map((a) => h.settle(a)));
  const confirmed = views.filter((v) => v.status === "confirmed");
  const cancelled = views.filter((v) => v.status === "cancelled");
  expect(confirmed).toHaveLength(PRODUCT.stock);
  expect(cancelled).toHaveLength(BUYERS - PRODUCT.stock);
  expect(new Set(cancelled.map((v) => v.cancellation_reason))).toEqual(new Set(["stock_unavailable"]));
  expect(await h.stock(PRODUCT.id)).toEqual({ available: 0, reserved: PRODUCT.stock });
  const captured = await h.pool.query("SELECT count(*)::int AS n FROM payments.payments WHERE status = 'captured' AND amount = $1", [PRODUCT.price]);
  expect(captured.rows[0].n).toBe(PRODUCT.stock);
}

describe.each(SAGA_MODES)("no overselling (%s)", (mode) => {
  it("confirms exactly 5 of 20 concurrent checkouts for 5 in stock, on PGlite", async () => {
    const h = await CheckoutHarness.start({ mode });
    try {
      await rush(h);
    } finally {
      await h.stop();
    }
  });

  it("confirms exactly 5 of 20 concurrent checkouts for 5 in stock, on PostgreSQL", async (ctx) => {
    if (!(await available("postgres"))) return ctx.skip();
    const fresh = await freshPostgresDatabase();
    const db = await openDatabase({ databaseUrl: fresh.url, poolSize: 20 });
    const h = await CheckoutHarness.start({ mode, db });
    try {
      await rush(h);
    } finally {
      await h.stop();
      await db.close();
      await fresh.drop();
    }
  });
});
