import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { PgEventStore, type StoredEvent } from "../services/event-store/pg-event-store.js";
import { newMessage } from "../services/shared/catalogue.js";
import { openDatabase, withTransaction, type Database } from "../services/database/database.js";
import { available, freshPostgresDatabase, POSTGRES_URL } from "./support/infrastructure.js";
import { orderInitiated } from "./support/messages.js";

/**
 * Appends without a system-wide lock (PostgreSQL only: it needs transactions open side by side).
 * Writers of different checkouts commit independently; followers still read a prefix that never
 * grows behind them; the watchdog's per-checkout lock still holds that checkout's writers back.
 */

const reachable = await available("postgres");

let sequence = 0;
const nextOrder = () => `order_${++sequence}`;
const initiated = (order_id: string, correlation_id: string) => newMessage(orderInitiated(order_id), { correlation_id, service_name: "orders" });

const until = async (condition: () => Promise<boolean>) => {
  while (!(await condition())) await new Promise((r) => setTimeout(r, 10));
};

describe.skipIf(!reachable)("event store without a global append lock (PostgreSQL)", () => {
  let db: Database;
  let store: PgEventStore;
  let drop: () => Promise<void>;

  beforeAll(async () => {
    const fresh = await freshPostgresDatabase();
    drop = fresh.drop;
    db = await openDatabase({ databaseUrl: fresh.url });
    store = new PgEventStore(db.pool);
  });
  afterAll(async () => {
    await db?.close();
    await drop?.();
  });

  const waiting = async (pid: number) => {
    const { rows } = await db.pool.query("SELECT cardinality(pg_blocking_pids($1)) > 0 AS blocked", [pid]);
    return rows[0].blocked as boolean;
  };

  it("commits an append of one checkout while another checkout's appending transaction is still open", async () => {
    const open = await db.pool.connect();
    try {
      await open.query("BEGIN");
      const [early] = await store.append(open, [initiated(nextOrder(), "checkout_open")]);

      const [late] = await withTransaction(db.pool, (tx) => store.append(tx, [initiated(nextOrder(), "checkout_free")]));

      expect(late.position).toBeGreaterThan(early.position);
      // committed, but followers do not see it yet: the open transaction began before it
      expect(await store.readCommitted(early.position - 1, 100)).toEqual([]);
      await open.query("COMMIT");
      expect((await store.readCommitted(early.position - 1, 100)).map((e) => e.event_id)).toEqual([early.event_id, late.event_id]);
    } finally {
      await open.query("ROLLBACK").catch(() => undefined);
      open.release();
    }
  });

  it("hands followers an event committed by a transaction that began earlier but took a later position, after what they read", async () => {
    const [start] = await withTransaction(db.pool, (tx) => store.append(tx, [initiated(nextOrder(), "checkout_start")]));
    const older = await db.pool.connect();
    try {
      await older.query("BEGIN");
      await older.query("SELECT pg_current_xact_id()"); // this transaction's id is now the smaller
      const [first] = await withTransaction(db.pool, (tx) => store.append(tx, [initiated(nextOrder(), "checkout_first")]));
      const [second] = await store.append(older, [initiated(nextOrder(), "checkout_second")]);
      expect(second.position).toBeGreaterThan(first.position);
      expect(await store.readCommitted(start.position, 100)).toEqual([]);
      await older.query("COMMIT");

      const read = await store.readCommitted(start.position, 100);
      // transaction order: the older transaction's event first, though its position is larger
      expect(read.map((e) => e.event_id)).toEqual([second.event_id, first.event_id]);
      expect(await store.readCommitted(second.position, 100)).toStrictEqual([read[1]]);
    } finally {
      await older.query("ROLLBACK").catch(() => undefined);
      older.release();
    }
  });

  it("is not held back by a long transaction in another database on the same server", async () => {
    const other = new pg.Client({ connectionString: POSTGRES_URL });
    await other.connect();
    try {
      await other.query("BEGIN");
      await other.query("SELECT pg_current_xact_id()");
      const before = (await store.readCommitted(0, 1000)).pop()?.position ?? 0;
      const stored: StoredEvent[] = await withTransaction(db.pool, (tx) => store.append(tx, [initiated(nextOrder(), "checkout_x")]));

      expect(await store.readCommitted(before, 100)).toStrictEqual(stored);
    } finally {
      await other.query("ROLLBACK").catch(() => undefined);
      await other.end();
    }
  });

  it("holds a checkout's appends while lockAppends holds it, and lets other checkouts append", async () => {
    const holder = await db.pool.connect();
    try {
      await holder.query("BEGIN");
      await store.lockAppends(holder, "checkout_locked");

      await withTransaction(db.pool, (tx) => store.append(tx, [initiated(nextOrder(), "checkout_other")]));
      let pid = 0;
      let done = false;
      const blocked = withTransaction(db.pool, async (tx) => {
        pid = (await tx.query("SELECT pg_backend_pid() AS p")).rows[0].p as number;
        return store.append(tx, [initiated(nextOrder(), "checkout_locked")]);
      }).finally(() => (done = true));
      await until(async () => pid !== 0 && (await waiting(pid)));
      expect(done).toBe(false);

      await holder.query("COMMIT");
      const [stored] = await blocked;
      expect(stored.correlation_id).toBe("checkout_locked");
    } finally {
      await holder.query("ROLLBACK").catch(() => undefined);
      holder.release();
    }
  });
});
