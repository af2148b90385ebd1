import type { OrderView } from "./order-projection.js";

/** A view with the position of the last event folded into it. */
export interface PositionedView {
  view: OrderView;
  position: number;
}

/** The fields of one order the statistics are computed from (order-statistics.ts). */
export type OrderSummary = Pick<
  OrderView,
  "status" | "saga_mode" | "currency" | "total_amount" | "cancellation_reason" | "saga_duration_ms"
>;

/**
 * The query side's storage, and nothing more: the folding of events lives in
 * order-projection.ts and the statistics in order-statistics.ts, the same for every adapter.
 *
 * Each stored view carries the position of the last event folded into it, and the projection's
 * checkpoint sits beside the views. A view is only ever replaced by one of a later position and
 * the checkpoint only moves forward, so a replayed or redelivered batch changes nothing, whether
 * or not the adapter can write views and checkpoint in one transaction.
 */
export interface ReadModelStore {
  /** Says where the views live, for the log. */
  readonly label: string;
  /** Connects and creates the tables or indexes the queries need; idempotent. */
  open(): Promise<void>;
  close(): Promise<void>;

  /** Position of the last event the projection handled; 0 before the first. */
  checkpoint(): Promise<number>;
  views(orderIds: readonly string[]): Promise<Map<string, PositionedView>>;
  /**
   * Stores each view unless its stored copy already reflects that position or a later one, then
   * moves the checkpoint to `upTo` unless it is already there or beyond.
   */
  apply(views: readonly PositionedView[], upTo: number): Promise<void>;

  order(orderId: string): Promise<OrderView | null>;
  byCorrelation(correlationId: string): Promise<OrderView | null>;
  /** The user's orders, newest first. */
  ordersOfUser(userId: number, limit: number): Promise<OrderView[]>;
  /** One summary per order (only those in `status` when given). */
  summaries(status?: OrderView["status"]): Promise<OrderSummary[]>;

  /** Forgets every view and the checkpoint, for a rebuild from the event store. */
  reset(): Promise<void>;
}
