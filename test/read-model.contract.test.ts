import { MongoClient } from "mongodb";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { emit, newMessage, type DataOf, type MessageType } from "../services/shared/catalogue.js";
import { openDatabase } from "../services/database/database.js";
import type { StoredEvent } from "../services/event-store/pg-event-store.js";
import type { OrderView, UserInfo } from "../services/projections/order-projection.js";
import { projectBatch } from "../services/projections/order-projector.js";
import { inFlightByMode, orderStatistics, percentile } from "../services/projections/order-statistics.js";
import type { ReadModelStore } from "../services/projections/read-model-store.js";
import { PgReadModelStore } from "../services/projections/pg-read-model-store.js";
import { MongoReadModelStore } from "../services/projections/mongo-read-model-store.js";
import { available, freshPostgresDatabase, POSTGRES_URL } from "./support/infrastructure.js";

/**
 * The read models' contract, the same test bodies on every store: events are folded by the real
 * projector (order-projector.ts) and read back through the store's queries and the shared
 * statistics. PostgreSQL runs always (embedded PGlite, and the local server when it answers);
 * MongoDB runs when MONGO_URL names a server.
 */

interface Backend {
  name: string;
  /** Why the block is skipped; undefined → it runs. */
  skip?: string;
  open(): Promise<{ store: ReadModelStore; dispose(): Promise<void> }>;
}

const MONGO_URL = process.env.MONGO_URL;

const BACKENDS: Backend[] = [
  {
    name: "PostgreSQL, embedded PGlite",
    async open() {
      const db = await openDatabase({});
      const store = new PgReadModelStore(db.pool, { embedded: db.embedded });
      await store.open();
      return { store, dispose: () => db.close() };
    },
  },
  {
    name: `PostgreSQL (${POSTGRES_URL})`,
    // throws under REQUIRE_SERVICES=1 when unreachable; otherwise warns and the block is skipped
    skip: (await available("postgres")) ? undefined : `PostgreSQL is not reachable at ${POSTGRES_URL}`,
    async open() {
      const fresh = await freshPostgresDatabase();
      const db = await openDatabase({ databaseUrl: fresh.url });
      const store = new PgReadModelStore(db.pool, { embedded: db.embedded });
      await store.open();
      return {
        store,
        async dispose() {
          await db.close();
          await fresh.drop();
        },
      };
    },
  },
  {
    name: `MongoDB (${MONGO_URL ?? "MONGO_URL not set"})`,
    skip: MONGO_URL
      ? undefined
      : "MONGO_URL is not set (no MongoDB server on this machine: set MONGO_URL=mongodb://host:27017 to run this block)",
    async open() {
      const database = `saga_test_${randomBytes(6).toString("hex")}`;
      const store = new MongoReadModelStore(MONGO_URL!, database);
      await store.open();
      return {
        store,
        async dispose() {
          await store.close();
          const admin = new MongoClient(MONGO_URL!);
          await admin.db(database).dropDatabase();
          await admin.close();
        },
      };
    },
  },
];

const USERS = new Map<number, UserInfo>([
  [456, { name: "John Doe", email: "customer@example.com" }],
  [457, { name: "Jane Smith", email: "jane.smith@example.com" }],
]);
const lookupUsers = async (ids: number[]) => new Map(ids.flatMap((id) => (USERS.has(id) ? [[id, USERS.get(id)!] as const] : [])));

const T0 = Date.parse("2026-01-05T10:00:00.000Z");
const at = (ms: number) => new Date(T0 + ms).toISOString();

type Outcome = "confirmed" | "payment_failed" | "pending";
interface CheckoutSpec {
  order: number;
  user?: number;
  mode?: "orchestrated" | "choreographed";
  /** ms after T0 */
  start: number;
  /** ms from start to the terminal event */
  duration?: number;
  outcome: Outcome;
  amount?: number;
  currency?: string;
}

/**
 * Numbers events as the event store would. Each backend starts from an empty store, so one
 * sequence per describe block keeps positions increasing within it.
 */
class EventLog {
  private position = 0;

  event<T extends MessageType>(type: T, data: DataOf<T>, correlation_id: string, ms: number, mode: string): StoredEvent {
    const m = newMessage(emit(type, data), { correlation_id, service_name: "test", metadata: { saga_mode: mode } });
    return { ...m, timestamp: at(ms), version: 1, position: ++this.position } as StoredEvent;
  }

  checkout(s: CheckoutSpec): StoredEvent[] {
    const order_id = `order_${s.order}`;
    const cid = `checkout_${s.order}`;
    const mode = s.mode ?? "orchestrated";
    const amount = s.amount ?? 199.99;
    const currency = s.currency ?? "CAD";
    const end = s.start + (s.duration ?? 100);
    const e = <T extends MessageType>(type: T, data: DataOf<T>, ms: number) => this.event(type, data, cid, ms, mode);
    const events = [
      e(
        "OrderInitiated",
        {
          order_id,
          customer_id: s.user ?? 456,
          cart_id: null,
          total_amount: amount,
          currency,
          items: [{ product_id: 101, product_name: "Laptop Dell XPS", quantity: 1, unit_price: amount }],
          shipping_address: { street: "123 King Street West", city: "Toronto", postal_code: "M5H 1A1" },
          card_token: "tok_visa",
        },
        s.start,
      ),
      e("StockReserved", { order_id, product_id: 101, quantity: 1, line: 1, lines: 1 }, s.start + 10),
    ];
    if (s.outcome === "pending") return events;
    if (s.outcome === "payment_failed") {
      return [
        ...events,
        e("PaymentFailed", { order_id, amount, reason: "insufficient_funds", error_code: "DECLINED_001" }, s.start + 20),
        e("StockReleased", { order_id, lines: [{ product_id: 101, quantity: 1 }], reason: "payment_failed" }, s.start + 30),
        e("OrderCancelled", { order_id, reason: "payment_failed" }, end),
      ];
    }
    return [
      ...events,
      e("PaymentProcessed", { order_id, payment_id: `pay_${s.order}`, transaction_id: `txn_${s.order}`, amount, currency }, s.start + 20),
      e(
        "ShipmentScheduled",
        { order_id, shipment_id: `shp_${s.order}`, carrier: "Canada Post", estimated_delivery: "2026-01-08" },
        s.start + 30,
      ),
      e("OrderConfirmed", { order_id, shipment_id: `shp_${s.order}`, estimated_delivery: "2026-01-08" }, end),
      e("NotificationSent", { order_id, channel: "email", recipient: "customer@example.com", template: "order_confirmed" }, end + 5),
    ];
  }
}

const lastPosition = (events: readonly StoredEvent[]) => events[events.length - 1].position;

function readModelContract(backend: Backend): void {
  let store: ReadModelStore;
  let dispose: (() => Promise<void>) | undefined;
  const log = new EventLog();

  beforeAll(async () => {
    ({ store, dispose } = await backend.open());
  });
  afterAll(async () => {
    await dispose?.();
  });

  /** Projects `events` as the follower does, in one batch. */
  const project = async (events: StoredEvent[]) => (await projectBatch(store, events, lastPosition(events), lookupUsers)).settled;

  it("keeps the order view with its timeline, by order id and by correlation id", async () => {
    const events = log.checkout({ order: 1, start: 0, duration: 140, outcome: "confirmed" });
    const settled = await project(events);

    const view = await store.order("order_1");
    expect(view).toEqual({
      order_id: "order_1",
      correlation_id: "checkout_1",
      status: "confirmed",
      cancellation_reason: null,
      user_id: 456,
      user_email: "customer@example.com",
      user_name: "John Doe",
      total_amount: 199.99,
      currency: "CAD",
      items: [{ product_id: 101, product_name: "Laptop Dell XPS", quantity: 1, unit_price: 199.99 }],
      shipping_address: { street: "123 King Street West", city: "Toronto", postal_code: "M5H 1A1" },
      payment: { status: "captured", payment_id: "pay_1", amount: 199.99 },
      shipment: { status: "scheduled", shipment_id: "shp_1", carrier: "Canada Post" },
      estimated_delivery: "2026-01-08",
      notified: true,
      saga_mode: "orchestrated",
      created_at: at(0),
      completed_at: at(140),
      saga_duration_ms: 140,
      timeline: [
        { event: "OrderInitiated", timestamp: at(0) },
        { event: "StockReserved", timestamp: at(10) },
        { event: "PaymentProcessed", timestamp: at(20) },
        { event: "ShipmentScheduled", timestamp: at(30) },
        { event: "OrderConfirmed", timestamp: at(140) },
        { event: "NotificationSent", timestamp: at(145) },
      ],
    } satisfies OrderView);
    // the API returns the fields in this order, whatever order the store keeps them in
    expect(Object.keys(view!)).toEqual(Object.keys(settled[0]));
    expect(settled.map((v) => v.order_id)).toEqual(["order_1"]);
    expect(await store.byCorrelation("checkout_1")).toEqual(view);
    expect(await store.order("order_999")).toBeNull();
    expect(await store.checkpoint()).toBe(lastPosition(events));
  });

  it("lists a user's orders newest first, up to the limit", async () => {
    await project([
      ...log.checkout({ order: 11, user: 457, start: 1_000, outcome: "confirmed" }),
      ...log.checkout({ order: 12, user: 457, start: 3_000, outcome: "pending" }),
      ...log.checkout({ order: 13, user: 457, start: 2_000, outcome: "payment_failed" }),
    ]);

    const ids = (views: OrderView[]) => views.map((v) => v.order_id);
    expect(ids(await store.ordersOfUser(457, 10))).toEqual(["order_12", "order_13", "order_11"]);
    expect(ids(await store.ordersOfUser(457, 2))).toEqual(["order_12", "order_13"]);
    expect((await store.ordersOfUser(457, 10))[0].user_name).toBe("Jane Smith");
    expect(await store.ordersOfUser(458, 10)).toEqual([]);
  });

  it("computes the statistics from the stored views: counts, revenue, reasons, duration percentiles, in flight", async () => {
    await store.reset();
    await project([
      ...log.checkout({ order: 21, start: 0, duration: 100, outcome: "confirmed", amount: 10.1 }),
      ...log.checkout({ order: 22, start: 0, duration: 200, outcome: "confirmed", amount: 20.2 }),
      ...log.checkout({ order: 23, start: 0, duration: 400, outcome: "confirmed", amount: 5, currency: "EUR" }),
      ...log.checkout({ order: 24, start: 0, duration: 1000, outcome: "confirmed", amount: 0.7 }),
      ...log.checkout({ order: 25, start: 0, duration: 300, outcome: "payment_failed", mode: "choreographed" }),
      ...log.checkout({ order: 26, start: 0, outcome: "pending", mode: "choreographed" }),
      ...log.checkout({ order: 27, start: 0, outcome: "pending" }),
    ]);

    expect(orderStatistics(await store.summaries())).toEqual({
      total_orders: 7,
      by_status: { pending: 2, confirmed: 4, cancelled: 1 },
      revenue: [
        { currency: "CAD", confirmed_amount: 31 },
        { currency: "EUR", confirmed_amount: 5 },
      ],
      cancellation_reasons: { payment_failed: 1 },
      saga_duration_ms: [
        { saga_mode: "choreographed", outcome: "cancelled", count: 1, p50: 300, p90: 300, p99: 300, max: 300 },
        // 100, 200, 400, 1000: p50 = 300, p90 = 400 + 0.7 * 600, p99 = 400 + 0.97 * 600
        { saga_mode: "orchestrated", outcome: "confirmed", count: 4, p50: 300, p90: 820, p99: 982, max: 1000 },
      ],
      by_saga_mode: { orchestrated: { confirmed: 4, pending: 1 }, choreographed: { cancelled: 1, pending: 1 } },
    });
    expect(inFlightByMode(await store.summaries("pending"))).toEqual({ orchestrated: 1, choreographed: 1 });
  });

  it("changes nothing when a batch is handled twice, and takes only the new events of an overlapping one", async () => {
    await store.reset();
    const events = log.checkout({ order: 31, start: 0, duration: 50, outcome: "confirmed" });
    const head = events.slice(0, 3);
    await project(head);
    const once = await store.order("order_31");

    // the same batch again (a redelivery, or a restart before the checkpoint moved)
    expect((await projectBatch(store, head, lastPosition(head), lookupUsers)).settled).toEqual([]);
    expect(await store.order("order_31")).toEqual(once);

    // a batch overlapping what is already folded in (a crash between views and checkpoint)
    const settled = await project(events);
    const view = (await store.order("order_31"))!;
    expect(view.timeline.map((t) => t.event)).toEqual([
      "OrderInitiated",
      "StockReserved",
      "PaymentProcessed",
      "ShipmentScheduled",
      "OrderConfirmed",
      "NotificationSent",
    ]);
    expect(settled.map((v) => v.order_id)).toEqual(["order_31"]);
    expect(await project(events)).toEqual([]); // settled once only
    expect(await store.order("order_31")).toEqual(view);
  });

  it("never replaces a view with an older one, nor moves the checkpoint back", async () => {
    await store.reset();
    const events = log.checkout({ order: 41, start: 0, duration: 60, outcome: "confirmed" });
    await project(events);
    const latest = await store.views(["order_41"]);
    const newest = latest.get("order_41")!;
    expect(newest.position).toBe(lastPosition(events));

    // a late writer holding the view as it was after the first event
    const early = (await (async () => {
      await store.reset();
      await project(events.slice(0, 1));
      return (await store.views(["order_41"])).get("order_41")!;
    })());
    await store.apply([newest], lastPosition(events));
    await store.apply([early], early.position);

    expect(await store.order("order_41")).toEqual(newest.view);
    expect((await store.views(["order_41"])).get("order_41")!.position).toBe(newest.position);
    expect(await store.checkpoint()).toBe(lastPosition(events));

    // an event at or below the view's position is not folded in again
    await projectBatch(store, events.slice(2, 4), events[3].position, lookupUsers);
    expect(await store.order("order_41")).toEqual(newest.view);
  });

  it("takes the customer's name and e-mail from an order that carries them, and looks up only one that does not", async () => {
    const carried = log.checkout({ order: 46, start: 0, outcome: "pending" });
    const initiated = carried[0] as StoredEvent & { data: DataOf<"OrderInitiated"> };
    carried[0] = { ...initiated, data: { ...initiated.data, customer: { name: "Ann Carried", email: "ann@example.com", phone: null } } } as StoredEvent;
    const looked = log.checkout({ order: 47, user: 457, start: 0, outcome: "pending" });
    const asked: number[][] = [];
    const events = [...carried, ...looked].sort((a, b) => a.position - b.position);
    await projectBatch(store, events, lastPosition(events), async (ids) => {
      asked.push(ids);
      return lookupUsers(ids);
    });
    expect(asked).toEqual([[457]]);
    expect(await store.order("order_46")).toMatchObject({ user_id: 456, user_name: "Ann Carried", user_email: "ann@example.com" });
    expect(await store.order("order_47")).toMatchObject({ user_id: 457, user_name: "Jane Smith", user_email: "jane.smith@example.com" });
  });

  it("leaves the checkpoint where it was after a batch that changes no view, unless told to write it", async () => {
    const events = log.checkout({ order: 45, start: 0, outcome: "pending" });
    await project(events);
    const view = await store.order("order_45");
    const command = log.event("ProcessPayment", { order_id: "order_45", customer_id: 456, amount: 199.99, currency: "CAD", card_token: "tok_visa" }, "checkout_45", 50, "orchestrated");

    expect(await projectBatch(store, [command], command.position, lookupUsers, { checkpointAlone: false })).toEqual({ settled: [], checkpointed: false });
    expect(await store.checkpoint()).toBe(lastPosition(events));
    expect(await projectBatch(store, [command], command.position, lookupUsers, { checkpointAlone: true })).toEqual({ settled: [], checkpointed: true });
    expect(await store.checkpoint()).toBe(command.position);
    expect(await store.order("order_45")).toEqual(view);
  });

  it("rebuilds from the events to the same views and statistics", async () => {
    await store.reset();
    const events = [
      ...log.checkout({ order: 51, start: 0, duration: 80, outcome: "confirmed" }),
      ...log.checkout({ order: 52, user: 457, start: 5, duration: 90, outcome: "payment_failed" }),
      ...log.checkout({ order: 53, start: 10, outcome: "pending" }),
    ];
    // followed in two batches, as the follower would
    await project(events.slice(0, 7));
    await project(events.slice(7));
    const before = {
      views: await Promise.all(["order_51", "order_52", "order_53"].map((id) => store.order(id))),
      statistics: orderStatistics(await store.summaries()),
      checkpoint: await store.checkpoint(),
    };

    await store.reset();
    expect(await store.checkpoint()).toBe(0);
    expect(await store.order("order_51")).toBeNull();
    expect(await store.summaries()).toEqual([]);

    await project(events);
    expect({
      views: await Promise.all(["order_51", "order_52", "order_53"].map((id) => store.order(id))),
      statistics: orderStatistics(await store.summaries()),
      checkpoint: await store.checkpoint(),
    }).toEqual(before);
  });
}

for (const backend of BACKENDS) {
  if (backend.skip) {
    console.warn(`[skip] read-model contract on ${backend.name}: ${backend.skip}`);
    describe.skip(`read-model store contract (${backend.name}): ${backend.skip}`, () => readModelContract(backend));
  } else {
    describe(`read-model store contract (${backend.name})`, () => readModelContract(backend));
  }
}

describe("statistics", () => {
  it("computes percentiles as PostgreSQL's percentile_cont does", async () => {
    const db = await openDatabase({});
    try {
      const samples = [[7], [3, 1], [5, 1, 4, 2, 3], Array.from({ length: 101 }, (_, i) => (i * 37) % 101), [146, 305, 12, 12, 980, 41]];
      for (const values of samples) {
        const sorted = [...values].sort((a, b) => a - b);
        const { rows } = await db.pool.query(
          `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v) AS p50, percentile_cont(0.9) WITHIN GROUP (ORDER BY v) AS p90,
                  percentile_cont(0.99) WITHIN GROUP (ORDER BY v) AS p99 FROM unnest($1::float8[]) AS v`,
          [values],
        );
        expect([0.5, 0.9, 0.99].map((p) => percentile(sorted, p))).toEqual([rows[0].p50, rows[0].p90, rows[0].p99].map((x) => expect.closeTo(x, 9)));
      }
    } finally {
      await db.close();
    }
  });
});

describe("read-model store on PostgreSQL, a database from before views carried positions", () => {
  it("drops the old views and starts again from position 0, so the projection rebuilds them", async () => {
    const db = await openDatabase({});
    try {
      // the layout of the first release: no position column, checkpoint in the event store
      await db.pool.query(`
        CREATE SCHEMA read_model;
        CREATE TABLE read_model.orders (order_id TEXT PRIMARY KEY, correlation_id TEXT NOT NULL, user_id INTEGER NOT NULL,
          status TEXT NOT NULL, saga_mode TEXT, started_at TIMESTAMPTZ NOT NULL, ended_at TIMESTAMPTZ, doc JSONB NOT NULL);
        INSERT INTO read_model.orders VALUES ('order_1', 'checkout_1', 456, 'pending', 'orchestrated', now(), NULL, '{"order_id": "order_1"}');
      `);
      const store = new PgReadModelStore(db.pool, { embedded: db.embedded });
      await store.open();
      expect(await store.checkpoint()).toBe(0);
      expect(await store.order("order_1")).toBeNull();

      const log = new EventLog();
      const events = log.checkout({ order: 1, start: 0, outcome: "confirmed" });
      await projectBatch(store, events, lastPosition(events), lookupUsers);
      expect((await store.order("order_1"))?.status).toBe("confirmed");

      await store.open(); // a second start finds the layout and changes nothing
      expect((await store.order("order_1"))?.status).toBe("confirmed");
    } finally {
      await db.close();
    }
  });
});
