import { describe, expect, it } from "vitest";
import { openDatabase } from "../services/database/database.js";
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

describe("checkouts placed together", () => {
  /**
   * While one placement's transaction waits (here on a lock the test holds), the checkouts that
   * arrive go together into the next transaction. Each still gets its own answer: distinct keys
   * their own orders, copies of one key the first answer, the same key with another body a 422
   * that writes nothing, a request without a key its own order.
   */
  it("share one transaction and each get their own answer, on PostgreSQL", async (ctx) => {
    if (!(await available("postgres"))) return ctx.skip();
    const fresh = await freshPostgresDatabase();
    const db = await openDatabase({ databaseUrl: fresh.url, poolSize: 20 });
    // counts the product lookups that have answered (each request's last step before its placement)
    let lookups = 0;
    const query = db.pool.query.bind(db.pool) as (...args: unknown[]) => Promise<unknown>;
    (db.pool as unknown as { query: (...args: unknown[]) => unknown }).query = (text: unknown, ...rest: unknown[]) => {
      const result = query(text, ...rest);
      return typeof text === "string" && text.includes("FROM products.products") ? result.finally(() => lookups++) : result;
    };
    const h = await CheckoutHarness.start({ mode: "orchestrated", db });
    const holder = await db.pool.connect();
    try {
      const post = (key: string | undefined, body: object) =>
        rawRequest(h.baseUrl, "POST", "/cqrs/commands/orders", { headers: { ...JSON_HEADERS, ...(key ? { "idempotency-key": key } : {}) }, body: JSON.stringify(body) });
      const one = { user_id: 456, product_id: 105, quantity: 1 };
      const other = { user_id: 456, product_id: 105, quantity: 2 };
      await holder.query("BEGIN");
      await holder.query("LOCK TABLE orders.orders IN EXCLUSIVE MODE");
      const lookupsBefore = lookups;
      const first = post("together-first", one);
      const waiting = async () =>
        (await db.pool.query("SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND relation = 'orders.orders'::regclass")).rows[0].n as number;
      for (let i = 0; i < 200 && (await waiting()) === 0; i++) await new Promise((r) => setTimeout(r, 25));
      expect(await waiting()).toBe(1);

      const requests: [string | undefined, object][] = [
        ...Array.from({ length: 8 }, (_, i): [string, object] => [`together-${i}`, one]),
        ...Array.from({ length: 4 }, (): [string, object] => ["together-shared", one]),
        ["together-shared", other],
        [undefined, one],
      ];
      const rest = Promise.all(requests.map(([key, body]) => post(key, body)));
      // every request has looked up its products, so it waits for the placement behind the lock
      for (let i = 0; i < 400 && lookups - lookupsBefore < 1 + requests.length; i++) await new Promise((r) => setTimeout(r, 25));
      await new Promise((r) => setTimeout(r, 200));
      await holder.query("COMMIT");

      const answers = await rest;
      expect((await first).status).toBe(202);
      // the first transaction, then one for all the others: the orders' rows of one transaction share its xmin
      const transactions = await h.pool.query("SELECT count(DISTINCT xmin::text)::int AS n FROM orders.orders");
      expect(transactions.rows[0].n).toBe(2);

      const distinct = answers.slice(0, 8);
      expect(distinct.map((a) => a.status)).toEqual(Array(8).fill(202));
      expect(new Set(distinct.map((a) => a.json?.order_id)).size).toBe(8);
      expect(distinct.filter((a) => a.headers["idempotent-replayed"] === "true")).toEqual([]);

      // one of the two bodies under the shared key came first; every copy of it gets its order
      const shared = answers.slice(8, 13);
      const won = shared.filter((a) => a.status === 202);
      const lost = shared.filter((a) => a.status !== 202);
      expect(new Set(won.map((a) => a.json?.order_id)).size).toBe(1);
      expect(won.filter((a) => a.headers["idempotent-replayed"] !== "true")).toHaveLength(1);
      expect(won.length === 4 || won.length === 1).toBe(true);
      for (const a of lost) {
        expect(a.status).toBe(422);
        expect(a.headers["content-type"]).toContain("application/problem+json");
        expect(String(a.json?.detail)).toMatch(/already used with a different request body/);
      }
      expect(answers[13].status).toBe(202);

      const orders = await h.pool.query("SELECT count(*)::int AS n FROM orders.orders");
      const initiated = await h.pool.query("SELECT count(*)::int AS n FROM event_store.events WHERE event_type = 'OrderInitiated'");
      expect([orders.rows[0].n, initiated.rows[0].n]).toEqual([11, 11]);
      const keyed = await h.pool.query("SELECT key, order_id FROM orders.idempotency_keys WHERE key = 'together-shared'");
      expect(keyed.rows.map((r) => r.order_id)).toEqual([won[0].json?.order_id]);
      for (const a of [...distinct, won[0], answers[13]]) expect((await h.settle(a.json as never)).status).toBe("confirmed");
    } finally {
      await holder.query("ROLLBACK").catch(() => undefined);
      holder.release();
      await h.stop();
      await db.close();
      await fresh.drop();
    }
  });
});
