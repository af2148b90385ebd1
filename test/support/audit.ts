import { expect } from "vitest";
import type pg from "pg";

/**
 * The end-state audit after a disrupted run: every order ended in exactly one terminal state,
 * stock is conserved, no cancelled order holds stock or money, nobody was charged twice.
 */
export async function auditCheckouts(pool: pg.Pool, orderIds: string[], products: { id: number; stock: number }[]): Promise<void> {
  const orders = await pool.query("SELECT order_id, status FROM orders.orders WHERE order_id = ANY($1::text[])", [orderIds]);
  expect(orders.rows).toHaveLength(orderIds.length);
  const open = orders.rows.filter((o) => o.status !== "confirmed" && o.status !== "cancelled");
  expect(open, "orders not in a terminal state").toEqual([]);

  for (const p of products) {
    const { rows } = await pool.query(
      `SELECT s.available, s.reserved,
              coalesce((SELECT sum(quantity) FROM warehouse.reservations r WHERE r.product_id = s.product_id AND r.status = 'reserved'), 0)::int AS held
         FROM warehouse.stock s WHERE s.product_id = $1`,
      [p.id],
    );
    expect(rows[0].available + rows[0].reserved, `stock of ${p.id} conserved`).toBe(p.stock);
    expect(rows[0].reserved, `reserved stock of ${p.id} matches its reservations`).toBe(rows[0].held);
  }

  const heldByCancelled = await pool.query(
    `SELECT r.order_id, r.product_id FROM warehouse.reservations r JOIN orders.orders o USING (order_id)
      WHERE o.status = 'cancelled' AND r.status = 'reserved' AND o.order_id = ANY($1::text[])`,
    [orderIds],
  );
  expect(heldByCancelled.rows, "reservations held by cancelled orders").toEqual([]);

  const unreserved = await pool.query(
    `SELECT o.order_id FROM orders.orders o
      WHERE o.status = 'confirmed' AND o.order_id = ANY($1::text[])
        AND NOT EXISTS (SELECT 1 FROM warehouse.reservations r WHERE r.order_id = o.order_id AND r.status = 'reserved')`,
    [orderIds],
  );
  expect(unreserved.rows, "confirmed orders without their stock").toEqual([]);

  const money = await pool.query(
    `SELECT o.order_id, o.status, p.status AS payment FROM orders.orders o LEFT JOIN payments.payments p USING (order_id)
      WHERE o.order_id = ANY($1::text[])`,
    [orderIds],
  );
  const wrong = money.rows.filter((r) => (r.status === "confirmed" ? r.payment !== "captured" : r.payment === "captured"));
  expect(wrong, "payments that do not match their order").toEqual([]);

  const charges = await pool.query(
    `SELECT data->>'order_id' AS order_id, count(*)::int AS n FROM event_store.events
      WHERE event_type = 'PaymentProcessed' AND data->>'order_id' = ANY($1::text[]) GROUP BY 1 HAVING count(*) > 1`,
    [orderIds],
  );
  expect(charges.rows, "orders charged more than once").toEqual([]);

  const terminal = await pool.query(
    `SELECT data->>'order_id' AS order_id, count(*)::int AS n FROM event_store.events
      WHERE event_type IN ('OrderConfirmed', 'OrderCancelled') AND data->>'order_id' = ANY($1::text[]) GROUP BY 1`,
    [orderIds],
  );
  expect(terminal.rows.filter((r) => r.n !== 1), "orders with more than one terminal event").toEqual([]);
  expect(terminal.rows).toHaveLength(orderIds.length);
}
