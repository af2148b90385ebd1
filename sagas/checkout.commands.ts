import type { DataOf } from "../services/shared/catalogue.js";

/**
 * How each participant's command is built from what the checkout knows. The orchestrator and
 * the choreography both use these, so the participants receive the same requests either way.
 */
type Order = DataOf<"OrderInitiated">;

export const reserveStockFor = (order: Order): DataOf<"ReserveStock"> => ({
  order_id: order.order_id,
  items: order.items.map((l) => ({ product_id: l.product_id, quantity: l.quantity })),
});

export const paymentFor = (order: Order): DataOf<"ProcessPayment"> => ({
  order_id: order.order_id,
  customer_id: order.customer_id,
  amount: order.total_amount,
  currency: order.currency,
  card_token: order.card_token,
});

export const shipmentFor = (order: Order): DataOf<"ScheduleShipment"> => ({
  order_id: order.order_id,
  shipping_address: order.shipping_address,
  items: order.items.map((l) => ({ product_id: l.product_id, quantity: l.quantity })),
});

export const confirmationFor = (shipment: DataOf<"ShipmentScheduled">): DataOf<"ConfirmOrder"> => ({
  order_id: shipment.order_id,
  shipment_id: shipment.shipment_id,
  estimated_delivery: shipment.estimated_delivery,
});

export const notificationFor = (order: Order): DataOf<"SendNotification"> => ({
  order_id: order.order_id,
  customer_id: order.customer_id,
  template: "order_confirmed",
  ...(order.customer ? { recipient: order.customer } : {}),
});

/** StockReserved comes once per line, all in one transaction: the last line completes the step. */
export const allLinesReserved = (e: DataOf<"StockReserved">): boolean => e.line === e.lines;
