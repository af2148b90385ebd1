import type pg from "pg";
import { withTransaction } from "../shared/database.js";
import { inViewOrder, type OrderView } from "./order-projection.js";
import type { OrderStatistics, ReadModelStore } from "./read-model-store.js";

const CHECKPOINT = "projections";

/** Read models as JSONB documents in PostgreSQL, with a few columns pulled out for queries. */
export class PgReadModelStore implements ReadModelStore {
  constructor(private readonly pool: pg.Pool) {}

  async checkpoint(): Promise<number> {
    const { rows } = await this.pool.query("SELECT position FROM event_store.checkpoints WHERE name = $1", [CHECKPOINT]);
    return rows.length ? (rows[0].position as number) : 0;
  }

  async orders(ids: string[]): Promise<Map<string, OrderView>> {
    if (ids.length === 0) return new Map();
    const { rows } = await this.pool.query("SELECT doc FROM read_model.orders WHERE order_id = ANY($1::text[])", [ids]);
    return new Map(rows.map((r) => [r.doc.order_id as string, r.doc as OrderView]));
  }

  async apply(changed: OrderView[], position: number): Promise<void> {
    await withTransaction(this.pool, async (tx) => {
      // already applied? Compared in the order followers read (writing transaction, then position),
      // in which a later batch may well end at a smaller position
      const cp = await tx.query(
        `SELECT (coalesce(done.tx_id, '0'::xid8), c.position) >= (coalesce(batch.tx_id, '0'::xid8), $2::bigint) AS applied
           FROM event_store.checkpoints c
           LEFT JOIN event_store.events done ON done.position = c.position
           LEFT JOIN event_store.events batch ON batch.position = $2
          WHERE c.name = $1 FOR UPDATE OF c`,
        [CHECKPOINT, position],
      );
      if (cp.rows.length && (cp.rows[0].applied as boolean)) return;
      for (const v of changed) {
        await tx.query(
          `INSERT INTO read_model.orders (order_id, correlation_id, user_id, status, saga_mode, started_at, ended_at, doc)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (order_id) DO UPDATE SET status = $4, ended_at = $7, doc = $8`,
          [v.order_id, v.correlation_id, v.user_id, v.status, v.saga_mode, v.created_at, v.completed_at, JSON.stringify(v)],
        );
      }
      await tx.query(
        `INSERT INTO event_store.checkpoints (name, position) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET position = $2, updated_at = now()`,
        [CHECKPOINT, position],
      );
    });
  }

  async order(orderId: string): Promise<OrderView | null> {
    const { rows } = await this.pool.query("SELECT doc FROM read_model.orders WHERE order_id = $1", [orderId]);
    return rows[0] ? inViewOrder(rows[0].doc) : null;
  }

  async byCorrelation(correlationId: string): Promise<OrderView | null> {
    const { rows } = await this.pool.query("SELECT doc FROM read_model.orders WHERE correlation_id = $1", [correlationId]);
    return rows[0] ? inViewOrder(rows[0].doc) : null;
  }

  async ordersOfUser(userId: number, limit: number): Promise<OrderView[]> {
    const { rows } = await this.pool.query(
      "SELECT doc FROM read_model.orders WHERE user_id = $1 ORDER BY started_at DESC, order_id DESC LIMIT $2",
      [userId, limit],
    );
    return rows.map((r) => inViewOrder(r.doc));
  }

  async statistics(): Promise<OrderStatistics> {
    const [status, revenue, reasons, durations, modes] = await Promise.all([
      this.pool.query("SELECT status, count(*)::int AS n FROM read_model.orders GROUP BY status"),
      this.pool.query(
        `SELECT doc->>'currency' AS currency, round(sum((doc->>'total_amount')::numeric), 2)::float8 AS amount
           FROM read_model.orders WHERE status = 'confirmed' GROUP BY 1 ORDER BY 1`,
      ),
      this.pool.query(
        `SELECT doc->>'cancellation_reason' AS reason, count(*)::int AS n
           FROM read_model.orders WHERE status = 'cancelled' GROUP BY 1`,
      ),
      this.pool.query(
        `SELECT coalesce(saga_mode, 'unknown') AS saga_mode, status AS outcome, count(*)::int AS n,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY (doc->>'saga_duration_ms')::float8) AS p50,
                percentile_cont(0.9) WITHIN GROUP (ORDER BY (doc->>'saga_duration_ms')::float8) AS p90,
                percentile_cont(0.99) WITHIN GROUP (ORDER BY (doc->>'saga_duration_ms')::float8) AS p99,
                max((doc->>'saga_duration_ms')::float8) AS max
           FROM read_model.orders WHERE status <> 'pending' GROUP BY 1, 2 ORDER BY 1, 2`,
      ),
      this.pool.query(
        "SELECT coalesce(saga_mode, 'unknown') AS saga_mode, status, count(*)::int AS n FROM read_model.orders GROUP BY 1, 2",
      ),
    ]);
    const by_status: Record<string, number> = { pending: 0, confirmed: 0, cancelled: 0 };
    for (const r of status.rows) by_status[r.status] = r.n;
    const by_saga_mode: Record<string, Record<string, number>> = {};
    for (const r of modes.rows) (by_saga_mode[r.saga_mode] ??= {})[r.status] = r.n;
    return {
      total_orders: Object.values(by_status).reduce((a, b) => a + b, 0),
      by_status,
      revenue: revenue.rows.map((r) => ({ currency: r.currency, confirmed_amount: r.amount })),
      cancellation_reasons: Object.fromEntries(reasons.rows.map((r) => [r.reason, r.n])),
      saga_duration_ms: durations.rows.map((r) => ({
        saga_mode: r.saga_mode,
        outcome: r.outcome,
        count: r.n,
        p50: Math.round(r.p50),
        p90: Math.round(r.p90),
        p99: Math.round(r.p99),
        max: Math.round(r.max),
      })),
      by_saga_mode,
    };
  }

  async inFlight(): Promise<Record<string, number>> {
    const { rows } = await this.pool.query(
      "SELECT coalesce(saga_mode, 'unknown') AS mode, count(*)::int AS n FROM read_model.orders WHERE status = 'pending' GROUP BY 1",
    );
    return Object.fromEntries(rows.map((r) => [r.mode, r.n]));
  }

  async reset(): Promise<void> {
    await withTransaction(this.pool, async (tx) => {
      await tx.query("DELETE FROM read_model.orders");
      await tx.query("DELETE FROM event_store.checkpoints WHERE name = $1", [CHECKPOINT]);
    });
  }
}
