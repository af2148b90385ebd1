import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConcurrencyError, PgEventStore, type StoredEvent } from "../services/event-store/pg-event-store.js";
import { emit, newMessage, type AnyNewMessage, type Metadata } from "../services/shared/catalogue.js";
import { openDatabase, withTransaction, type Database, type Queryable, type Tx } from "../services/database/database.js";
import { available, freshPostgresDatabase, POSTGRES_URL } from "./support/infrastructure.js";

/**
 * The event store's contract, run with the same test bodies on embedded PGlite and on the
 * machine's PostgreSQL: numbering, transactions, concurrency, append-only, queries, followers'
 * reads and checkpoints.
 */

interface Backend {
  name: string;
  reachable: boolean;
  /**
   * Whether one transaction can stay open while other statements run. PGlite runs every statement
   * through a single pooled connection (see openDatabase), so a second client would wait for the
   * open transaction forever; tests that hold one open run on PostgreSQL only.
   */
  concurrentConnections: boolean;
  open(): Promise<{ db: Database; dispose(): Promise<void> }>;
}

const BACKENDS: Backend[] = [
  {
    name: "embedded PGlite",
    reachable: true,
    concurrentConnections: false,
    async open() {
      const db = await openDatabase({});
      return { db, dispose: () => db.close() };
    },
  },
  {
    name: `PostgreSQL (${POSTGRES_URL})`,
    // throws under REQUIRE_SERVICES=1 when unreachable; otherwise warns and the block is skipped
    reachable: await available("postgres"),
    concurrentConnections: true,
    async open() {
      const fresh = await freshPostgresDatabase();
      const db = await openDatabase({ databaseUrl: fresh.url }).catch(async (err: unknown) => {
        await fresh.drop();
        throw err;
      });
      return {
        db,
        async dispose() {
          await db.close();
          await fresh.drop();
        },
      };
    },
  },
];

// ids unique within a database; both backends start from an empty one
let sequence = 1000;
const nextOrderId = () => `order_${++sequence}`;
const nextCorrelationId = () => `checkout_${++sequence}`;

const orderInitiated = (order_id: string, correlation_id: string, metadata?: Metadata) =>
  newMessage(
    emit("OrderInitiated", {
      order_id,
      customer_id: 456,
      cart_id: "cart_7",
      total_amount: 299.98,
      currency: "CAD",
      items: [
        { product_id: 101, product_name: "Laptop Dell XPS", quantity: 1, unit_price: 199.99 },
        { product_id: 102, product_name: "Logitech MX Master 3S", quantity: 1, unit_price: 99.99 },
      ],
      shipping_address: { street: "123 King Street West", city: "Toronto", postal_code: "M5H 1A1" },
      card_token: "tok_visa",
    }),
    { correlation_id, service_name: "orders", metadata },
  );

const stockReserved = (order_id: string, correlation_id: string, line: number) =>
  newMessage(emit("StockReserved", { order_id, product_id: 100 + line, quantity: 1, line, lines: 2 }), {
    correlation_id,
    service_name: "warehouse",
  });

const paymentProcessed = (order_id: string, correlation_id: string) =>
  newMessage(
    emit("PaymentProcessed", {
      order_id,
      payment_id: `pay_${order_id}`,
      transaction_id: `txn_${order_id}`,
      amount: 299.98,
      currency: "CAD",
    }),
    { correlation_id, service_name: "payments" },
  );

const orderConfirmed = (order_id: string, correlation_id: string) =>
  newMessage(
    emit("OrderConfirmed", { order_id, shipment_id: `ship_${order_id}`, estimated_delivery: "2025-08-05" }),
    { correlation_id, service_name: "orders" },
  );

const ids = (events: readonly { event_id: string }[]) => events.map((e) => e.event_id);

/** Waits, without a deadline of its own (the test timeout bounds it), until `condition` holds. */
async function until(condition: () => Promise<boolean> | boolean): Promise<void> {
  while (!(await condition())) await new Promise((r) => setTimeout(r, 10));
}

function eventStoreContract(backend: Backend): void {
  let db: Database;
  let dispose: (() => Promise<void>) | undefined;
  let store: PgEventStore;

  beforeAll(async () => {
    ({ db, dispose } = await backend.open());
    store = new PgEventStore(db.pool);
  });
  afterAll(async () => {
    await dispose?.();
  });

  const append = (messages: AnyNewMessage[], expected?: Map<string, number>) =>
    withTransaction(db.pool, (tx) => store.append(tx, messages, expected));

  /** Whether the session `waiter` is blocked on a lock that `holder` holds. */
  const blockedBy = async (waiter: number, holder: number) => {
    const { rows } = await db.pool.query("SELECT $1::int = ANY(pg_blocking_pids($2)) AS blocked", [holder, waiter]);
    return rows[0].blocked as boolean;
  };
  const backendPid = async (client: Queryable) => {
    const { rows } = await client.query("SELECT pg_backend_pid() AS pid");
    return rows[0].pid as number;
  };

  /**
   * Holds a transaction open after `first`, runs `second` in another one beside it, and once
   * `second` has finished or is blocked by the open one, runs `whileOpen` and ends the open
   * transaction with `end`. Returns what `second` returned.
   */
  const beside = async <T>(
    first: (tx: Tx) => Promise<unknown>,
    second: (tx: Tx) => Promise<T>,
    end: "COMMIT" | "ROLLBACK",
    whileOpen: () => Promise<void> = async () => undefined,
  ): Promise<T> => {
    const holder = await db.pool.connect();
    try {
      const holderPid = await backendPid(holder);
      await holder.query("BEGIN");
      await first(holder);
      let waiterPid: number | undefined;
      let settled = false;
      const waiting = withTransaction(db.pool, async (tx) => {
        // asked before appending: once blocked, a query on this connection would queue behind
        waiterPid ??= await backendPid(tx);
        return second(tx);
      });
      void waiting.catch(() => undefined).finally(() => (settled = true));
      await until(async () => settled || (waiterPid !== undefined && (await blockedBy(waiterPid, holderPid))));
      await whileOpen();
      await holder.query(end);
      return await waiting;
    } finally {
      await holder.query("ROLLBACK").catch(() => undefined);
      holder.release();
    }
  };

  describe("append", () => {
    it("stores the envelope field for field, with version and position added", async () => {
      const orderId = nextOrderId();
      const message = orderInitiated(orderId, nextCorrelationId(), {
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
        causation_id: "3f0c7f55-1d7e-4a8c-9d43-2f7b1c0a9e11",
        source_ip: "203.0.113.7",
        user_agent: "vitest",
        saga_mode: "orchestrated",
      });

      const [stored] = await append([message]);

      expect(stored).toStrictEqual({ ...message, version: 1, position: stored.position });
      expect(Number.isInteger(stored.position) && stored.position > 0).toBe(true);
      const [read] = await store.byAggregate("orders", orderId);
      expect(read).toStrictEqual(stored);
      expect(read.timestamp).toBe(message.timestamp);
    });

    it("numbers each aggregate's versions 1, 2, 3 … without gaps, and positions increase", async () => {
      const first = nextOrderId();
      const other = nextOrderId();
      const correlationId = nextCorrelationId();

      const stored: StoredEvent[] = [];
      stored.push(...(await append([orderInitiated(first, correlationId)])));
      stored.push(...(await append([orderInitiated(other, nextCorrelationId())])));
      // two events of one aggregate in one call take consecutive versions
      stored.push(...(await append([stockReserved(first, correlationId, 1), stockReserved(first, correlationId, 2)])));
      stored.push(...(await append([orderConfirmed(first, correlationId)])));
      stored.push(...(await append([orderConfirmed(other, nextCorrelationId())])));

      expect(stored.map((e) => `${e.aggregate_type}/${e.aggregate_id}@${e.version}`)).toEqual([
        `orders/${first}@1`,
        `orders/${other}@1`,
        `warehouse/${first}@1`,
        `warehouse/${first}@2`,
        `orders/${first}@2`,
        `orders/${other}@2`,
      ]);
      const positions = stored.map((e) => e.position);
      expect(positions).toEqual([...positions].sort((a, b) => a - b));
      expect(new Set(positions).size).toBe(positions.length);
    });

    it("keeps versions per aggregate type: the same id under two types is two streams", async () => {
      const orderId = nextOrderId();
      const correlationId = nextCorrelationId();

      const [order] = await append([orderInitiated(orderId, correlationId)]);
      const [payment] = await append([paymentProcessed(orderId, correlationId)]);

      expect([order.aggregate_type, order.version]).toEqual(["orders", 1]);
      expect([payment.aggregate_type, payment.version]).toEqual(["payments", 1]);
    });

    it("appends in the caller's transaction: a transaction that throws stores neither its state change nor its events", async () => {
      const orderId = nextOrderId();
      const correlationId = nextCorrelationId();
      const countBefore = await store.count();
      const lastBefore = await store.lastPosition();

      await expect(
        withTransaction(db.pool, async (tx) => {
          await tx.query(
            `INSERT INTO orders.orders (order_id, correlation_id, customer_id, status, total_amount, currency)
             VALUES ($1, $2, 456, 'pending', 299.98, 'CAD')`,
            [orderId, correlationId],
          );
          const stored = await store.append(tx, [orderInitiated(orderId, correlationId)]);
          // the transaction sees its own append before it commits
          expect(ids(await store.byAggregate("orders", orderId, tx))).toEqual(ids(stored));
          throw new Error("the state change failed after the append");
        }),
      ).rejects.toThrow("the state change failed after the append");

      expect(await store.byAggregate("orders", orderId)).toEqual([]);
      expect(await store.byCorrelation(correlationId)).toEqual([]);
      const { rows } = await db.pool.query("SELECT 1 FROM orders.orders WHERE order_id = $1", [orderId]);
      expect(rows).toEqual([]);
      expect(await store.count()).toBe(countBefore);
      expect(await store.lastPosition()).toBe(lastBefore);
    });
  });

  describe("optimistic concurrency", () => {
    it("accepts an append whose expected version is current", async () => {
      const orderId = nextOrderId();
      const correlationId = nextCorrelationId();
      await append([orderInitiated(orderId, correlationId)]);

      const [confirmed] = await append([orderConfirmed(orderId, correlationId)], new Map([[`orders/${orderId}`, 1]]));

      expect(confirmed.version).toBe(2);
    });

    it("rejects an append whose expected version is stale, and stores nothing", async () => {
      const orderId = nextOrderId();
      const correlationId = nextCorrelationId();
      const [initiated] = await append([orderInitiated(orderId, correlationId)]);

      const stale = append([orderConfirmed(orderId, correlationId)], new Map([[`orders/${orderId}`, 0]]));

      await expect(stale).rejects.toBeInstanceOf(ConcurrencyError);
      await expect(stale).rejects.toThrow(`orders/${orderId} is at version 1, expected 0`);
      expect(ids(await store.byAggregate("orders", orderId))).toEqual([initiated.event_id]);
    });

    it("refuses a second event with a version the aggregate already has (unique violation)", async () => {
      const orderId = nextOrderId();
      const correlationId = nextCorrelationId();
      const [initiated] = await append([orderInitiated(orderId, correlationId)]);
      const duplicate = orderConfirmed(orderId, correlationId);

      const insert = db.pool.query(
        `INSERT INTO event_store.events (event_id, event_type, aggregate_type, aggregate_id, version, timestamp,
           correlation_id, service_name, data, metadata)
         VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $8, '{}')`,
        [
          duplicate.event_id,
          duplicate.event_type,
          duplicate.aggregate_type,
          duplicate.aggregate_id,
          duplicate.timestamp,
          duplicate.correlation_id,
          duplicate.service_name,
          JSON.stringify(duplicate.data),
        ],
      );

      await expect(insert).rejects.toMatchObject({ code: "23505" });
      expect(ids(await store.byAggregate("orders", orderId))).toEqual([initiated.event_id]);
    });

    it("stores both of two concurrent appends to one aggregate, as versions 1 and 2", async () => {
      const orderId = nextOrderId();
      const correlationId = nextCorrelationId();
      const messages = [orderInitiated(orderId, correlationId), orderConfirmed(orderId, correlationId)];

      const results = await Promise.all(messages.map((m) => append([m])));

      expect(results.map(([e]) => e.version).sort()).toEqual([1, 2]);
      const stream = await store.byAggregate("orders", orderId);
      expect(stream.map((e) => e.version)).toEqual([1, 2]);
      expect(ids(stream).sort()).toEqual(ids(messages).sort());
    });

    it.skipIf(!backend.concurrentConnections)(
      "gives a transaction appending beside an open one on the same aggregate the next version",
      async () => {
        const orderId = nextOrderId();
        const correlationId = nextCorrelationId();
        let first: StoredEvent[] = [];

        const second = await beside(
          async (tx) => (first = await store.append(tx, [orderInitiated(orderId, correlationId)])),
          (tx) => store.append(tx, [orderConfirmed(orderId, correlationId)]),
          "COMMIT",
        );

        expect([first[0].version, second[0].version]).toEqual([1, 2]);
        expect(ids(await store.byAggregate("orders", orderId))).toEqual(ids([...first, ...second]));
      },
    );

    it.skipIf(!backend.concurrentConnections)(
      "hands a rolled-back version to the transaction that appended beside it, leaving no gap",
      async () => {
        const orderId = nextOrderId();
        const correlationId = nextCorrelationId();

        const second = await beside(
          (tx) => store.append(tx, [orderInitiated(orderId, correlationId)]),
          (tx) => store.append(tx, [orderConfirmed(orderId, correlationId)]),
          "ROLLBACK",
        );

        expect(second[0].version).toBe(1);
        expect(ids(await store.byAggregate("orders", orderId))).toEqual(ids(second));
      },
    );
  });

  describe("append-only", () => {
    it("rejects UPDATE and DELETE of stored events", async () => {
      const orderId = nextOrderId();
      const [stored] = await append([orderInitiated(orderId, nextCorrelationId())]);

      await expect(
        db.pool.query("UPDATE event_store.events SET event_type = 'OrderCancelled' WHERE position = $1", [
          stored.position,
        ]),
      ).rejects.toThrow("append-only");
      await expect(db.pool.query("DELETE FROM event_store.events WHERE position = $1", [stored.position])).rejects.toThrow(
        "append-only",
      );
      expect(await store.byAggregate("orders", orderId)).toStrictEqual([stored]);
    });
  });

  describe("queries", () => {
    it("pages through all events in position order with after and limit", async () => {
      const before = await store.lastPosition();
      const correlationId = nextCorrelationId();
      const orderId = nextOrderId();
      const stored = await append([
        orderInitiated(orderId, correlationId),
        stockReserved(orderId, correlationId, 1),
        stockReserved(orderId, correlationId, 2),
        paymentProcessed(orderId, correlationId),
        orderConfirmed(orderId, correlationId),
      ]);

      const pages: StoredEvent[][] = [];
      let after = before;
      for (;;) {
        const page = await store.readAll({ after, limit: 2 });
        if (page.length === 0) break;
        pages.push(page);
        after = page[page.length - 1].position;
      }

      expect(pages.map((p) => p.length)).toEqual([2, 2, 1]);
      expect(pages.flat()).toStrictEqual(stored);
    });

    it("reads one event type in position order, paged", async () => {
      const before = await store.lastPosition();
      const paid: StoredEvent[] = [];
      for (let i = 0; i < 3; i++) {
        const orderId = nextOrderId();
        const correlationId = nextCorrelationId();
        await append([orderInitiated(orderId, correlationId)]);
        paid.push(...(await append([paymentProcessed(orderId, correlationId)])));
      }

      expect(await store.byType("PaymentProcessed", { after: before })).toStrictEqual(paid);
      const firstPage = await store.byType("PaymentProcessed", { after: before, limit: 2 });
      expect(firstPage).toStrictEqual(paid.slice(0, 2));
      expect(await store.byType("PaymentProcessed", { after: firstPage[1].position, limit: 2 })).toStrictEqual(
        paid.slice(2),
      );
    });

    it("says where the events of one type are, without their data, and which were stored long enough ago", async () => {
      const before = await store.lastPosition();
      const correlations = [nextCorrelationId(), nextCorrelationId()];
      const stored = [];
      for (const c of correlations) {
        const orderId = nextOrderId();
        stored.push(...(await append([orderInitiated(orderId, c)])));
        await append([paymentProcessed(orderId, c)]);
      }
      const initiated = stored.filter((e) => e.event_type === "OrderInitiated");
      expect(await store.positionsOfType("OrderInitiated", before, 60_000)).toStrictEqual(
        initiated.map((e) => ({ position: e.position, correlation_id: e.correlation_id, old: false })),
      );
      // with a negative age every event stored counts as old (by the database's clock); paged
      expect(await store.positionsOfType("OrderInitiated", before, -1_000, 1)).toStrictEqual([
        { position: initiated[0].position, correlation_id: correlations[0], old: true },
      ]);
      expect(await store.positionsOfType("OrderInitiated", initiated[1].position, 60_000)).toStrictEqual([]);
    });

    it("tells which aggregates of one type have events, and no other type's", async () => {
      const orderId = nextOrderId();
      await append([orderInitiated(orderId, nextCorrelationId())]);
      const without = nextOrderId();
      expect(await store.aggregatesWithEvents(db.pool, "orders", [orderId, without])).toStrictEqual(new Set([orderId]));
      expect(await store.aggregatesWithEvents(db.pool, "payments", [orderId])).toStrictEqual(new Set());
    });

    it("reads one aggregate's events in version order, and no other aggregate's", async () => {
      const orderId = nextOrderId();
      const correlationId = nextCorrelationId();
      const initiated = await append([orderInitiated(orderId, correlationId)]);
      await append([orderInitiated(nextOrderId(), nextCorrelationId())]);
      await append([stockReserved(orderId, correlationId, 1)]);
      const confirmed = await append([orderConfirmed(orderId, correlationId)]);

      expect(await store.byAggregate("orders", orderId)).toStrictEqual([...initiated, ...confirmed]);
      expect(await store.byAggregate("orders", nextOrderId())).toEqual([]);
    });

    it("reads one checkout's events across aggregates in position order", async () => {
      const orderId = nextOrderId();
      const correlationId = nextCorrelationId();
      const checkout: StoredEvent[] = [];
      checkout.push(...(await append([orderInitiated(orderId, correlationId)])));
      await append([orderInitiated(nextOrderId(), nextCorrelationId())]);
      checkout.push(...(await append([stockReserved(orderId, correlationId, 1), stockReserved(orderId, correlationId, 2)])));
      checkout.push(...(await append([paymentProcessed(orderId, correlationId)])));
      checkout.push(...(await append([orderConfirmed(orderId, correlationId)])));

      const read = await store.byCorrelation(correlationId);

      expect(read).toStrictEqual(checkout);
      expect(read.map((e) => e.aggregate_type)).toEqual(["orders", "warehouse", "warehouse", "payments", "orders"]);
    });

    it("reports the last position and the number of events", async () => {
      const countBefore = await store.count();
      const stored = await append([orderInitiated(nextOrderId(), nextCorrelationId())]);
      const more = await append([orderInitiated(nextOrderId(), nextCorrelationId())]);

      expect(await store.lastPosition()).toBe(more[0].position);
      expect(await store.lastPosition()).toBeGreaterThan(stored[0].position);
      expect(await store.count()).toBe(countBefore + 2);
    });
  });

  describe("readCommitted (what followers read)", () => {
    it("reads committed events on from a position, in position order, up to the limit", async () => {
      const before = await store.lastPosition();
      const orderId = nextOrderId();
      const correlationId = nextCorrelationId();
      const stored = await append([
        orderInitiated(orderId, correlationId),
        paymentProcessed(orderId, correlationId),
        orderConfirmed(orderId, correlationId),
      ]);

      expect(await store.readCommitted(before, 100)).toStrictEqual(stored);
      expect(await store.readCommitted(before, 2)).toStrictEqual(stored.slice(0, 2));
      expect(await store.readCommitted(stored[1].position, 100)).toStrictEqual(stored.slice(2));
    });

    // Needs a transaction held open beside other connections: PostgreSQL only (see Backend).
    it.skipIf(!backend.concurrentConnections)(
      "shows an open transaction's event, and any later one, only once that transaction commits",
      async () => {
        const before = await store.lastPosition();
        let early: StoredEvent[] = [];

        const late = await beside(
          async (tx) => (early = await store.append(tx, [orderInitiated(nextOrderId(), nextCorrelationId())])),
          (tx) => store.append(tx, [orderInitiated(nextOrderId(), nextCorrelationId())]),
          "COMMIT",
          async () => expect(await store.readCommitted(before, 100)).toEqual([]),
        );

        expect(late[0].position).toBeGreaterThan(early[0].position);
        expect(await store.readCommitted(before, 100)).toStrictEqual([...early, ...late]);
      },
    );
  });

  describe("checkpoints", () => {
    it("starts an unknown follower at 0", async () => {
      expect(await store.checkpoint("never-saved")).toBe(0);
    });

    it("never moves a checkpoint backwards", async () => {
      await store.saveCheckpoint("relay", 10);
      expect(await store.checkpoint("relay")).toBe(10);
      await store.saveCheckpoint("relay", 4);
      expect(await store.checkpoint("relay")).toBe(10);
      await store.saveCheckpoint("relay", 25);
      expect(await store.checkpoint("relay")).toBe(25);
      expect(await store.checkpoint("projections")).toBe(0);
    });

    it("saves a checkpoint in the caller's transaction, so a rollback keeps the old one", async () => {
      await store.saveCheckpoint("projector", 7);

      await expect(
        withTransaction(db.pool, async (tx) => {
          await store.saveCheckpoint("projector", 30, tx);
          expect(await store.checkpoint("projector", tx)).toBe(30);
          throw new Error("the batch failed");
        }),
      ).rejects.toThrow("the batch failed");

      expect(await store.checkpoint("projector")).toBe(7);
    });
  });
}

for (const backend of BACKENDS) {
  describe.skipIf(!backend.reachable)(`PgEventStore on ${backend.name}`, () => eventStoreContract(backend));
}
