import { expect } from "vitest";
import type pg from "pg";
import { auditCheckouts as audit } from "../../bench/end-state-audit.js";

/**
 * The end-state audit after a disrupted run (the bench's, one copy): every order ended in
 * exactly one terminal state, stock is conserved, no cancelled order holds stock or money,
 * nobody was charged twice.
 */
export async function auditCheckouts(pool: pg.Pool, orderIds: string[], products: { id: number; stock: number }[]): Promise<void> {
  const result = await audit(
    pool,
    products.map((p) => ({ product_id: p.id, stock: p.stock })),
    orderIds,
  );
  expect(result.violations).toEqual([]);
  expect(result.sagas.confirmed + result.sagas.cancelled).toBe(orderIds.length);
}
