import type { OrderView } from "./order-projection.js";

export interface OrderStatistics {
  total_orders: number;
  by_status: Record<string, number>;
  revenue: { currency: string; confirmed_amount: number }[];
  cancellation_reasons: Record<string, number>;
  saga_duration_ms: { saga_mode: string; outcome: string; count: number; p50: number; p90: number; p99: number; max: number }[];
  by_saga_mode: Record<string, Record<string, number>>;
}

/**
 * The query side's storage. Projections write through `apply`, which stores the changed views
 * and the position they reflect together, so a replayed batch changes nothing.
 */
export interface ReadModelStore {
  checkpoint(): Promise<number>;
  orders(ids: string[]): Promise<Map<string, OrderView>>;
  apply(changed: OrderView[], position: number): Promise<void>;
  order(orderId: string): Promise<OrderView | null>;
  ordersOfUser(userId: number, limit: number): Promise<OrderView[]>;
  byCorrelation(correlationId: string): Promise<OrderView | null>;
  statistics(): Promise<OrderStatistics>;
  /** Orders not yet ended, by saga mode. */
  inFlight(): Promise<Record<string, number>>;
  /** Forgets every view and the checkpoint, for a rebuild from the event store. */
  reset(): Promise<void>;
}
