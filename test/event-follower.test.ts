import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { LoggerInstance } from "moleculer";
import { PgEventStore, type StoredEvent } from "../services/event-store/pg-event-store.js";
import { EventFollower } from "../services/event-store/event-follower.js";
import { SharedReads } from "../services/event-store/shared-reads.js";
import { emit, newMessage } from "../services/shared/catalogue.js";
import { openDatabase, withTransaction, type Database } from "../services/database/database.js";
import { committed } from "../services/event-store/commit-signal.js";

/**
 * The followers of one process (the relay and the projections) and their reads of the event
 * store: woken by one commit they read once between them, and a follower never takes a read that
 * began before its reason to read.
 */

const logger = { info() {}, warn() {}, error() {}, debug() {}, trace() {}, fatal() {} } as unknown as LoggerInstance;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let db: Database;
let store: PgEventStore;
let seq = 0;

beforeAll(async () => {
  db = await openDatabase({});
  store = new PgEventStore(db.pool);
});
afterAll(() => db.close());

/** Commits one OrderConfirmed per order id, in one transaction, and returns them as stored. */
async function commit(...orders: string[]): Promise<StoredEvent[]> {
  const messages = orders.map((order_id) =>
    newMessage(emit("OrderConfirmed", { order_id, shipment_id: `ship_${order_id}`, estimated_delivery: "2026-12-01" }), {
      correlation_id: `checkout_${order_id}`,
      service_name: "orders",
    }),
  );
  return withTransaction(db.pool, (tx) => store.append(tx, messages));
}
const nextOrder = () => `order_${++seq}`;

/** Counts the event store's reads for followers. */
function countReads(s: PgEventStore): { reads: number; restore(): void } {
  const original = s.follow.bind(s);
  const counter = {
    reads: 0,
    restore: () => {
      s.follow = original;
    },
  };
  s.follow = (after, limit, q) => {
    counter.reads++;
    return original(after, limit, q);
  };
  return counter;
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (let waited = 0; !check(); waited += 10) {
    if (waited > 10_000) throw new Error(`${what}: not within 10 s`);
    await sleep(10);
  }
}

describe("followers in one process", () => {
  const followers: EventFollower[] = [];
  afterEach(async () => {
    await Promise.all(followers.splice(0).map((f) => f.stop()));
  });

  function follow(name: string, seen: StoredEvent[]): EventFollower {
    // the poll is far off: only the commit signal wakes them during the test
    const f = new EventFollower({ name, db, store, logger, pollMs: 60_000, checkpoint: async () => store.lastPosition(), handle: async (events) => void seen.push(...events) });
    followers.push(f);
    return f;
  }

  it("read once between them per commit, and each gets every event", async () => {
    const relay: StoredEvent[] = [];
    const projections: StoredEvent[] = [];
    const a = follow("relay", relay);
    const b = follow("projections", projections);
    await a.start();
    await b.start();
    await sleep(100); // their first reads, which find nothing new
    const counter = countReads(store);
    try {
      for (let i = 0; i < 3; i++) {
        const stored = await commit(nextOrder());
        committed();
        await until(() => relay.length === i + 1 && projections.length === i + 1, "both followers got the event");
        expect(relay[i].event_id).toBe(stored[0].event_id);
        expect(projections[i].event_id).toBe(stored[0].event_id);
      }
      await sleep(100); // a second read per follower per commit, if any, would happen now
      // one per commit; two followers reading on their own would make 6, and 12 with a read each
      // that finds nothing after every batch
      expect(counter.reads).toBe(3);
    } finally {
      counter.restore();
    }
  });
});

describe("SharedReads", () => {
  it("gives a follower woken after a read a new read, which sees the commit it was woken for", async () => {
    const reads = new SharedReads(store);
    const counter = countReads(store);
    try {
      const from = await store.lastPosition();
      expect((await reads.follow(from, 10, reads.stamp())).events).toEqual([]);
      const [event] = await commit(nextOrder());
      const woken = reads.stamp();
      const page = await reads.follow(from, 10, woken);
      expect(page.events.map((e) => e.event_id)).toEqual([event.event_id]);
      expect(counter.reads).toBe(2);
      // another follower woken by the same commit takes that read
      expect((await reads.follow(from, 10, woken)).events.map((e) => e.event_id)).toEqual([event.event_id]);
      expect(counter.reads).toBe(2);
    } finally {
      counter.restore();
    }
  });

  it("cuts a read that began at an earlier position at the follower's own, and says when a limit cut it", async () => {
    const reads = new SharedReads(store);
    const from = await store.lastPosition();
    const stored = await commit(nextOrder(), nextOrder(), nextOrder());
    const since = reads.stamp();
    const all = await reads.follow(from, 10, since);
    expect(all.events.map((e) => e.position)).toEqual(stored.map((e) => e.position));
    expect(all.more).toBe(false);
    const counter = countReads(store);
    try {
      const rest = await reads.follow(stored[0].position, 10, since);
      expect(rest.events.map((e) => e.position)).toEqual(stored.slice(1).map((e) => e.position));
      const one = await reads.follow(stored[0].position, 1, since);
      expect(one).toMatchObject({ more: true, events: [{ position: stored[1].position }] });
      expect(counter.reads).toBe(0);
      // a position the read does not hold needs a read of its own
      await reads.follow(stored[2].position + 1_000, 10, since);
      expect(counter.reads).toBe(1);
    } finally {
      counter.restore();
    }
  });
});
