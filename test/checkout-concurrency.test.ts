import { describe, expect, it } from "vitest";
import { openDatabase } from "../services/shared/database.js";
import { CheckoutHarness } from "./support/checkout-harness.js";
import { available, freshPostgresDatabase } from "./support/infrastructure.js";
import { JSON_HEADERS, rawRequest } from "./support/raw-http.js";

/**
 * Never two orders, never two charges, for one cart or one Idempotency-Key: 20 requests at once,
 * through the gateway. On PGlite (one statement at a time) and on PostgreSQL, where the requests
 * truly run in parallel and only the conditional update and the key's unique index stand
 * between them and a second order.
 */
const N = 20;

async function newCart(h: CheckoutHarness, userId: number): Promise<string> {
  const cart = await rawRequest(h.baseUrl, "POST", "/api/v1/carts", { headers: JSON_HEADERS, body: JSON.stringify({ user_id: userId }) });
  const cartId = cart.json?.cart_id as string;
  const line = await rawRequest(h.baseUrl, "POST", `/api/v1/carts/${cartId}/items`, { headers: JSON_HEADERS, body: '{"product_id":105,"quantity":1}' });
  expect(line.status).toBe(200);
  return cartId;
}

async function ordersOfCart(h: CheckoutHarness, cartId: string): Promise<string[]> {
  const { rows } = await h.pool.query("SELECT data->>'order_id' AS id FROM event_store.events WHERE event_type = 'OrderInitiated' AND data->>'cart_id' = $1", [cartId]);
  return rows.map((r) => r.id);
}

async function race(h: CheckoutHarness) {
  // one cart, N checkouts each with its own key: one order, the others told it is taken
  const cartId = await newCart(h, 457);
  const answers = await Promise.all(
    Array.from({ length: N }, (_, i) =>
      rawRequest(h.baseUrl, "POST", `/api/v1/carts/${cartId}/checkout`, { headers: { ...JSON_HEADERS, "idempotency-key": `own-${i}` }, body: "{}" }),
    ),
  );
  const accepted = answers.filter((a) => a.status === 202);
  expect(accepted).toHaveLength(1);
  for (const a of answers.filter((x) => x.status !== 202)) {
    expect(a.status).toBe(409);
    expect(a.headers["content-type"]).toContain("application/problem+json");
    expect(a.json?.detail).toMatch(/already checked out as order_\d+|checkout of cart .* is in progress/);
  }
  const orderId = accepted[0].json?.order_id as string;
  expect(await ordersOfCart(h, cartId)).toEqual([orderId]);
  const view = await h.settle(accepted[0].json as never);
  expect(view.status).toBe("confirmed");
  const charges = await h.pool.query("SELECT count(*)::int AS n FROM payments.payments WHERE order_id = $1 AND status = 'captured'", [orderId]);
  expect(charges.rows[0].n).toBe(1);
  const cart = await rawRequest(h.baseUrl, "GET", `/api/v1/carts/${cartId}`);
  expect(cart.json).toMatchObject({ status: "checked_out", order_id: orderId });

  // one cart, N checkouts with ONE key: one order, and every answer names it
  const shared = await newCart(h, 458);
  const sameKey = await Promise.all(
    Array.from({ length: N }, () =>
      rawRequest(h.baseUrl, "POST", `/api/v1/carts/${shared}/checkout`, { headers: { ...JSON_HEADERS, "idempotency-key": `cart-key-${shared}` }, body: "{}" }),
    ),
  );
  const sharedOrders = await ordersOfCart(h, shared);
  expect(sharedOrders).toHaveLength(1);
  for (const a of sameKey) {
    // the first answer again, or (while the first is still creating the order) 409 "in progress"
    if (a.status === 202) expect(a.json?.order_id).toBe(sharedOrders[0]);
    else expect([a.status, a.json?.detail]).toEqual([409, expect.stringMatching(/in progress/)]);
  }
  const retried = await rawRequest(h.baseUrl, "POST", `/api/v1/carts/${shared}/checkout`, { headers: { ...JSON_HEADERS, "idempotency-key": `cart-key-${shared}` }, body: "{}" });
  expect(retried.status).toBe(202);
  expect(retried.json?.order_id).toBe(sharedOrders[0]);
  expect(retried.headers["idempotent-replayed"]).toBe("true");

  // N order commands with ONE key: one order, every answer the first one
  const key = `one-key-${Date.now()}`;
  const body = JSON.stringify({ user_id: 456, product_id: 105, quantity: 1 });
  const placed = await Promise.all(
    Array.from({ length: N }, () => rawRequest(h.baseUrl, "POST", "/cqrs/commands/orders", { headers: { ...JSON_HEADERS, "idempotency-key": key }, body })),
  );
  expect(placed.map((p) => p.status)).toEqual(Array(N).fill(202));
  expect(new Set(placed.map((p) => p.json?.order_id)).size).toBe(1);
  expect(placed.filter((p) => p.headers["idempotent-replayed"] !== "true")).toHaveLength(1);
  const { rows } = await h.pool.query("SELECT count(*)::int AS n FROM orders.orders WHERE order_id = $1", [placed[0].json?.order_id]);
  expect(rows[0].n).toBe(1);
  const initiated = await h.pool.query("SELECT count(*)::int AS n FROM event_store.events WHERE event_type = 'OrderInitiated'");
  expect(initiated.rows[0].n).toBe(3);
}

describe("concurrent checkouts of one cart, and of one Idempotency-Key", () => {
  it("make exactly one order and one charge, on PGlite", async () => {
    const h = await CheckoutHarness.start({ mode: "orchestrated" });
    try {
      await race(h);
    } finally {
      await h.stop();
    }
  });

  it("make exactly one order and one charge, on PostgreSQL", async (ctx) => {
    if (!(await available("postgres"))) return ctx.skip();
    const fresh = await freshPostgresDatabase();
    const db = await openDatabase({ databaseUrl: fresh.url, poolSize: 20 });
    const h = await CheckoutHarness.start({ mode: "choreographed", db });
    try {
      await race(h);
    } finally {
      await h.stop();
      await db.close();
      await fresh.drop();
    }
  });
});
