import { isMessage, participantOf, type AnyEnvelope, type CommandType, type DataOf, type EventType } from "../services/shared/catalogue.js";
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

/** One row of the table: on an event of type `on` (when its condition holds), the command `run`. */
export interface Reaction {
  readonly on: EventType;
  readonly run: CommandType;
  /** Whether this reaction acts on a message: one of its event type whose condition holds. */
  applies(event: AnyEnvelope): boolean;
  /** The data of the command `run` for that event. */
  commandFor(event: AnyEnvelope, orderOf: OrderLookup): Promise<DataOf<CommandType>>;
}

/** A reaction, typed: `when` and `build` see the data of `on`, and `build` makes `run`'s data. */
function reaction<E extends EventType, C extends CommandType>(r: {
  on: E;
  run: C;
  when?(event: DataOf<E>): boolean;
  build(event: DataOf<E>, orderOf: OrderLookup): DataOf<C> | Promise<DataOf<C>>;
}): Reaction {
  const dataOf = (event: AnyEnvelope): DataOf<E> => {
    if (!isMessage(event, r.on)) throw new Error(`the reaction to ${r.on} was given ${event.event_type}`);
    return event.data;
  };
  return {
    on: r.on,
    run: r.run,
    applies: (event) => isMessage(event, r.on) && (!r.when || r.when(event.data)),
    commandFor: async (event, orderOf) => r.build(dataOf(event), orderOf),
  };
}

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

/** The reactions an event calls for: what the choreography does when it is published. */
export const reactionsTo = (event: AnyEnvelope): Reaction[] => checkoutReactions.filter((r) => r.applies(event));
