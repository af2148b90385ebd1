import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import type { ServiceBroker } from "moleculer";
import { openDatabase, type Database, type Tx } from "../services/database/database.js";
import type { AllAtOnce, CommandHandler, QueuedCommand } from "../services/shared/participant.js";
import type { AnyEmit } from "../services/shared/catalogue.js";
import type { FaultConfig } from "../services/shared/config.js";
import { warehouseHandlers } from "../services/warehouse/warehouse.service.js";
import { paymentHandlers } from "../services/payments/payments.service.js";
import { shippingHandlers } from "../services/shipping/shipping.service.js";
import { orderHandlers } from "../services/orders/orders.service.js";
import { notificationHandlers } from "../services/notifications/notifications.service.js";
import { TEST_CARDS } from "../services/payments/payments.domain.js";
import { UNDELIVERABLE_POSTAL_CODE } from "../services/shipping/shipping.domain.js";

/**
 * A participant that carries out a consumer's whole batch at once (`handleAll`) must reach the
 * outcome of the same commands carried out one after the other: the same events for each
 * command, and the same rows. Each case seeds a state (stock levels, orders already reserved,
 * closed, charged, shipped, confirmed or notified), runs the commands as one batch in one
 * transaction and, from the same state, one batch per command in another; both are rolled back.
 * Order ids come from a small set, so the same order meets itself within a batch (a redelivered
 * or repeated command), and stock is short, so orders of one batch compete for it.
 */

const FAULTS: FaultConfig = { paymentFailureRate: 0.3, shippingFailureRate: 0.3, paymentLatencyMs: 0, seed: "participant-batches" };
const ORDERS = ["ord_a", "ord_b", "ord_c", "ord_d"];
const PRODUCTS = [1, 2, 3];

let db: Database;
beforeAll(async () => {
  db = await openDatabase({});
});
afterAll(async () => {
  await db?.close();
});

interface Seed {
  stock: number[];
  /** Per order: nothing yet, reserved earlier, or closed (released after a timeout). */
  warehouse: ("none" | "held" | "closed")[];
  /** Per order: whether a payment, shipment and notification row is there already. */
  done: boolean[];
  orderStatus: ("pending" | "confirmed" | "cancelled")[];
}

const seedArb: fc.Arbitrary<Seed> = fc.record({
  stock: fc.array(fc.integer({ min: 0, max: 4 }), { minLength: PRODUCTS.length, maxLength: PRODUCTS.length }),
  warehouse: fc.array(fc.constantFrom("none" as const, "none" as const, "held" as const, "closed" as const), { minLength: ORDERS.length, maxLength: ORDERS.length }),
  done: fc.array(fc.boolean(), { minLength: ORDERS.length, maxLength: ORDERS.length }),
  orderStatus: fc.array(fc.constantFrom("pending" as const, "pending" as const, "confirmed" as const, "cancelled" as const), { minLength: ORDERS.length, maxLength: ORDERS.length }),
});

async function seed(tx: Tx, s: Seed): Promise<void> {
  await tx.query("DELETE FROM warehouse.stock");
  for (const [i, p] of PRODUCTS.entries()) {
    await tx.query("INSERT INTO warehouse.stock (product_id, available, reserved) VALUES ($1, $2, 0)", [p, s.stock[i]]);
  }
  for (const [i, order] of ORDERS.entries()) {
    await tx.query(
      "INSERT INTO orders.orders (order_id, correlation_id, customer_id, status, total_amount, currency) VALUES ($1, $2, 1, $3, 10, 'CAD')",
      [order, `corr_${order}`, s.orderStatus[i]],
    );
    if (s.warehouse[i] === "held") {
      await tx.query("INSERT INTO warehouse.reservations (order_id, product_id, quantity, status) VALUES ($1, 1, 1, 'reserved')", [order]);
      await tx.query("UPDATE warehouse.stock SET reserved = reserved + 1 WHERE product_id = 1");
    }
    if (s.warehouse[i] === "closed") await tx.query("INSERT INTO warehouse.closed_orders (order_id) VALUES ($1)", [order]);
    if (s.done[i]) {
      await tx.query("INSERT INTO payments.payments (order_id, amount, currency, status) VALUES ($1, 0, 'CAD', 'voided')", [order]);
      await tx.query("INSERT INTO shipping.shipments (order_id, status) VALUES ($1, 'cancelled')", [order]);
      await tx.query(
        "INSERT INTO notifications.sent (order_id, template, channel, recipient) VALUES ($1, 'order_confirmed', 'email', 'earlier@example.com')",
        [order],
      );
    }
  }
}

/** Every row the handlers write, without their timestamps. */
async function state(tx: Tx): Promise<unknown> {
  const read = async (sql: string) => (await tx.query(sql)).rows;
  return {
    stock: await read("SELECT product_id, available, reserved FROM warehouse.stock ORDER BY 1"),
    reservations: await read("SELECT order_id, product_id, quantity, status FROM warehouse.reservations ORDER BY 1, 2"),
    closed: await read("SELECT order_id FROM warehouse.closed_orders ORDER BY 1"),
    payments: await read("SELECT order_id, payment_id, customer_id, amount, currency, status, transaction_id, error_code FROM payments.payments ORDER BY 1"),
    shipments: await read("SELECT order_id, shipment_id, status, carrier, estimated_delivery, postal_code FROM shipping.shipments ORDER BY 1"),
    notifications: await read("SELECT order_id, template, channel, recipient FROM notifications.sent ORDER BY 1, 2, 3"),
    orders: await read("SELECT order_id, status FROM orders.orders WHERE order_id LIKE 'ord_%' ORDER BY 1"),
  };
}

/** Runs `fn` in a transaction from the seeded state, and rolls it back. */
async function fromSeed<T>(s: Seed, fn: (tx: Tx) => Promise<T>): Promise<{ result: T; after: unknown }> {
  const tx = await db.pool.connect();
  try {
    await tx.query("BEGIN");
    await seed(tx, s);
    const result = await fn(tx);
    return { result, after: await state(tx) };
  } finally {
    await tx.query("ROLLBACK");
    tx.release();
  }
}

function batched<D, P>(handler: CommandHandler<D, P>): AllAtOnce<D, P> {
  if (!handler.handleAll) throw new Error("this handler carries out one command at a time");
  return handler;
}

/** The batch at once, and the same commands one batch each, from the same state. */
async function compare<D, P>(handler: CommandHandler<D, P>, s: Seed, commands: QueuedCommand<D, P>[]): Promise<void> {
  const all = batched(handler);
  const together = await fromSeed(s, (tx) => all.handleAll(tx, commands));
  const oneByOne = await fromSeed(s, async (tx) => {
    const events: AnyEmit[][] = [];
    for (const c of commands) events.push(...(await all.handleAll(tx, [c])));
    return events;
  });
  expect(together.result).toEqual(oneByOne.result);
  expect(together.after).toEqual(oneByOne.after);
}

const orderArb = fc.constantFrom(...ORDERS);
const commandsOf = <T>(arb: fc.Arbitrary<T>) => fc.array(arb, { minLength: 1, maxLength: 12 });
const RUNS = { numRuns: 60 };

describe("participants that carry out a batch at once reach the outcome of one command at a time", () => {
  it("ReserveStock: short stock shared in arrival order, all lines or none, once per order", async () => {
    const line = fc.record({ product_id: fc.constantFrom(...PRODUCTS, 9), quantity: fc.integer({ min: 1, max: 3 }) });
    const command = fc.record({
      order_id: orderArb,
      items: fc.uniqueArray(line, { minLength: 1, maxLength: 3, selector: (l) => l.product_id }),
    });
    await fc.assert(
      fc.asyncProperty(seedArb, commandsOf(command), (s, cmds) => compare(warehouseHandlers.ReserveStock, s, cmds.map((data) => ({ data, prepared: undefined })))),
      RUNS,
    );
  });

  it("ProcessPayment: one charge per order, declined or failed ones recorded as such", async () => {
    const command = fc.record({
      order_id: orderArb,
      customer_id: fc.constant(1),
      amount: fc.integer({ min: 1, max: 50_000 }).map((c) => c / 100),
      currency: fc.constantFrom("CAD", "EUR"),
      card_token: fc.constantFrom(TEST_CARDS.ok, TEST_CARDS.ok, TEST_CARDS.declined),
    });
    await fc.assert(
      fc.asyncProperty(seedArb, commandsOf(command), (s, cmds) => compare(paymentHandlers(FAULTS).ProcessPayment, s, cmds.map((data) => ({ data, prepared: undefined })))),
      RUNS,
    );
  });

  it("ScheduleShipment: one shipment per order, an undeliverable address recorded as failed", async () => {
    const command = fc.record({
      order_id: orderArb,
      shipping_address: fc.record({ street: fc.constant("1 Main St"), city: fc.constant("Montréal"), postal_code: fc.constantFrom("H2X 1Y4", UNDELIVERABLE_POSTAL_CODE) }),
      items: fc.constant([{ product_id: 1, quantity: 1 }]).map((l) => [...l]),
    });
    await fc.assert(
      fc.asyncProperty(seedArb, commandsOf(command), (s, cmds) => compare(shippingHandlers(FAULTS).ScheduleShipment, s, cmds.map((data) => ({ data, prepared: undefined })))),
      RUNS,
    );
  });

  it("ConfirmOrder: a pending order is confirmed once; confirmed or cancelled ones stay as they are", async () => {
    const command = fc.record({ order_id: orderArb, shipment_id: fc.constant("shp_1"), estimated_delivery: fc.constant("2026-12-01") });
    await fc.assert(
      fc.asyncProperty(seedArb, commandsOf(command), (s, cmds) => compare(orderHandlers.ConfirmOrder, s, cmds.map((data) => ({ data, prepared: undefined })))),
      RUNS,
    );
  });

  it("SendNotification: takes the recipient the command carries, and asks the users service only when it carries none", async () => {
    const asked: unknown[] = [];
    const broker = { call: async (action: string, params: unknown) => (asked.push([action, params]), { email: "looked-up@example.com", phone: null }) };
    const { prepare } = notificationHandlers(() => broker as unknown as ServiceBroker).SendNotification;
    const recipient = { name: "Ann", email: "ann@example.com", phone: null };
    expect(await prepare!({ order_id: "ord_a", customer_id: 7, template: "order_confirmed", recipient })).toEqual(recipient);
    expect(asked).toEqual([]);
    expect(await prepare!({ order_id: "ord_b", customer_id: 7, template: "order_confirmed" })).toEqual({ email: "looked-up@example.com", phone: null });
    expect(asked).toEqual([["users.get", { id: 7 }]]);
  });

  it("SendNotification: one notification per order and template, to the first copy's recipient", async () => {
    const handler = notificationHandlers(() => undefined as unknown as ServiceBroker).SendNotification;
    const command = fc.record({
      data: fc.record({ order_id: orderArb, customer_id: fc.constant(1), template: fc.constantFrom("order_confirmed", "order_cancelled") }),
      prepared: fc.record({ email: fc.constantFrom("a@example.com", "b@example.com"), phone: fc.constant(null) }),
    });
    await fc.assert(
      fc.asyncProperty(seedArb, commandsOf(command), (s, cmds) => compare(handler, s, cmds)),
      RUNS,
    );
  });
});
