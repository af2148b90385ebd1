import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CheckoutHarness } from "./checkout-harness.js";

/**
 * The shared behaviour suite: every checkout outcome, asserted as the exact business event
 * sequence of the correlation id and the final state of stock, payment and order. It runs once
 * per saga mode (and transport), against whatever `start` builds.
 */

// products of this suite only, so its stock figures are exact
const LAPTOP = { id: 9101, price: 199.99, stock: 10 };
const MOUSE = { id: 9102, price: 25, stock: 10 };
const SCARCE = { id: 9103, price: 50, stock: 1 };
const DOCK = { id: 9104, price: 80, stock: 10 };
const USER = 456;

/** The business events of a confirmed single-line checkout, in order. */
export const CONFIRMED_TIMELINE = [
  "OrderInitiated",
  "StockReserved",
  "PaymentProcessed",
  "ShipmentScheduled",
  "OrderConfirmed",
  "NotificationSent",
];

export function checkoutBehaviour(label: string, start: () => Promise<CheckoutHarness>): void {
  describe(`checkout behaviour (${label})`, () => {
    let h: CheckoutHarness;

    beforeAll(async () => {
      h = await start();
      await h.seedProducts([LAPTOP, MOUSE, SCARCE, DOCK]);
    });
    afterAll(async () => {
      await h?.stop();
    });

    it("confirms an order: stock reserved, payment captured, shipment scheduled, customer notified", async () => {
      const before = await h.stock(LAPTOP.id);
      const { accepted, view } = await h.checkout({ user_id: USER, product_id: LAPTOP.id, quantity: 2 });

      expect(await h.businessEvents(accepted.correlation_id)).toEqual(CONFIRMED_TIMELINE);
      expect(view.status).toBe("confirmed");
      expect(view.estimated_delivery).toMatch(/^\d{4}-\d{2}-\d{2}$/);
      expect(view.user_email).toBe("customer@example.com");
      expect(await h.order(accepted.order_id)).toEqual({ status: "confirmed", cancellation_reason: null });
      expect(await h.stock(LAPTOP.id)).toEqual({ available: before.available - 2, reserved: before.reserved + 2 });
      expect(await h.payment(accepted.order_id)).toEqual({ status: "captured", amount: 399.98 });
    });

    it("cancels with stock_unavailable when the quantity exceeds the stock, and charges nothing", async () => {
      const before = await h.stock(MOUSE.id);
      const { accepted, view } = await h.checkout({ user_id: USER, product_id: MOUSE.id, quantity: before.available + 1 });

      expect(await h.businessEvents(accepted.correlation_id)).toEqual(["OrderInitiated", "StockUnavailable", "OrderCancelled"]);
      expect(view.status).toBe("cancelled");
      expect(view.cancellation_reason).toBe("stock_unavailable");
      expect(await h.stock(MOUSE.id)).toEqual(before);
      expect(await h.payment(accepted.order_id)).toBeNull();
      expect(await h.reservations(accepted.order_id)).toEqual([]);
    });

    it("releases the stock and cancels with payment_failed when the card is declined", async () => {
      const before = await h.stock(LAPTOP.id);
      const { accepted, view } = await h.checkout({
        user_id: USER,
        product_id: LAPTOP.id,
        quantity: 1,
        card_token: "tok_chargeDeclined",
      });

      expect(await h.businessEvents(accepted.correlation_id)).toEqual([
        "OrderInitiated",
        "StockReserved",
        "PaymentFailed",
        "StockReleased",
        "OrderCancelled",
      ]);
      const failed = (await h.events(accepted.correlation_id)).find((e) => e.event_type === "PaymentFailed");
      expect(failed?.data).toMatchObject({ reason: "insufficient_funds", error_code: "DECLINED_001" });
      expect(view.cancellation_reason).toBe("payment_failed");
      expect(await h.stock(LAPTOP.id)).toEqual(before);
      expect(await h.payment(accepted.order_id)).toMatchObject({ status: "failed" });
      expect(await h.reservations(accepted.order_id)).toEqual([{ product_id: LAPTOP.id, quantity: 1, status: "released" }]);
    });

    it("refunds the payment, releases the stock and cancels with shipping_failed when shipping fails", async () => {
      const before = await h.stock(LAPTOP.id);
      const { accepted, view } = await h.checkout({
        user_id: USER,
        product_id: LAPTOP.id,
        quantity: 1,
        shipping_address: { street: "1 Nowhere Lane", city: "Atlantis", postal_code: "00000" },
      });

      expect(await h.businessEvents(accepted.correlation_id)).toEqual([
        "OrderInitiated",
        "StockReserved",
        "PaymentProcessed",
        "ShipmentFailed",
        "PaymentRefunded",
        "StockReleased",
        "OrderCancelled",
      ]);
      expect(view.cancellation_reason).toBe("shipping_failed");
      expect(await h.stock(LAPTOP.id)).toEqual(before);
      expect(await h.payment(accepted.order_id)).toEqual({ status: "refunded", amount: 199.99 });
      const refund = (await h.events(accepted.correlation_id)).find((e) => e.event_type === "PaymentRefunded");
      expect(refund?.data).toMatchObject({ amount: 199.99, reason: "shipping_failed" });
    });

    it("releases every reserved line when one product of a multi-line order is short", async () => {
      const before = await Promise.all([h.stock(LAPTOP.id), h.stock(MOUSE.id), h.stock(SCARCE.id), h.stock(DOCK.id)]);
      const { accepted, view } = await h.checkout({
        user_id: USER,
        items: [
          { product_id: DOCK.id, quantity: 1 },
          { product_id: LAPTOP.id, quantity: 1 },
          { product_id: MOUSE.id, quantity: 2 },
          { product_id: SCARCE.id, quantity: 5 },
        ],
      });

      // lines are reserved in product order; the short one stops the reservation
      expect(await h.businessEvents(accepted.correlation_id)).toEqual([
        "OrderInitiated",
        "StockReserved",
        "StockReserved",
        "StockUnavailable",
        "StockReleased",
        "OrderCancelled",
      ]);
      const released = (await h.events(accepted.correlation_id)).find((e) => e.event_type === "StockReleased");
      expect(released?.data).toMatchObject({
        lines: [
          { product_id: LAPTOP.id, quantity: 1 },
          { product_id: MOUSE.id, quantity: 2 },
        ],
      });
      expect(view.cancellation_reason).toBe("stock_unavailable");
      const after = await Promise.all([h.stock(LAPTOP.id), h.stock(MOUSE.id), h.stock(SCARCE.id), h.stock(DOCK.id)]);
      expect(after).toEqual(before);
      expect((await h.reservations(accepted.order_id)).every((r) => r.status === "released")).toBe(true);
      expect(await h.payment(accepted.order_id)).toBeNull();
    });

    it("confirms a multi-line order with one StockReserved per line", async () => {
      const { accepted, view } = await h.checkout({
        user_id: USER,
        items: [
          { product_id: MOUSE.id, quantity: 1 },
          { product_id: DOCK.id, quantity: 2 },
        ],
      });
      expect(await h.businessEvents(accepted.correlation_id)).toEqual([
        "OrderInitiated",
        "StockReserved",
        "StockReserved",
        "PaymentProcessed",
        "ShipmentScheduled",
        "OrderConfirmed",
        "NotificationSent",
      ]);
      expect(view.total_amount).toBe(185);
      expect(await h.payment(accepted.order_id)).toEqual({ status: "captured", amount: 185 });
    });
  });
}
