import type pg from "pg";

export interface StockSeed {
  product_id: number;
  /** Units on hand before the run (available + reserved). */
  stock: number;
}

export interface SagaCounts {
  started: number;
  confirmed: number;
  cancelled: number;
  /** Accepted by the API but unknown to the orders service. */
  lost: number;
  /** Known, but not in a terminal state. */
  stuck: number;
  /** Orders with an effect applied more than once (two terminal events, two charges, …). */
  duplicated: number;
}

export interface AuditResult {
  ok: boolean;
  violations: string[];
  sagas: SagaCounts;
}

const LIST_LIMIT = 5;
const listed = (ids: string[]) => ids.slice(0, LIST_LIMIT).join(", ") + (ids.length > LIST_LIMIT ? ` … (${ids.length})` : "");

/**
 * The end state every run must reach, read straight from the services' tables and the event
 * store: every accepted order exists and ended in exactly one terminal state; stock is
 * conserved; no cancelled order holds stock or money; every charge of a cancelled order was
 * refunded and nothing else was; nobody was charged, reserved for or confirmed twice.
 * `orderIds` are the orders the caller saw accepted (all orders in the database when omitted).
 */
export async function auditCheckouts(pool: pg.Pool, stock: StockSeed[], orderIds?: string[]): Promise<AuditResult> {
  const violations: string[] = [];
  const all = await pool.query<{ order_id: string; status: string }>("SELECT order_id, status FROM orders.orders");
  const status = new Map(all.rows.map((r) => [r.order_id, r.status]));
  const ids = orderIds ?? [...status.keys()];

  const lost = ids.filter((id) => !status.has(id));
  const stuck = ids.filter((id) => status.has(id) && status.get(id) !== "confirmed" && status.get(id) !== "cancelled");
  if (lost.length) violations.push(`lost: ${lost.length} accepted order(s) unknown to the orders service: ${listed(lost)}`);
  if (stuck.length) violations.push(`stuck: ${stuck.length} order(s) not in a terminal state: ${listed(stuck)}`);

  for (const p of stock) {
    const { rows } = await pool.query(
      `SELECT s.available, s.reserved,
              coalesce((SELECT sum(quantity) FROM warehouse.reservations r WHERE r.product_id = s.product_id AND r.status = 'reserved'), 0)::int AS held
         FROM warehouse.stock s WHERE s.product_id = $1`,
      [p.product_id],
    );
    const row = rows[0];
    if (!row) {
      violations.push(`stock: product ${p.product_id} has no stock row`);
      continue;
    }
    if (row.available + row.reserved !== p.stock) {
      violations.push(`stock: product ${p.product_id} not conserved (available ${row.available} + reserved ${row.reserved} ≠ ${p.stock})`);
    }
    if (row.reserved !== row.held) {
      violations.push(`stock: product ${p.product_id} has ${row.reserved} reserved but its reservations hold ${row.held}`);
    }
  }

  const held = await pool.query<{ order_id: string }>(
    `SELECT DISTINCT r.order_id FROM warehouse.reservations r JOIN orders.orders o USING (order_id)
      WHERE o.status = 'cancelled' AND r.status = 'reserved'`,
  );
  if (held.rowCount) violations.push(`stock held by ${held.rowCount} cancelled order(s): ${listed(held.rows.map((r) => r.order_id))}`);

  const unreserved = await pool.query<{ order_id: string }>(
    `SELECT o.order_id FROM orders.orders o
      WHERE o.status = 'confirmed'
        AND NOT EXISTS (SELECT 1 FROM warehouse.reservations r WHERE r.order_id = o.order_id AND r.status = 'reserved')`,
  );
  if (unreserved.rowCount) violations.push(`${unreserved.rowCount} confirmed order(s) without their stock: ${listed(unreserved.rows.map((r) => r.order_id))}`);

  const money = await pool.query<{ order_id: string; status: string; payment: string | null }>(
    `SELECT o.order_id, o.status, p.status AS payment FROM orders.orders o LEFT JOIN payments.payments p USING (order_id)
      WHERE o.status IN ('confirmed', 'cancelled')`,
  );
  const wrongMoney = money.rows.filter((r) => (r.status === "confirmed" ? r.payment !== "captured" : r.payment === "captured"));
  if (wrongMoney.length) {
    violations.push(`${wrongMoney.length} payment(s) that do not match their order: ${listed(wrongMoney.map((r) => `${r.order_id} ${r.status}/${r.payment}`))}`);
  }

  // the events are the record of what each participant did
  const effects = await pool.query<{ order_id: string; event_type: string; product_id: string | null; n: number }>(
    `SELECT data->>'order_id' AS order_id, event_type, data->>'product_id' AS product_id, count(*)::int AS n
       FROM event_store.events
      WHERE event_type IN ('OrderConfirmed', 'OrderCancelled', 'PaymentProcessed', 'PaymentRefunded', 'StockReserved', 'ShipmentScheduled')
        -- a refund of nothing is a void (the refund came before any charge): it moves no money
        AND NOT (event_type = 'PaymentRefunded' AND coalesce((data->>'amount')::numeric, 0) = 0)
      GROUP BY 1, 2, 3`,
  );
  const count = new Map<string, Map<string, number>>();
  const duplicated = new Set<string>();
  for (const r of effects.rows) {
    const byType = count.get(r.order_id) ?? new Map<string, number>();
    byType.set(r.event_type, (byType.get(r.event_type) ?? 0) + r.n);
    count.set(r.order_id, byType);
    if (r.n > 1) duplicated.add(r.order_id);
  }
  for (const [id, byType] of count) {
    if ((byType.get("OrderConfirmed") ?? 0) + (byType.get("OrderCancelled") ?? 0) > 1) duplicated.add(id);
  }
  if (duplicated.size) violations.push(`duplicated effects on ${duplicated.size} order(s): ${listed([...duplicated])}`);

  const terminalMissing = all.rows
    .filter((o) => o.status === "confirmed" || o.status === "cancelled")
    .filter((o) => (count.get(o.order_id)?.get(o.status === "confirmed" ? "OrderConfirmed" : "OrderCancelled") ?? 0) === 0)
    .map((o) => o.order_id);
  if (terminalMissing.length) {
    violations.push(`${terminalMissing.length} order(s) in a terminal state without its terminal event: ${listed(terminalMissing)}`);
  }

  const unrefunded: string[] = [];
  const strayRefunds: string[] = [];
  for (const o of all.rows) {
    const byType = count.get(o.order_id);
    const charged = (byType?.get("PaymentProcessed") ?? 0) > 0;
    const refunded = (byType?.get("PaymentRefunded") ?? 0) > 0;
    if (o.status === "cancelled" && charged && !refunded) unrefunded.push(o.order_id);
    if (refunded && !(o.status === "cancelled" && charged)) strayRefunds.push(o.order_id);
  }
  if (unrefunded.length) violations.push(`${unrefunded.length} cancelled order(s) charged and never refunded: ${listed(unrefunded)}`);
  if (strayRefunds.length) violations.push(`${strayRefunds.length} refund(s) without a charge of a cancelled order: ${listed(strayRefunds)}`);

  const counted = ids.filter((id) => status.has(id));
  return {
    ok: violations.length === 0,
    violations,
    sagas: {
      started: ids.length,
      confirmed: counted.filter((id) => status.get(id) === "confirmed").length,
      cancelled: counted.filter((id) => status.get(id) === "cancelled").length,
      lost: lost.length,
      stuck: stuck.length,
      duplicated: duplicated.size,
    },
  };
}
