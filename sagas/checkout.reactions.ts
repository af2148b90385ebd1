import { participantOf, type CommandType, type DataOf, type EventType } from "../services/shared/catalogue.js";
import {
  allLinesReserved,
  confirmationFor,
  notificationFor,
  paymentFor,
  reserveStockFor,
  shipmentFor,
} from "./checkout.commands.js";

/**
 * The choreographed checkout, as a table of reactions: no coordinator, each participant reacts
 * to the events of the others. Compensation runs as a chain in reverse step order: a failure
 * makes the previous participant undo its work, whose "undone" event makes the one before it
 * undo its own, and the order is cancelled last, with the reason carried along the chain.
 */

export type OrderLookup = (order_id: string) => Promise<DataOf<"OrderInitiated">>;

export interface Reaction<E extends EventType = EventType, C extends CommandType = CommandType> {
  on: E;
  run: C;
  when?(event: DataOf<E>): boolean;
  build(event: DataOf<E>, orderOf: OrderLookup): DataOf<C> | Promise<DataOf<C>>;
}

const reaction = <E extends EventType, C extends CommandType>(r: Reaction<E, C>): Reaction =>
  r as unknown as Reaction;

/** The consumer that runs a reaction, and names its inbox: participant, event, command. */
export const reactionConsumer = (r: Reaction): string => `${participantOf(r.run)}:${r.on}->${r.run}`;

export const checkoutReactions: readonly Reaction[] = [
  // forward
  reaction({ on: "OrderInitiated", run: "ReserveStock", build: (e) => reserveStockFor(e) }),
  reaction({
    on: "StockReserved",
    run: "ProcessPayment",
    when: allLinesReserved,
    build: async (e, orderOf) => paymentFor(await orderOf(e.order_id)),
  }),
  reaction({
    on: "PaymentProcessed",
    run: "ScheduleShipment",
    build: async (e, orderOf) => shipmentFor(await orderOf(e.order_id)),
  }),
  reaction({ on: "ShipmentScheduled", run: "ConfirmOrder", build: (e) => confirmationFor(e) }),
  reaction({
    on: "OrderConfirmed",
    run: "SendNotification",
    build: async (e, orderOf) => notificationFor(await orderOf(e.order_id)),
  }),

  // failures start the compensation chain one step back
  reaction({ on: "StockUnavailable", run: "CancelOrder", build: (e) => ({ order_id: e.order_id, reason: "stock_unavailable" }) }),
  reaction({ on: "PaymentFailed", run: "ReleaseStock", build: (e) => ({ order_id: e.order_id, reason: "payment_failed" }) }),
  reaction({ on: "ShipmentFailed", run: "RefundPayment", build: (e) => ({ order_id: e.order_id, reason: "shipping_failed" }) }),

  // each undone step undoes the one before it
  reaction({ on: "ShipmentCancelled", run: "RefundPayment", build: (e) => ({ order_id: e.order_id, reason: e.reason }) }),
  reaction({ on: "PaymentRefunded", run: "ReleaseStock", build: (e) => ({ order_id: e.order_id, reason: e.reason }) }),
  reaction({
    on: "StockReleased",
    run: "CancelOrder",
    // a reservation that fell short releases its own lines; StockUnavailable cancels that order
    when: (e) => e.reason !== "stock_unavailable",
    build: (e) => ({ order_id: e.order_id, reason: e.reason }),
  }),

  // out of time (the watchdog's event): the participant of the step in flight undoes it
  reaction({
    on: "CheckoutTimedOut",
    run: "ReleaseStock",
    when: (e) => e.undo_from === "reserve_stock",
    build: (e) => ({ order_id: e.order_id, reason: "timeout" }),
  }),
  reaction({
    on: "CheckoutTimedOut",
    run: "RefundPayment",
    when: (e) => e.undo_from === "charge_payment",
    build: (e) => ({ order_id: e.order_id, reason: "timeout" }),
  }),
  reaction({
    on: "CheckoutTimedOut",
    run: "CancelShipment",
    when: (e) => e.undo_from === "schedule_shipment",
    build: (e) => ({ order_id: e.order_id, reason: "timeout" }),
  }),
];
