import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CheckoutHarness } from "./support/checkout-harness.js";
import { CONFIRMED_TIMELINE } from "./support/checkout-behaviour.js";

/** The REST API as a client meets it: the seed's calls, errors as problem+json, and the headers. */

async function post(base: string, path: string, body: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${base}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
  return { status: res.status, type: res.headers.get("content-type") ?? "", headers: res.headers, json: await res.json() };
}
async function get(base: string, path: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${base}${path}`, { headers });
  return { status: res.status, type: res.headers.get("content-type") ?? "", headers: res.headers, json: await res.json() };
}

describe("gateway", () => {
  let h: CheckoutHarness;
  let base: string;

  beforeAll(async () => {
    h = await CheckoutHarness.start({ mode: "orchestrated", env: { BODY_LIMIT: "2kb" } });
    base = h.baseUrl;
  });
  afterAll(async () => {
    await h?.stop();
  });

  describe("the seed's calls", () => {
    let order: { order_id: string; correlation_id: string };

    it("accepts the classic order with 202 and a link to follow", async () => {
      const r = await post(base, "/cqrs/commands/orders", JSON.stringify({ user_id: 456, product_id: 101, quantity: 1 }));
      expect(r.status).toBe(202);
      expect(r.json).toMatchObject({ status: "pending", order_id: expect.stringMatching(/^order_\d+$/) });
      expect(r.headers.get("location")).toBe(`/cqrs/queries/orders/${r.json.order_id}`);
      order = r.json;
      await h.settle(r.json);
    });

    it("shows the confirmed order with its timeline, by order_123 or 123", async () => {
      const r = await get(base, `/cqrs/queries/orders/${order.order_id.replace("order_", "")}`);
      expect(r.status).toBe(200);
      expect(r.json).toMatchObject({ status: "confirmed", user_email: "customer@example.com", user_name: "John Doe", total_amount: 199.99 });
      expect(r.json.timeline.map((t: { event: string }) => t.event)).toEqual(CONFIRMED_TIMELINE);
    });

    it("lists the user's orders and the statistics", async () => {
      const mine = await get(base, "/cqrs/queries/users/456/orders");
      expect(mine.json.orders.map((o: { order_id: string }) => o.order_id)).toContain(order.order_id);
      const stats = await get(base, "/cqrs/queries/statistics/orders");
      expect(stats.json.by_status.confirmed).toBeGreaterThanOrEqual(1);
      expect(stats.json.by_saga_mode.orchestrated.confirmed).toBeGreaterThanOrEqual(1);
      expect(stats.json.saga_duration_ms[0]).toMatchObject({ saga_mode: "orchestrated", outcome: "confirmed" });
    });

    it("pages the event store, filters by type and correlation, and replays an aggregate", async () => {
      const page = await get(base, "/event-store/api/v1/events?limit=3");
      expect(page.json.events).toHaveLength(3);
      const next = await get(base, `/event-store/api/v1/events?limit=3&after=${page.json.next_after}`);
      expect(next.json.events[0].position).toBe(page.json.next_after + 1);
      const initiated = await get(base, "/event-store/api/v1/events/type/OrderInitiated");
      expect(initiated.json.events.every((e: { event_type: string }) => e.event_type === "OrderInitiated")).toBe(true);
      const mine = await get(base, `/event-store/api/v1/events/correlation/${order.correlation_id}`);
      expect(new Set(mine.json.events.map((e: { correlation_id: string }) => e.correlation_id))).toEqual(new Set([order.correlation_id]));
      const replay = await get(base, `/event-store/api/v1/replay/aggregate/orders/${order.order_id.replace("order_", "")}`);
      expect(replay.json.state).toMatchObject({ status: "confirmed", order_id: order.order_id, version: 2 });
    });

    it("tells the saga's story in the same shape in either mode", async () => {
      const r = await get(base, `/sagas/${order.correlation_id}`);
      expect(r.json).toMatchObject({
        status: "confirmed",
        saga_mode: "orchestrated",
        steps: { reserve_stock: "succeeded", charge_payment: "succeeded", schedule_shipment: "succeeded", confirm: "succeeded" },
      });
      expect(r.json.orchestrator.status).toMatch(/confirmed/);
    });

    it("answers when the saga ends with Prefer: wait", async () => {
      const r = await post(base, "/cqrs/commands/orders", JSON.stringify({ user_id: 456, product_id: 101, quantity: 1, card_token: "tok_chargeDeclined" }), {
        Prefer: "wait=10",
      });
      expect(r.status).toBe(200);
      expect(r.headers.get("preference-applied")).toBe("wait=10");
      expect(r.json).toMatchObject({ status: "cancelled", cancellation_reason: "payment_failed" });
    });

    it("returns the first answer again for a repeated Idempotency-Key", async () => {
      const body = JSON.stringify({ user_id: 457, product_id: 102, quantity: 2 });
      const first = await post(base, "/cqrs/commands/orders", body, { "Idempotency-Key": "k-123" });
      const again = await post(base, "/cqrs/commands/orders", body, { "Idempotency-Key": "k-123" });
      expect(again.status).toBe(202);
      expect(again.json.order_id).toBe(first.json.order_id);
      expect(again.headers.get("idempotent-replayed")).toBe("true");
      const reused = await post(base, "/cqrs/commands/orders", JSON.stringify({ user_id: 457, product_id: 102, quantity: 3 }), {
        "Idempotency-Key": "k-123",
      });
      expect(reused.status).toBe(422);
      // one checkout in all for this customer: neither the replayed key nor the reused one placed another
      const initiated = await get(base, "/event-store/api/v1/events/type/OrderInitiated?limit=1000");
      const placed = initiated.json.events.filter((e: { data: { customer_id: number } }) => e.data.customer_id === 457);
      expect(placed.map((e: { data: { order_id: string } }) => e.data.order_id)).toEqual([first.json.order_id]);
    });

    it("serves the saga metrics in Prometheus format, open like /health", async () => {
      const res = await fetch(`${base}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toContain("text/plain");
      const text = await res.text();
      expect(text).toMatch(/^saga_messages_published_total\{type="OrderInitiated",node="[^"]+"\} [1-9]/m);
      expect(text).toMatch(/^saga_messages_consumed_total\{consumer="warehouse:ReserveStock",type="ReserveStock",outcome="handled",node="[^"]+"\} [1-9]/m);
      expect(text).toMatch(/^saga_compensations_total\{step="reserve_stock",node="[^"]+"\} [1-9]/m);
      expect(text).toMatch(/^saga_duration_seconds_count\{mode="orchestrated",outcome="confirmed",node="[^"]+"\} [1-9]/m);
      expect(text).toMatch(/^saga_duration_seconds_bucket\{mode="orchestrated",outcome="confirmed",node="[^"]+",le="\+Inf"\} [1-9]/m);
      expect(text).toMatch(/^saga_in_flight\{mode="orchestrated"\} \d+$/m);
      expect(text).toMatch(/^saga_dead_letters 0$/m);
    });

    it("serves products, inventory, users and carts", async () => {
      expect((await get(base, "/api/v1/products")).json[0]).toMatchObject({ id: 101, name: "Laptop Dell XPS", price: 199.99, currency: "CAD" });
      expect((await get(base, "/api/v1/inventory/101")).json).toMatchObject({ product_id: 101 });
      expect((await get(base, "/api/v1/users/456")).json).toMatchObject({ name: "John Doe", email: "customer@example.com" });
      const cart = await post(base, "/api/v1/carts", JSON.stringify({ user_id: 458 }));
      expect(cart.status).toBe(201);
      await post(base, `/api/v1/carts/${cart.json.cart_id}/items`, JSON.stringify({ product_id: 103, quantity: 1 }));
      await post(base, `/api/v1/carts/${cart.json.cart_id}/items`, JSON.stringify({ product_id: 105, quantity: 2 }));
      const out = await post(base, `/api/v1/carts/${cart.json.cart_id}/checkout`, "{}", { Prefer: "wait=10" });
      expect(out.json).toMatchObject({ status: "confirmed" });
      expect(out.json.order.items.map((i: { product_id: number }) => i.product_id)).toEqual([103, 105]);
      const twice = await post(base, `/api/v1/carts/${cart.json.cart_id}/checkout`, "{}");
      expect(twice.status).toBe(409);
      expect(twice.type).toContain("application/problem+json");
    });
  });

  describe("bad input answers problem+json and writes nothing", () => {
    const cases: { name: string; body: string; status: number; detail: RegExp }[] = [
      { name: "malformed JSON", body: '{"user_id": 456, "product_id": ', status: 400, detail: /not valid JSON/ },
      { name: "missing quantity", body: JSON.stringify({ user_id: 456, product_id: 101 }), status: 422, detail: /quantity: is required/ },
      { name: "negative quantity", body: JSON.stringify({ user_id: 456, product_id: 101, quantity: -2 }), status: 422, detail: /quantity: must be at least 1/ },
      { name: "fractional quantity", body: JSON.stringify({ user_id: 456, product_id: 101, quantity: 1.5 }), status: 422, detail: /quantity: must be a whole number/ },
      { name: "unknown user", body: JSON.stringify({ user_id: 999, product_id: 101, quantity: 1 }), status: 422, detail: /user 999 does not exist/ },
      { name: "unknown product", body: JSON.stringify({ user_id: 456, product_id: 777, quantity: 1 }), status: 422, detail: /product 777 does not exist/ },
      {
        name: "items and product_id together",
        body: JSON.stringify({ user_id: 456, product_id: 101, quantity: 1, items: [{ product_id: 102, quantity: 1 }] }),
        status: 422,
        detail: /either items or product_id/,
      },
      { name: "a body that is not an object", body: "[1,2,3]", status: 422, detail: /expected object/ },
      { name: "a body over the size limit", body: JSON.stringify({ user_id: 456, product_id: 101, quantity: 1, pad: "x".repeat(4096) }), status: 413, detail: /larger than the limit/ },
    ];

    it.each(cases)("$name → $status", async ({ body, status, detail }) => {
      const events = await h.eventCount();
      const orders = (await h.pool.query("SELECT count(*)::int AS n FROM orders.orders")).rows[0].n;
      const r = await post(base, "/cqrs/commands/orders", body);
      expect(r.status).toBe(status);
      expect(r.type).toContain("application/problem+json");
      expect(r.json).toMatchObject({ type: "about:blank", status, title: expect.any(String) });
      expect(r.json.detail).toMatch(detail);
      expect(await h.eventCount()).toBe(events);
      expect((await h.pool.query("SELECT count(*)::int AS n FROM orders.orders")).rows[0].n).toBe(orders);
    });

    it("names the field of each invalid value", async () => {
      const r = await post(base, "/cqrs/commands/orders", JSON.stringify({ user_id: 456, product_id: 101, quantity: -1 }));
      expect(r.json.errors).toEqual([{ field: "quantity", message: "must be at least 1" }]);
    });

    it("answers 404 problem+json for unknown orders and routes", async () => {
      const order = await get(base, "/cqrs/queries/orders/order_424242");
      expect(order.status).toBe(404);
      expect(order.type).toContain("application/problem+json");
      expect(order.json.detail).toMatch(/order_424242 does not exist/);
      const route = await get(base, "/no/such/route");
      expect(route.status).toBe(404);
      expect(route.type).toContain("application/problem+json");
    });
  });
});

describe("gateway with API keys and a rate limit", () => {
  let h: CheckoutHarness;

  beforeAll(async () => {
    h = await CheckoutHarness.start({ mode: "choreographed", env: { API_KEYS: "key-one,key-two", RATE_LIMIT_PER_MINUTE: "3", HOST: "127.0.0.1" } });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it("refuses a request without a key or with a wrong one, and accepts a configured key", async () => {
    const none = await get(h.baseUrl, "/api/v1/products");
    expect(none.status).toBe(401);
    expect(none.type).toContain("application/problem+json");
    expect(none.json.detail).toMatch(/API key is required/);
    const wrong = await get(h.baseUrl, "/api/v1/products", { "X-API-Key": "nope" });
    expect(wrong.status).toBe(401);
    const ok = await get(h.baseUrl, "/api/v1/products", { Authorization: "Bearer key-two" });
    expect(ok.status).toBe(200);
  });

  it("answers 429 with Retry-After past the rate limit", async () => {
    const statuses: number[] = [];
    let last: Awaited<ReturnType<typeof get>> | undefined;
    for (let i = 0; i < 5; i++) {
      last = await get(h.baseUrl, "/api/v1/users/456", { "X-API-Key": "key-one" });
      statuses.push(last.status);
    }
    expect(statuses).toContain(429);
    expect(last!.status).toBe(429);
    expect(Number(last!.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(last!.type).toContain("application/problem+json");
  });

  it("keeps /health open", async () => {
    const r = await get(h.baseUrl, "/health");
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ status: "ok", saga_mode: "choreographed", transport: "memory" });
    expect(r.json.services).toContain("saga-watchdog");
  });
});

describe("gateway while a service it needs is not running", () => {
  let h: CheckoutHarness;

  beforeAll(async () => {
    // every service but users: as a process of one process per service sees the system before
    // the users process has joined
    const services = "event-store,products,carts,orders,warehouse,payments,shipping,notifications,projections,saga-watchdog,gateway";
    h = await CheckoutHarness.start({ mode: "choreographed", env: { SERVICES: services } });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it("answers 503 to retry, not 422 'user does not exist', and writes nothing", async () => {
    const r = await post(h.baseUrl, "/cqrs/commands/orders", JSON.stringify({ user_id: 456, product_id: 101, quantity: 1 }));
    expect(r.status).toBe(503);
    expect(r.type).toContain("application/problem+json");
    expect(r.json.detail).toMatch(/not running; try again/);
    expect(await h.eventCount()).toBe(0);
    const cart = await post(h.baseUrl, "/api/v1/carts", JSON.stringify({ user_id: 456 }));
    expect(cart.status).toBe(503);
  });
});
