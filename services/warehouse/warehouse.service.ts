import type { ServiceSchema } from "moleculer";
import { emit, type AnyEmit, type CancellationReason } from "../shared/catalogue.js";
import type { Tx } from "../shared/database.js";
import type { ParticipantHandlers } from "../shared/participant.js";
import type { ServiceDeps } from "../shared/service-deps.js";
import { NotFound } from "../shared/errors.js";

interface Line {
  product_id: number;
  quantity: number;
}

/**
 * Reserves lines in product order (so two orders never lock each other out) with a conditional
 * update: two concurrent checkouts of the last item cannot both succeed. The first short line
 * stops the reservation, and the lines already reserved are released in the same transaction,
 * so a failed reservation never holds stock.
 */
async function reserve(tx: Tx, orderId: string, items: Line[]): Promise<AnyEmit[]> {
  const { rows: seen } = await tx.query(
    `SELECT EXISTS (SELECT 1 FROM warehouse.closed_orders WHERE order_id = $1) AS closed,
            EXISTS (SELECT 1 FROM warehouse.reservations WHERE order_id = $1) AS held`,
    [orderId],
  );
  if (seen[0].closed) return []; // released after a timeout: never reserve again
  if (seen[0].held) return []; // already reserved by an earlier copy of this request
  const lines = [...items].sort((a, b) => a.product_id - b.product_id);
  const events: AnyEmit[] = [];
  const reserved: Line[] = [];
  for (const [i, line] of lines.entries()) {
    // the line's stock and its reservation in one statement: no row back, no stock
    const { rows } = await tx.query(
      `WITH taken AS (
         UPDATE warehouse.stock SET available = available - $2, reserved = reserved + $2
          WHERE product_id = $1 AND available >= $2 RETURNING product_id
       )
       INSERT INTO warehouse.reservations (order_id, product_id, quantity, status)
       SELECT $3, product_id, $2, 'reserved' FROM taken RETURNING product_id`,
      [line.product_id, line.quantity, orderId],
    );
    if (rows.length === 0) {
      const stock = await tx.query("SELECT available FROM warehouse.stock WHERE product_id = $1", [line.product_id]);
      events.push(
        emit("StockUnavailable", {
          order_id: orderId,
          product_id: line.product_id,
          requested: line.quantity,
          available: stock.rows[0]?.available ?? 0,
        }),
      );
      if (reserved.length > 0) events.push(...(await release(tx, orderId, "stock_unavailable")));
      return events;
    }
    reserved.push(line);
    events.push(
      emit("StockReserved", {
        order_id: orderId,
        product_id: line.product_id,
        quantity: line.quantity,
        line: i + 1,
        lines: lines.length,
      }),
    );
  }
  return events;
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
  ReserveStock: { handle: (cmd, { tx }) => reserve(tx, cmd.order_id, cmd.items) },
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
