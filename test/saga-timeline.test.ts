import { describe, expect, it } from "vitest";
import { emit, newMessage, type AnyEmit, type AnyEnvelope } from "../services/shared/catalogue.js";
import { outcomeOf, roleOf } from "../sagas/checkout.steps.js";
import { sagaTimeline } from "../sagas/saga-timeline.js";
import { orderInitiated } from "./support/messages.js";
import { compensatedStep, stepOf } from "../observability/saga-steps.js";

/** A checkout's story from its events alone, and the step of each message, both read off the step table. */

const envelope = (e: AnyEmit, i: number): AnyEnvelope & { position: number } =>
  ({ ...newMessage(e, { correlation_id: "checkout_story", service_name: "test" }), version: 1, position: i + 1 }) as AnyEnvelope & { position: number };

describe("the step of each message", () => {
  it("names the step and the part each message plays in it, the initiation included", () => {
    expect(roleOf("ReserveStock")).toEqual({ step: "reserve_stock", role: "invoke" });
    expect(roleOf("PaymentFailed")).toEqual({ step: "charge_payment", role: "failed" });
    expect(roleOf("CancelShipment")).toEqual({ step: "schedule_shipment", role: "compensate" });
    expect(roleOf("StockReleased")).toEqual({ step: "reserve_stock", role: "compensated" });
    expect(roleOf("OrderCancelled")).toEqual({ step: "initiate", role: "compensated" });
    expect(roleOf("CheckoutTimedOut")).toBeUndefined();
  });

  it("knows the two messages that end a checkout, and no other", () => {
    expect(outcomeOf("OrderConfirmed")).toBe("confirmed");
    expect(outcomeOf("OrderCancelled")).toBe("cancelled");
    for (const type of ["OrderInitiated", "ShipmentScheduled", "NotificationSent", "CancelOrder", "CheckoutTimedOut"]) {
      expect(outcomeOf(type)).toBeUndefined();
    }
  });

  it("gives the traces and the metrics the same steps", () => {
    expect(stepOf("NotificationSent")).toBe("notify");
    expect(compensatedStep("PaymentRefunded")).toBe("charge_payment");
    expect(compensatedStep("OrderCancelled")).toBe("initiate");
    expect(compensatedStep("PaymentProcessed")).toBeUndefined();
  });
});

describe("a saga's timeline", () => {
  it("tells a declined payment: the reservation undone, the payment failed, the order cancelled", () => {
    const id = "order_7";
    const events = [
      orderInitiated(id, 101, 10),
      emit("ReserveStock", { order_id: id, items: [{ product_id: 101, quantity: 1 }] }),
      emit("StockReserved", { order_id: id, product_id: 101, quantity: 1, line: 1, lines: 1 }),
      emit("ProcessPayment", { order_id: id, customer_id: 456, amount: 10, currency: "CAD", card_token: "tok_visa" }),
      emit("PaymentFailed", { order_id: id, amount: 10, reason: "insufficient_funds", error_code: "DECLINED_001" }),
      emit("ReleaseStock", { order_id: id, reason: "payment_failed" }),
      emit("StockReleased", { order_id: id, lines: [{ product_id: 101, quantity: 1 }], reason: "payment_failed" }),
      emit("CancelOrder", { order_id: id, reason: "payment_failed" }),
      emit("OrderCancelled", { order_id: id, reason: "payment_failed" }),
    ].map((e, i) => envelope(e as AnyEmit, i));

    const story = sagaTimeline(events);
    expect(story).toMatchObject({ order_id: id, status: "cancelled", cancellation_reason: "payment_failed" });
    expect(story.steps).toEqual({
      reserve_stock: "compensated",
      charge_payment: "failed",
      schedule_shipment: "not_started",
      confirm: "not_started",
      notify: "not_started",
    });
    expect(story.timeline.map((t) => [t.type, t.kind, t.step])).toEqual([
      ["OrderInitiated", "event", "initiate"],
      ["ReserveStock", "command", "reserve_stock"],
      ["StockReserved", "event", "reserve_stock"],
      ["ProcessPayment", "command", "charge_payment"],
      ["PaymentFailed", "event", "charge_payment"],
      ["ReleaseStock", "command", "reserve_stock"],
      ["StockReleased", "event", "reserve_stock"],
      ["CancelOrder", "command", "initiate"],
      ["OrderCancelled", "event", "initiate"],
    ]);
  });

  it("tells a choreographed checkout confirmed at the pivot, its notification after it", () => {
    const id = "order_8";
    const events = [
      orderInitiated(id, 101, 10),
      emit("StockReserved", { order_id: id, product_id: 101, quantity: 1, line: 1, lines: 1 }),
      emit("PaymentProcessed", { order_id: id, payment_id: "pay_8", transaction_id: "txn_8", amount: 10, currency: "CAD" }),
      emit("ShipmentScheduled", { order_id: id, shipment_id: "shp_8", carrier: "canada_post", estimated_delivery: "2026-12-20" }),
      emit("OrderConfirmed", { order_id: id, shipment_id: "shp_8", estimated_delivery: "2026-12-20" }),
    ].map((e, i) => envelope(e as AnyEmit, i));

    const confirmed = sagaTimeline(events);
    expect(confirmed).toMatchObject({ status: "confirmed", cancellation_reason: null });
    expect(confirmed.steps).toMatchObject({ schedule_shipment: "succeeded", confirm: "succeeded", notify: "not_started" });

    const notified = sagaTimeline([
      ...events,
      envelope(emit("NotificationSent", { order_id: id, channel: "email", recipient: "a@example.com", template: "order_confirmed" }) as AnyEmit, events.length),
    ]);
    expect(notified).toMatchObject({ status: "confirmed" });
    expect(notified.steps.notify).toBe("succeeded");
  });
});
