import { isCommand, type AnyEnvelope, type DataOf } from "../shared/catalogue.js";

export const ORDER_STATUSES = ["pending", "confirmed", "cancelled"] as const;

/** The query side's view of one order, as the API returns it. */
export interface OrderView {
  order_id: string;
  correlation_id: string;
  status: (typeof ORDER_STATUSES)[number];
  cancellation_reason: string | null;
  user_id: number;
  user_email: string | null;
  user_name: string | null;
  total_amount: number;
  currency: string;
  items: DataOf<"OrderInitiated">["items"];
  shipping_address: DataOf<"OrderInitiated">["shipping_address"];
  payment: { status: string; payment_id: string | null; amount: number } | null;
  shipment: { status: string; shipment_id: string | null; carrier?: string } | null;
  estimated_delivery: string | null;
  notified: boolean;
  saga_mode: string | null;
  created_at: string;
  completed_at: string | null;
  saga_duration_ms: number | null;
  timeline: { event: string; timestamp: string }[];
}

export interface UserInfo {
  name: string;
  email: string;
}

/**
 * Folds one event into the order view (pure). Commands are coordination traffic, not part of
 * the order's business timeline, and are skipped.
 */
export function projectOrder(view: OrderView | undefined, e: AnyEnvelope, user?: UserInfo): OrderView | undefined {
  if (isCommand(e)) return view;
  if (e.event_type === "OrderInitiated") {
    if (view) return view; // replayed
    const d = e.data;
    return {
      order_id: d.order_id,
      correlation_id: e.correlation_id,
      status: "pending",
      cancellation_reason: null,
      user_id: d.customer_id,
      user_email: user?.email ?? null,
      user_name: user?.name ?? null,
      total_amount: d.total_amount,
      currency: d.currency,
      items: d.items,
      shipping_address: d.shipping_address,
      payment: null,
      shipment: null,
      estimated_delivery: null,
      notified: false,
      saga_mode: e.metadata.saga_mode ?? null,
      created_at: e.timestamp,
      completed_at: null,
      saga_duration_ms: null,
      timeline: [{ event: e.event_type, timestamp: e.timestamp }],
    };
  }
  if (!view) return view;
  const v: OrderView = { ...view, timeline: [...view.timeline, { event: e.event_type, timestamp: e.timestamp }] };
  const ended = (): Pick<OrderView, "completed_at" | "saga_duration_ms"> => ({
    completed_at: e.timestamp,
    saga_duration_ms: Date.parse(e.timestamp) - Date.parse(view.created_at),
  });
  switch (e.event_type) {
    case "OrderConfirmed":
      return { ...v, status: "confirmed", estimated_delivery: e.data.estimated_delivery, ...ended() };
    case "OrderCancelled":
      return { ...v, status: "cancelled", cancellation_reason: e.data.reason, ...ended() };
    case "PaymentProcessed":
      return { ...v, payment: { status: "captured", payment_id: e.data.payment_id, amount: e.data.amount } };
    case "PaymentFailed":
      return { ...v, payment: { status: "failed", payment_id: null, amount: 0 } };
    case "PaymentRefunded":
      return v.payment?.status === "captured" ? { ...v, payment: { ...v.payment, status: "refunded" } } : v;
    case "ShipmentScheduled":
      return { ...v, shipment: { status: "scheduled", shipment_id: e.data.shipment_id, carrier: e.data.carrier } };
    case "ShipmentFailed":
      return { ...v, shipment: { status: "failed", shipment_id: null } };
    case "ShipmentCancelled":
      return { ...v, shipment: { status: "cancelled", shipment_id: e.data.shipment_id } };
    case "NotificationSent":
      return { ...v, notified: true };
    case "StockReserved":
    case "StockUnavailable":
    case "StockReleased":
    case "NotificationFailed":
    case "CheckoutTimedOut":
      return v; // on the timeline only: the view's status and reason come from the orders service's events
    default:
      e satisfies never; // an event added to the catalogue is placed above, or this fails to compile
      return v;
  }
}

/** The view's fields in reading order; JSONB keeps keys in its own order, so reads restore this one. */
const VIEW_KEYS: (keyof OrderView)[] = [
  "order_id",
  "correlation_id",
  "status",
  "cancellation_reason",
  "user_id",
  "user_email",
  "user_name",
  "total_amount",
  "currency",
  "items",
  "shipping_address",
  "payment",
  "shipment",
  "estimated_delivery",
  "notified",
  "saga_mode",
  "created_at",
  "completed_at",
  "saga_duration_ms",
  "timeline",
];

export function inViewOrder(v: OrderView): OrderView {
  return Object.fromEntries(VIEW_KEYS.map((k) => [k, v[k]])) as unknown as OrderView;
}

export const isTerminal = (v: OrderView): boolean => v.status !== "pending";
