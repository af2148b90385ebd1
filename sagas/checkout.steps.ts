import type { CancellationReason, CommandType, DataOf, EventType } from "../services/shared/catalogue.js";
import {
  allLinesReserved,
  confirmationFor,
  notificationFor,
  paymentFor,
  reserveStockFor,
  shipmentFor,
} from "./checkout.commands.js";

/**
 * The orchestrated checkout, as a table of steps. Each step invokes one participant, waits for
 * its success or failure reply, and names the compensation that undoes it. A compensation is
 * owed only once its step has succeeded; on a failure the owed ones run in reverse order, and
 * the order is cancelled last.
 */

export type StepName = "reserve_stock" | "charge_payment" | "schedule_shipment" | "confirm" | "notify";

/** What the orchestrator knows of one checkout when it builds a command. */
export interface CheckoutFacts {
  order: DataOf<"OrderInitiated">;
  shipment?: DataOf<"ShipmentScheduled">;
}

export interface Compensation {
  command: CommandType;
  /** The participant's answer that the compensation is done. */
  done: EventType;
  build(facts: CheckoutFacts, reason: CancellationReason): DataOf<CommandType>;
}

export interface Step {
  name: StepName;
  invoke: CommandType;
  build(facts: CheckoutFacts): DataOf<CommandType>;
  succeeded: EventType;
  /** For replies that come in parts (one StockReserved per line): whether this part completes the step. */
  completes?(data: never): boolean;
  failed?: EventType;
  reason?: CancellationReason;
  compensation?: Compensation;
  /** Past the pivot the order stands: failures after it are retried, never compensated. */
  afterPivot?: boolean;
}

const releaseStock: Compensation = {
  command: "ReleaseStock",
  done: "StockReleased",
  build: (f, reason) => ({ order_id: f.order.order_id, reason }),
};
const refundPayment: Compensation = {
  command: "RefundPayment",
  done: "PaymentRefunded",
  build: (f, reason) => ({ order_id: f.order.order_id, reason }),
};
const cancelShipment: Compensation = {
  command: "CancelShipment",
  done: "ShipmentCancelled",
  build: (f, reason) => ({ order_id: f.order.order_id, reason }),
};

/** The saga starts on OrderInitiated; undoing the initiation is cancelling the order. */
export const initiation = {
  startedBy: "OrderInitiated",
  compensation: {
    command: "CancelOrder",
    done: "OrderCancelled",
    build: (f: CheckoutFacts, reason: CancellationReason) => ({ order_id: f.order.order_id, reason }),
  },
} as const satisfies { startedBy: EventType; compensation: Compensation };

export const checkoutSteps: readonly Step[] = [
  {
    name: "reserve_stock",
    invoke: "ReserveStock",
    build: (f) => reserveStockFor(f.order),
    succeeded: "StockReserved",
    completes: allLinesReserved as (d: never) => boolean,
    failed: "StockUnavailable",
    reason: "stock_unavailable",
    compensation: releaseStock,
  },
  {
    name: "charge_payment",
    invoke: "ProcessPayment",
    build: (f) => paymentFor(f.order),
    succeeded: "PaymentProcessed",
    failed: "PaymentFailed",
    reason: "payment_failed",
    compensation: refundPayment,
  },
  {
    name: "schedule_shipment",
    invoke: "ScheduleShipment",
    build: (f) => shipmentFor(f.order),
    succeeded: "ShipmentScheduled",
    failed: "ShipmentFailed",
    reason: "shipping_failed",
    // only a deadline can fail the checkout after this step
    compensation: cancelShipment,
  },
  {
    name: "confirm",
    invoke: "ConfirmOrder",
    build: (f) => confirmationFor(f.shipment!),
    succeeded: "OrderConfirmed",
  },
  {
    name: "notify",
    invoke: "SendNotification",
    build: (f) => notificationFor(f.order),
    succeeded: "NotificationSent",
    afterPivot: true,
  },
];
