import type { ServiceSchema } from "moleculer";
import { emit, type AnyEmit, type CancellationReason } from "../shared/catalogue.js";
import { insertNew, type Tx } from "../database/database.js";
import type { ParticipantHandlers } from "../shared/participant.js";
import type { ServiceDeps } from "../shared/service-deps.js";
import { NotFound } from "../shared/errors.js";

interface Line {
  product_id: number;
  quantity: number;
}

/**
 * Reserves the orders of a batch in their order, each line in product order, as if one after
 * the other: an order takes every line or none (the first short line ends it, and the lines it
 * took go back in the same transaction), so a failed reservation never holds stock, and an order
 * reserves once (a later copy finds its rows; one released after a timeout is closed for good).
 * The stock rows of the batch's products are locked first, in product order, so two checkouts of
 * the last item cannot both succeed and two batches never lock each other out; the outcome is
 * worked out from them and written in a fixed number of statements, whatever the batch's size.
 */
async function reserveAll(tx: Tx, orders: readonly { order_id: string; items: Line[] }[]): Promise<AnyEmit[][]> {
  const ids = [...new Set(orders.map((o) => o.order_id))];
  const products = [...new Set(orders.flatMap((o) => o.items.map((l) => l.product_id)))].sort((a, b) => a - b);
  const { rows: stockRows } = await tx.query(
    "SELECT product_id, available FROM warehouse.stock WHERE product_id = ANY($1::int[]) ORDER BY product_id FOR UPDATE",
    [products],
  );
  const { rows: seenRows } = await tx.query(
    `SELECT o AS order_id,
            EXISTS (SELECT 1 FROM warehouse.closed_orders c WHERE c.order_id = o) AS closed,
            EXISTS (SELECT 1 FROM warehouse.reservations r WHERE r.order_id = o) AS held
       FROM unnest($1::text[]) AS o`,
    [ids],
  );
  const available = new Map(stockRows.map((r) => [r.product_id as number, r.available as number]));
  const closed = new Set(seenRows.filter((r) => r.closed).map((r) => r.order_id as string));
  const held = new Set(seenRows.filter((r) => r.held).map((r) => r.order_id as string));
  const reservations: { order_id: string; product_id: number; quantity: number; status: "reserved" | "released" }[] = [];
  const released: { order_id: string }[] = [];

  const outcome = orders.map(({ order_id, items }): AnyEmit[] => {
    if (closed.has(order_id)) return []; // released after a timeout: never reserve again
    if (held.has(order_id)) return []; // already reserved by an earlier copy of this request
    const lines = [...items].sort((a, b) => a.product_id - b.product_id);
    if (new Set(lines.map((l) => l.product_id)).size !== lines.length) throw new Error(`ReserveStock for ${order_id} names a product twice`);
    const events: AnyEmit[] = [];
    const mine: typeof reservations = [];
    for (const [i, line] of lines.entries()) {
      const left = available.get(line.product_id) ?? 0;
      if (left < line.quantity) {
        events.push(emit("StockUnavailable", { order_id, product_id: line.product_id, requested: line.quantity, available: left }));
        if (mine.length > 0) {
          // the lines taken go back, and the order is closed (as `release` does)
          for (const r of mine) {
            available.set(r.product_id, available.get(r.product_id)! + r.quantity);
            r.status = "released";
          }
          released.push({ order_id });
          closed.add(order_id);
          events.push(emit("StockReleased", { order_id, lines: mine.map((r) => ({ product_id: r.product_id, quantity: r.quantity })), reason: "stock_unavailable" }));
        }
        reservations.push(...mine);
        if (mine.length > 0) held.add(order_id);
        return events;
      }
      available.set(line.product_id, left - line.quantity);
      mine.push({ order_id, product_id: line.product_id, quantity: line.quantity, status: "reserved" });
      events.push(emit("StockReserved", { order_id, product_id: line.product_id, quantity: line.quantity, line: i + 1, lines: lines.length }));
    }
    reservations.push(...mine);
    held.add(order_id);
    return events;
  });

  // what the batch holds now, per product: the lines still reserved
  const taken = new Map<number, number>();
  for (const r of reservations) if (r.status === "reserved") taken.set(r.product_id, (taken.get(r.product_id) ?? 0) + r.quantity);
  const moved = [...taken];
  if (moved.length > 0) {
    await tx.query(
      `UPDATE warehouse.stock s SET available = s.available - d.n, reserved = s.reserved + d.n
         FROM unnest($1::int[], $2::int[]) AS d(product_id, n) WHERE s.product_id = d.product_id`,
      [moved.map(([p]) => p), moved.map(([, n]) => n)],
    );
  }
  const stored = await insertNew(tx, "warehouse.reservations", reservations, "order_id");
  if (stored.length !== reservations.length) throw new Error(`stored ${stored.length} of ${reservations.length} reservations`);
  await insertNew(tx, "warehouse.closed_orders", released, "order_id");
  return outcome;
}

/** Releases every line the order still holds; answers with one StockReleased, even if empty. */
async function release(tx: Tx, orderId: string, reason: CancellationReason): Promise<AnyEmit[]> {
  await tx.query("INSERT INTO warehouse.closed_orders (order_id) VALUES ($1) ON CONFLICT DO NOTHING", [orderId]);
  const { rows } = await tx.query(
    `UPDATE warehouse.reservations SET status = 'released', updated_at = now()
      WHERE order_id = $1 AND status = 'reserved' RETURNING product_id, quantity`,
    [orderId],
  );
  const lines = (rows as Line[]).sort((a, b) => a.product_id - b.product_id);
  for (const line of lines) {
    await tx.query(
      "UPDATE warehouse.stock SET available = available + $2, reserved = reserved - $2 WHERE product_id = $1",
      [line.product_id, line.quantity],
    );
  }
  return [emit("StockReleased", { order_id: orderId, lines, reason })];
}

export const warehouseHandlers: ParticipantHandlers<"warehouse"> = {
  ReserveStock: { handleAll: (tx, commands) => reserveAll(tx, commands.map((c) => c.data)) },
  ReleaseStock: { handle: (cmd, { tx }) => release(tx, cmd.order_id, cmd.reason) },
};

export function warehouseService(deps: ServiceDeps): ServiceSchema {
  const { pool } = deps.db;
  return {
    name: "warehouse",
    mixins: [deps.drive("warehouse", warehouseHandlers) as ServiceSchema],
    actions: {
      inventory: {
        rest: "GET /inventory/:product_id",
        params: { product_id: { type: "number", convert: true, integer: true, positive: true } },
        async handler(ctx) {
          const { product_id } = ctx.params as { product_id: number };
          const { rows } = await pool.query(
            "SELECT product_id, available, reserved FROM warehouse.stock WHERE product_id = $1",
            [product_id],
          );
          if (rows.length === 0) throw new NotFound(`product ${product_id} is not stocked`);
          return rows[0];
        },
      },
      levels: {
        async handler() {
          const { rows } = await pool.query("SELECT product_id, available, reserved FROM warehouse.stock ORDER BY product_id");
          return rows;
        },
      },
      reservations: {
        params: { order_id: "string" },
        async handler(ctx) {
          const { rows } = await pool.query(
            "SELECT product_id, quantity, status FROM warehouse.reservations WHERE order_id = $1 ORDER BY product_id",
            [(ctx.params as { order_id: string }).order_id],
          );
          return rows;
        },
      },
    },
  };
}
