import type pg from "pg";
import { ADVISORY_LOCKS } from "../database/advisory-locks.js";
import { withTransaction } from "../database/database.js";
import { bytewiseKeys, HALF_EMPTY_PAGES, keyColumnsNotC } from "../database/schema.js";
import { inViewOrder, type OrderView } from "./order-projection.js";
import type { OrderSummary, PositionedView, ReadModelStore } from "./read-model-store.js";

const LAYOUT_LOCK = ADVISORY_LOCKS.readModelLayout;

/**
 * The read models' tables. A database from before views carried their position has no
 * `position` column: its views are dropped and rebuilt from the event store (the checkpoint
 * starts again at 0), which is what read models are for. On a PostgreSQL server the views,
 * rewritten at every event, get half-empty pages (`HALF_EMPTY_PAGES`); PGlite keeps full ones.
 * Their keys collate "C", as the system's own tables do (`bytewiseKeys`).
 */
const layout = (embedded: boolean) => `
CREATE SCHEMA IF NOT EXISTS read_model;
CREATE TABLE IF NOT EXISTS read_model.orders (
  order_id       TEXT PRIMARY KEY,
  position       BIGINT NOT NULL,
  correlation_id TEXT NOT NULL,
  user_id        INTEGER NOT NULL,
  status         TEXT NOT NULL,
  saga_mode      TEXT,
  started_at     TIMESTAMPTZ NOT NULL,
  doc            JSONB NOT NULL
)${embedded ? "" : ` WITH (fillfactor = ${HALF_EMPTY_PAGES})`};
CREATE INDEX IF NOT EXISTS read_orders_user_idx ON read_model.orders (user_id, started_at DESC, order_id DESC);
CREATE INDEX IF NOT EXISTS read_orders_correlation_idx ON read_model.orders (correlation_id);
CREATE INDEX IF NOT EXISTS read_orders_pending_idx ON read_model.orders (order_id) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS read_model.checkpoint (
  name     TEXT PRIMARY KEY,
  position BIGINT NOT NULL
);
${bytewiseKeys(["read_model"])}`;

const CHECKPOINT = "orders";

/** Read models as JSONB documents in PostgreSQL, with the columns the queries filter on pulled out. */
export class PgReadModelStore implements ReadModelStore {
  readonly label = "PostgreSQL (schema read_model)";

  /** `embedded`: PGlite, which keeps full pages (`HALF_EMPTY_PAGES`). */
  constructor(
    private readonly pool: pg.Pool,
    private readonly opts: { embedded: boolean },
  ) {}

  async open(): Promise<void> {
    const state = async (q: pg.Pool | pg.PoolClient) => {
      const { rows } = await q.query(
        `SELECT to_regclass('read_model.checkpoint') IS NOT NULL AND EXISTS (
           SELECT 1 FROM information_schema.columns
            WHERE table_schema = 'read_model' AND table_name = 'orders' AND column_name = 'position') AS positioned,
           NOT EXISTS (${keyColumnsNotC(["read_model"])}) AS bytewise`,
      );
      return rows[0] as { positioned: boolean; bytewise: boolean };
    };
    const current = ({ positioned, bytewise }: { positioned: boolean; bytewise: boolean }) => positioned && bytewise;
    // no DDL (and so no table lock) once the layout is there
    if (current(await state(this.pool))) return;
    await withTransaction(this.pool, async (tx) => {
      await tx.query("SELECT pg_advisory_xact_lock($1)", [LAYOUT_LOCK]);
      const now = await state(tx);
      if (current(now)) return;
      // views without their position are rebuilt from the event store; keys are only converted
      if (!now.positioned) await tx.query("DROP TABLE IF EXISTS read_model.orders");
      await tx.query(layout(this.opts.embedded));
    });
  }

  async close(): Promise<void> {
    // the pool belongs to the system
  }

  async checkpoint(): Promise<number> {
    const { rows } = await this.pool.query("SELECT position FROM read_model.checkpoint WHERE name = $1", [CHECKPOINT]);
    return rows.length ? (rows[0].position as number) : 0;
  }

  async views(orderIds: readonly string[]): Promise<Map<string, PositionedView>> {
    if (orderIds.length === 0) return new Map();
    const { rows } = await this.pool.query("SELECT position, doc FROM read_model.orders WHERE order_id = ANY($1::text[])", [orderIds]);
    return new Map(rows.map((r) => [r.doc.order_id as string, { view: inViewOrder(r.doc), position: r.position as number }]));
  }

  async apply(views: readonly PositionedView[], upTo: number): Promise<void> {
    // one statement, so one transaction: the guards below make it safe without, but it is cheaper
    await this.pool.query(
      `WITH changed AS (
         INSERT INTO read_model.orders (order_id, position, correlation_id, user_id, status, saga_mode, started_at, doc)
         SELECT e->'view'->>'order_id', (e->>'position')::bigint, e->'view'->>'correlation_id',
                (e->'view'->>'user_id')::int, e->'view'->>'status', e->'view'->>'saga_mode',
                (e->'view'->>'created_at')::timestamptz, e->'view'
           FROM jsonb_array_elements($1::jsonb) AS e
         ON CONFLICT (order_id) DO UPDATE
            SET position = EXCLUDED.position, status = EXCLUDED.status, doc = EXCLUDED.doc
          WHERE read_model.orders.position < EXCLUDED.position
         RETURNING 1
       )
       INSERT INTO read_model.checkpoint (name, position) VALUES ($2, $3)
       ON CONFLICT (name) DO UPDATE SET position = GREATEST(read_model.checkpoint.position, EXCLUDED.position)`,
      [JSON.stringify(views), CHECKPOINT, upTo],
    );
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

  async summaries(status?: OrderView["status"]): Promise<OrderSummary[]> {
    const columns = `status, saga_mode, doc->>'currency' AS currency, (doc->>'total_amount')::float8 AS total_amount,
       doc->>'cancellation_reason' AS cancellation_reason, (doc->>'saga_duration_ms')::float8 AS saga_duration_ms`;
    const { rows } = status
      ? await this.pool.query(`SELECT ${columns} FROM read_model.orders WHERE status = $1`, [status])
      : await this.pool.query(`SELECT ${columns} FROM read_model.orders`);
    return rows as OrderSummary[];
  }

  async reset(): Promise<void> {
    await withTransaction(this.pool, async (tx) => {
      await tx.query("DELETE FROM read_model.orders");
      await tx.query("DELETE FROM read_model.checkpoint WHERE name = $1", [CHECKPOINT]);
    });
  }
}
