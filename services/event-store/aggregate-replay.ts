import { isCommand, type AnyEnvelope } from "../shared/catalogue.js";

/**
 * Rebuilds an aggregate's state from its events alone. The participants keep their state in
 * tables; a replay that disagrees with a table is a bug, which the tests check.
 */
export type AggregateState = Record<string, unknown>;

function evolve(state: AggregateState, e: AnyEnvelope): AggregateState {
  // commands are on the `sagas` aggregate: its state lists the commands sent so far
  if (isCommand(e)) return { ...state, commands: [...((state.commands as unknown[]) ?? []), { command: e.event_type, ...e.data }] };
  switch (e.event_type) {
    case "OrderInitiated":
      return { ...state, ...e.data, status: "pending" };
    case "OrderConfirmed":
      return { ...state, status: "confirmed", shipment_id: e.data.shipment_id, estimated_delivery: e.data.estimated_delivery };
    case "OrderCancelled":
      return { ...state, status: "cancelled", cancellation_reason: e.data.reason };
    case "StockReserved": {
      const reserved = { ...(state.reserved as Record<string, number>), [e.data.product_id]: e.data.quantity };
      return { ...state, order_id: e.data.order_id, reserved };
    }
    case "StockUnavailable":
      return { ...state, order_id: e.data.order_id, unavailable: { product_id: e.data.product_id, requested: e.data.requested, available: e.data.available } };
    case "StockReleased": {
      const reserved = { ...(state.reserved as Record<string, number>) };
      for (const line of e.data.lines) delete reserved[line.product_id];
      return { ...state, order_id: e.data.order_id, reserved, released: [...((state.released as unknown[]) ?? []), ...e.data.lines] };
    }
    case "PaymentProcessed":
      return { ...state, ...e.data, status: "captured" };
    case "PaymentFailed":
      return { ...state, ...e.data, status: "failed" };
    case "PaymentRefunded":
      return { ...state, status: state.status === "captured" ? "refunded" : "voided", refund_reason: e.data.reason };
    case "ShipmentScheduled":
      return { ...state, ...e.data, status: "scheduled" };
    case "ShipmentFailed":
      return { ...state, ...e.data, status: "failed" };
    case "ShipmentCancelled":
      return { ...state, order_id: e.data.order_id, status: "cancelled" };
    case "NotificationSent":
    case "NotificationFailed":
      return { ...state, order_id: e.data.order_id, notifications: [...((state.notifications as unknown[]) ?? []), { event: e.event_type, ...e.data }] };
    case "CheckoutTimedOut":
      return { ...state, order_id: e.data.order_id, timed_out: { undo_from: e.data.undo_from, at: e.timestamp } };
    default:
      e satisfies never; // a message added to the catalogue is replayed above, or this fails to compile
      return state;
  }
}

export function replay(events: readonly AnyEnvelope[]): AggregateState & { version: number } {
  const state = events.reduce(evolve, {} as AggregateState);
  return { ...state, version: events.length ? events[events.length - 1].version : 0 };
}
