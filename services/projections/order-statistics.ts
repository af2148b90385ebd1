import { ORDER_STATUSES, type OrderView } from "./order-projection.js";
import type { OrderSummary } from "./read-model-store.js";

export interface SagaDurations {
  saga_mode: string;
  outcome: string;
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface OrderStatistics {
  total_orders: number;
  by_status: Record<OrderView["status"], number>;
  revenue: { currency: string; confirmed_amount: number }[];
  cancellation_reasons: Record<string, number>;
  saga_duration_ms: SagaDurations[];
  by_saga_mode: Record<string, Record<string, number>>;
}

/** Linear interpolation between the closest ranks (PostgreSQL's percentile_cont). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = p * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
}

const byKey = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
const cents = (amount: number) => Math.round(amount * 100);

/** The statistics of the order views, the same whichever store holds them. */
export function orderStatistics(orders: readonly OrderSummary[]): OrderStatistics {
  const by_status = Object.fromEntries(ORDER_STATUSES.map((s) => [s, 0])) as Record<OrderView["status"], number>;
  const revenueCents = new Map<string, number>();
  const cancellation_reasons: Record<string, number> = {};
  const by_saga_mode: Record<string, Record<string, number>> = {};
  const durations = new Map<string, { saga_mode: string; outcome: string; values: number[] }>();

  for (const o of orders) {
    const mode = o.saga_mode ?? "unknown";
    by_status[o.status]++;
    const modeCounts = (by_saga_mode[mode] ??= {});
    modeCounts[o.status] = (modeCounts[o.status] ?? 0) + 1;
    if (o.status === "confirmed") revenueCents.set(o.currency, (revenueCents.get(o.currency) ?? 0) + cents(o.total_amount));
    if (o.status === "cancelled" && o.cancellation_reason) {
      cancellation_reasons[o.cancellation_reason] = (cancellation_reasons[o.cancellation_reason] ?? 0) + 1;
    }
    if (o.status !== "pending" && o.saga_duration_ms !== null) {
      const key = `${mode}\u0000${o.status}`;
      const group = durations.get(key) ?? { saga_mode: mode, outcome: o.status, values: [] };
      group.values.push(o.saga_duration_ms);
      durations.set(key, group);
    }
  }

  return {
    total_orders: orders.length,
    by_status,
    revenue: [...revenueCents]
      .sort(([a], [b]) => byKey(a, b))
      .map(([currency, c]) => ({ currency, confirmed_amount: c / 100 })),
    cancellation_reasons,
    saga_duration_ms: [...durations.values()]
      .sort((a, b) => byKey(a.saga_mode, b.saga_mode) || byKey(a.outcome, b.outcome))
      .map(({ saga_mode, outcome, values }) => {
        const sorted = values.sort((a, b) => a - b);
        return {
          saga_mode,
          outcome,
          count: sorted.length,
          p50: Math.round(percentile(sorted, 0.5)),
          p90: Math.round(percentile(sorted, 0.9)),
          p99: Math.round(percentile(sorted, 0.99)),
          max: sorted[sorted.length - 1],
        };
      }),
    by_saga_mode,
  };
}

/** Orders not yet ended, by saga mode. */
export function inFlightByMode(pending: readonly OrderSummary[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const o of pending) counts[o.saga_mode ?? "unknown"] = (counts[o.saga_mode ?? "unknown"] ?? 0) + 1;
  return counts;
}
