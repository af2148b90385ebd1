import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { randomUUID } from "node:crypto";
import { emit, isCommandType, type AnyEmit, type AnyNewMessage } from "../services/shared/catalogue.js";
import { withTransaction } from "../services/database/database.js";
import { committed } from "../services/event-store/commit-signal.js";
import { ALL_SERVICES, SAGA_MODES } from "../services/shared/config.js";
import { CheckoutHarness } from "./support/checkout-harness.js";
import { orderInitiated } from "./support/messages.js";

/**
 * Deadlines, end to end: the payment provider answers only after the checkout's deadline, so
 * the checkout is cancelled with reason `timeout` and undone, the late charge is refused, and
 * nothing is left reserved or captured.
 */
/** Stores a message of a checkout straight in the event store, as its service would. */
function store(h: CheckoutHarness, correlation_id: string, service_name: string, message: AnyEmit) {
  return withTransaction(h.pool, (tx) => h.system.store.append(tx, [h.system.envelopes.create(message, { correlation_id, service_name }) as AnyNewMessage]));
}

/** Resolves once a consumer of `participant` has handled the message (its inbox holds it). */
async function handled(h: CheckoutHarness, participant: string, messageId: string): Promise<void> {
  await vi.waitFor(
    async () => {
      const { rows } = await h.pool.query("SELECT 1 FROM messaging.inbox WHERE consumer LIKE $1 AND message_id = $2", [`${participant}:%`, messageId]);
      expect(rows, `${participant} has not handled ${messageId}`).toHaveLength(1);
    },
    { timeout: 15_000, interval: 50 },
  );
}

const PRODUCT = { id: 9601, price: 75, stock: 10 };

describe.each(SAGA_MODES)("a checkout past its deadline (%s)", (mode) => {
  let h: CheckoutHarness;

  beforeAll(async () => {
    h = await CheckoutHarness.start({ mode, env: { SAGA_TIMEOUT_MS: "600", PAYMENT_LATENCY_MS: "3000" } });
    await h.seedProducts([PRODUCT]);
  });
  afterAll(async () => {
    await h?.stop();
  });

  it("is cancelled with reason timeout, its stock released and the late charge refused", async () => {
    const { accepted, view } = await h.checkout({ user_id: 456, product_id: PRODUCT.id, quantity: 2 });
    expect(view.status).toBe("cancelled");
    expect(view.cancellation_reason).toBe("timeout");

    // the provider's late answer must not capture anything: wait until payments has handled the
    // message it charges on (the provider's answer comes first, outside the transaction)
    const chargedOn = (await h.events(accepted.correlation_id)).find((e) => e.event_type === (mode === "orchestrated" ? "ProcessPayment" : "StockReserved"));
    expect(chargedOn).toBeDefined();
    await handled(h, "payments", chargedOn!.event_id);
    const events = await h.events(accepted.correlation_id);
    const business = events.filter((e) => !isCommandType(e.event_type)).map((e) => e.event_type);
    expect(business).toEqual([
      "OrderInitiated",
      "StockReserved",
      ...(mode === "choreographed" ? ["CheckoutTimedOut"] : []),
      "PaymentRefunded",
      "StockReleased",
      "OrderCancelled",
    ]);
    expect(business).not.toContain("PaymentProcessed");
    expect(await h.payment(accepted.order_id)).toMatchObject({ status: "voided" });
    expect(await h.stock(PRODUCT.id)).toEqual({ available: PRODUCT.stock, reserved: 0 });
  });
});

/**
 * The watchdog's timeout is final: a step forward whose message arrives after it (late, or
 * redelivered) changes nothing. The participants check, in the transaction that would take the
 * step, whether the checkout has timed out.
 */
describe("a choreographed checkout already timed out", () => {
  it("takes no step forward: a late OrderInitiated reserves no stock", async () => {
    const h = await CheckoutHarness.start({ mode: "choreographed" });
    try {
      const product = { id: 9602, price: 20, stock: 5 };
      await h.seedProducts([product]);
      const correlation_id = `checkout_${randomUUID().slice(0, 16)}`;
      const order_id = "order_990001";
      // the watchdog's verdict first (the payment step in flight: the warehouse is not involved)
      await store(h, correlation_id, "saga-watchdog", emit("CheckoutTimedOut", { order_id, undo_from: "charge_payment" }));
      const [initiatedEvent] = await store(h, correlation_id, "orders", orderInitiated(order_id, product.id));
      committed();
      // the warehouse handles the message (its inbox has it) and takes no step
      await handled(h, "warehouse", initiatedEvent.event_id);
      expect(await h.reservations(order_id)).toEqual([]);
      expect(await h.stock(product.id)).toEqual({ available: product.stock, reserved: 0 });
      // (the compensation chain the timeout started does run: refund, then release)
      const business = await h.businessEvents(correlation_id);
      expect(business).not.toContain("StockReserved");
      expect(business).not.toContain("StockUnavailable");
    } finally {
      await h.stop();
    }
  });
});

/**
 * A message can be lost on its way (a relay that does not run, a broker that drops it). A
 * checkout whose OrderInitiated was lost so has no saga instance; once a step's time has passed, the orchestrator's sweep reads it
 * from the event store and starts the saga. Here no relay runs (no event-store service), so the
 * stored OrderInitiated is never published: only the sweep can find it.
 */
describe("an orchestrated checkout whose first message was lost", () => {
  it("is started by the sweep from the event store", async () => {
    const h = await CheckoutHarness.start({
      mode: "orchestrated",
      env: { SERVICES: ALL_SERVICES.filter((s) => s !== "event-store").join(","), SAGA_STEP_TIMEOUT_MS: "300" },
    });
    try {
      const correlation_id = `checkout_${randomUUID().slice(0, 16)}`;
      const order_id = "order_990002";
      await store(h, correlation_id, "orders", orderInitiated(order_id, 101));
      const deadline = Date.now() + 15_000;
      let types: string[] = [];
      while (!types.includes("ReserveStock") && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        types = (await h.events(correlation_id)).map((e) => e.event_type);
      }
      // the saga started: its instance exists and its first command is recorded
      expect(types).toEqual(["OrderInitiated", "ReserveStock"]);
      const saga = await h.pool.query("SELECT status, step FROM orchestrator.sagas WHERE correlation_id = $1", [correlation_id]);
      expect(saga.rows).toEqual([{ status: "running", step: "reserve_stock" }]);
    } finally {
      await h.stop();
    }
  });
});

/**
 * The choreography's counterpart: a checkout whose messages were lost on their way. Here no
 * relay runs, so nothing stored is
 * ever published: the watchdog times the checkout out, and then, a step's time apart, sends
 * again each stored event whose reaction has not handled it, until the compensation chain has
 * run to the order's cancellation. Without that, the CheckoutTimedOut it records would reach no
 * one and the order would stay pending for good.
 */
describe("a choreographed checkout whose messages were lost", () => {
  it("is still carried to its end by the watchdog", async () => {
    const h = await CheckoutHarness.start({
      mode: "choreographed",
      env: { SERVICES: ALL_SERVICES.filter((s) => s !== "event-store").join(","), SAGA_TIMEOUT_MS: "600", SAGA_STEP_TIMEOUT_MS: "300" },
    });
    try {
      const product = { id: 9603, price: 20, stock: 5 };
      await h.seedProducts([product]);
      const accepted = await h.placeOrder({ user_id: 456, product_id: product.id, quantity: 1 });
      const deadline = Date.now() + 20_000;
      let order = await h.order(accepted.order_id);
      while (order.status === "pending" && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        order = await h.order(accepted.order_id);
      }
      const business = await h.businessEvents(accepted.correlation_id);
      expect(order, `events: ${business.join(", ")}`).toEqual({ status: "cancelled", cancellation_reason: "timeout" });
      // timed out while the reservation was the step in flight: the warehouse, told at once of
      // the order and of its timeout, reserved nothing and closed the order for reservations
      expect(business).toEqual(["OrderInitiated", "CheckoutTimedOut", "StockReleased", "OrderCancelled"]);
      expect(await h.stock(product.id)).toEqual({ available: product.stock, reserved: 0 });
    } finally {
      await h.stop();
    }
  });
});
