import type pg from "pg";
import type { AggregateType, AnyEnvelope, AnyNewMessage, MessageType } from "../shared/catalogue.js";
import { ADVISORY_LOCKS } from "../database/advisory-locks.js";
import { markAppended, type Queryable, type Tx } from "../database/database.js";

/** A stored message with its global position. */
export type StoredEvent = AnyEnvelope & { readonly position: number };

/** The aggregate moved on since the caller read it (`expected` version); retrying will not help. */
export class ConcurrencyError extends Error {}

/** Advisory lock space of the per-checkout append locks (two-key form: this, hashtext(correlation id)). */
const CHECKOUT_LOCKS = ADVISORY_LOCKS.checkouts;

/**
 * SQL that joins a checkout's writers (the shared side of `lockAppends`), for the first statement
 * of a transaction that will append to that checkout: it then takes its transaction id only once
 * no timeout is being decided, so within one checkout the followers' order (writing transaction,
 * then position) is also position order, which the read models' per-view guard relies on.
 */
export const joinCheckoutSql = (param: string): string => `pg_advisory_xact_lock_shared(${CHECKOUT_LOCKS}, hashtext(${param}))`;

const COLUMNS = `position, event_id, event_type, aggregate_type, aggregate_id, version, timestamp,
  correlation_id, service_name, data, metadata`;

function toStored(row: Record<string, unknown>): StoredEvent {
  return {
    position: row.position as number,
    event_id: row.event_id as string,
    event_type: row.event_type as MessageType,
    aggregate_type: row.aggregate_type,
    aggregate_id: row.aggregate_id as string,
    timestamp: (row.timestamp as Date).toISOString(),
    version: row.version as number,
    correlation_id: row.correlation_id as string,
    service_name: row.service_name as string,
    data: row.data,
    metadata: row.metadata,
  } as StoredEvent;
}

export interface Page {
  after?: number;
  limit?: number;
}

const APPEND = `
WITH m AS MATERIALIZED (
  SELECT r.*,
         row_number() OVER (PARTITION BY aggregate_type, aggregate_id ORDER BY i) AS n,
         count(*) OVER (PARTITION BY aggregate_type, aggregate_id) AS total
    FROM jsonb_to_recordset($1::jsonb) AS r(i int, event_id uuid, event_type text, aggregate_type text,
         aggregate_id text, "timestamp" timestamptz, correlation_id text, service_name text, data jsonb, metadata jsonb)
),
locked AS MATERIALIZED (
  SELECT count(*) AS checkouts
    FROM (SELECT pg_advisory_xact_lock_shared(${CHECKOUT_LOCKS}, hashtext(c))
            FROM (SELECT DISTINCT correlation_id AS c FROM m ORDER BY 1) d) l
),
stream AS (
  INSERT INTO event_store.streams AS s (aggregate_type, aggregate_id, version)
  SELECT aggregate_type, aggregate_id, max(total) FROM m, locked GROUP BY 1, 2 ORDER BY 1, 2
  ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET version = s.version + EXCLUDED.version
  RETURNING aggregate_type, aggregate_id, version
)
INSERT INTO event_store.events (event_id, event_type, aggregate_type, aggregate_id, version, timestamp,
  correlation_id, service_name, data, metadata)
SELECT m.event_id, m.event_type, m.aggregate_type, m.aggregate_id, (stream.version - m.total + m.n)::int, m.timestamp,
       m.correlation_id, m.service_name, m.data, m.metadata
  FROM m JOIN stream USING (aggregate_type, aggregate_id)
 ORDER BY m.i
RETURNING ${COLUMNS}`;

/**
 * The horizon is the smallest id among the transactions running at this statement's snapshot,
 * leaving out those known to belong to another database (a transaction that ended before
 * pg_stat_activity was read is kept: safe, it only holds the horizon back for this one read).
 */
const READ_COMMITTED = `
WITH snap AS MATERIALIZED (SELECT pg_current_snapshot() AS s),
foreign_xids AS MATERIALIZED (
  SELECT backend_xid FROM pg_stat_activity
   WHERE backend_xid IS NOT NULL AND datid IS DISTINCT FROM (SELECT oid FROM pg_database WHERE datname = current_database())
),
horizon AS MATERIALIZED (
  SELECT coalesce(
    (SELECT min(x) FROM snap, pg_snapshot_xip(snap.s) AS x
      WHERE NOT EXISTS (SELECT 1 FROM foreign_xids f WHERE f.backend_xid = xid(x))),
    (SELECT pg_snapshot_xmax(s) FROM snap)) AS h
),
cursor AS MATERIALIZED (
  SELECT coalesce((SELECT tx_id FROM event_store.events WHERE position = $1), '0'::xid8) AS tx_id
),
-- the bounds as scalar subqueries: parameters of the index scan on (tx_id, position), which then
-- starts at the cursor and stops at the horizon whatever the table's size
page AS (
  SELECT ${COLUMNS}, e.tx_id FROM event_store.events e
   WHERE (e.tx_id, e.position) > ((SELECT tx_id FROM cursor), $1::bigint) AND e.tx_id < (SELECT h FROM horizon)
   ORDER BY e.tx_id, e.position
   LIMIT $2
)
-- one row even when the page is empty, to carry held_back: whether the first event at or above
-- the horizon exists. An ordered scalar subquery, so the (tx_id, position) index finds it in one
-- step (an EXISTS would drop the order and may scan the table from its start)
SELECT page.*, (
         SELECT e.tx_id FROM event_store.events e
          WHERE e.tx_id >= (SELECT greatest(horizon.h, cursor.tx_id) FROM horizon, cursor)
            AND (e.tx_id, e.position) > ((SELECT tx_id FROM cursor), $1::bigint)
          ORDER BY e.tx_id, e.position LIMIT 1
       ) IS NOT NULL AS held_back
  FROM (SELECT 1) one LEFT JOIN page ON true
 ORDER BY page.tx_id, page.position`;

const MAX_PAGE = 1000;
const pageOf = (p: Page) => ({ after: Math.max(0, p.after ?? 0), limit: Math.min(Math.max(1, p.limit ?? 100), MAX_PAGE) });

/**
 * Append-only event store on PostgreSQL. Appends take the caller's transaction, so an event is
 * stored together with the state change that caused it; the same table is the outbox that the
 * relay publishes from.
 */
export class PgEventStore {
  constructor(private readonly pool: pg.Pool) {}

  /**
   * Appends messages, numbering each aggregate's versions on from its last one. With `expected`
   * (aggregate key → version the caller saw) it refuses an aggregate that has moved on. The
   * UNIQUE (aggregate, version) constraint stays the last line against a second writer.
   *
   * One statement: it numbers the versions under the row lock of each aggregate's stream row
   * (writers of other aggregates do not wait), inserts the events and takes the shared lock of
   * each checkout that `lockAppends` waits for. Nothing serialises appends system-wide, so
   * followers order what they read by writing transaction (see `readCommitted`).
   */
  async append(tx: Tx, messages: readonly AnyNewMessage[], expected?: Map<string, number>): Promise<StoredEvent[]> {
    if (messages.length === 0) return [];
    if (expected) await this.checkExpected(tx, expected);
    const batch = messages.map((m, i) => ({
      i,
      event_id: m.event_id,
      event_type: m.event_type,
      aggregate_type: m.aggregate_type,
      aggregate_id: m.aggregate_id,
      timestamp: m.timestamp,
      correlation_id: m.correlation_id,
      service_name: m.service_name,
      data: m.data,
      metadata: m.metadata,
    }));
    const { rows } = await tx.query(APPEND, [JSON.stringify(batch)]);
    if (rows.length !== messages.length) throw new Error(`append stored ${rows.length} of ${messages.length} messages`);
    markAppended(tx);
    return rows.map(toStored).sort((a, b) => a.position - b.position);
  }

  /** Locks the aggregates' stream rows and compares their versions with what the caller saw. */
  private async checkExpected(tx: Tx, expected: Map<string, number>): Promise<void> {
    for (const [key, want] of [...expected].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const slash = key.indexOf("/");
      const { rows } = await tx.query(
        "SELECT version FROM event_store.streams WHERE aggregate_type = $1 AND aggregate_id = $2 FOR UPDATE",
        [key.slice(0, slash), key.slice(slash + 1)],
      );
      const current = (rows[0]?.version as number | undefined) ?? 0;
      if (current !== want) throw new ConcurrencyError(`${key} is at version ${current}, expected ${want}`);
    }
  }

  /**
   * Waits until no other transaction is appending to this checkout, and keeps it so until this
   * one ends: what the caller then reads is every event of the checkout committed so far, and
   * none can commit before it does. Appends of other checkouts go on.
   */
  async lockAppends(tx: Tx, correlationId: string): Promise<void> {
    await tx.query(`SELECT pg_advisory_xact_lock(${CHECKOUT_LOCKS}, hashtext($1))`, [correlationId]);
  }

  async readAll(page: Page = {}, db: Queryable = this.pool): Promise<StoredEvent[]> {
    const { after, limit } = pageOf(page);
    const { rows } = await db.query(
      `SELECT ${COLUMNS} FROM event_store.events WHERE position > $1 ORDER BY position LIMIT $2`,
      [after, limit],
    );
    return rows.map(toStored);
  }

  /**
   * Reads on from the event at position `after` for followers (relay, projections), in the
   * order of the writing transactions' ids, then positions, and only events of transactions
   * below the horizon: the oldest transaction of this database still running when the read
   * began. Everything below it has ended, so nothing can later appear before what was read, and
   * a follower that checkpoints the last event it handled never skips one. A checkout's events
   * keep their order: each is written by a transaction that began after its cause committed.
   * Transactions of other databases on the same server are left out of the horizon, so a long
   * one there does not hold followers back.
   */
  async readCommitted(after: number, limit: number, db: Queryable = this.pool): Promise<StoredEvent[]> {
    return (await this.follow(after, limit, db)).events;
  }

  /**
   * `readCommitted`, and whether committed events wait behind the horizon (a transaction of this
   * database that began before them is still running, usually for a moment): a follower then
   * looks again soon instead of at its next poll.
   */
  async follow(after: number, limit: number, db: Queryable = this.pool): Promise<{ events: StoredEvent[]; heldBack: boolean }> {
    const { rows } = await db.query(READ_COMMITTED, [after, limit]);
    const heldBack = rows.length > 0 && (rows[0].held_back as boolean);
    return { events: rows.filter((r) => r.position !== null).map(toStored), heldBack };
  }

  async byType(type: string, page: Page = {}): Promise<StoredEvent[]> {
    const { after, limit } = pageOf(page);
    const { rows } = await this.pool.query(
      `SELECT ${COLUMNS} FROM event_store.events WHERE event_type = $1 AND position > $2 ORDER BY position LIMIT $3`,
      [type, after, limit],
    );
    return rows.map(toStored);
  }

  /**
   * Where the events of one type after `after` are, oldest first, without their data: position,
   * correlation id, and whether each was stored more than `olderThanMs` ago (by the database's
   * clock). For sweeps that look for a message that never arrived.
   */
  async positionsOfType(
    type: MessageType,
    after: number,
    olderThanMs: number,
    limit = MAX_PAGE,
  ): Promise<{ position: number; correlation_id: string; old: boolean }[]> {
    const { rows } = await this.pool.query(
      `SELECT position, correlation_id, timestamp < now() - make_interval(secs => $3::float8 / 1000) AS old
         FROM event_store.events WHERE event_type = $1 AND position > $2 ORDER BY position LIMIT $4`,
      [type, after, olderThanMs, limit],
    );
    return rows.map((r) => ({ position: Number(r.position), correlation_id: r.correlation_id as string, old: r.old as boolean }));
  }

  /** Which of these aggregates of one type have any event, read in `db` (a transaction deciding on it). */
  async aggregatesWithEvents(db: Queryable, aggregateType: AggregateType, ids: readonly string[]): Promise<Set<string>> {
    const { rows } = await db.query(
      "SELECT DISTINCT aggregate_id FROM event_store.events WHERE aggregate_type = $1 AND aggregate_id = ANY($2::text[])",
      [aggregateType, ids],
    );
    return new Set(rows.map((r) => r.aggregate_id as string));
  }

  async byAggregate(aggregateType: string, aggregateId: string, db: Queryable = this.pool): Promise<StoredEvent[]> {
    const { rows } = await db.query(
      `SELECT ${COLUMNS} FROM event_store.events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY version`,
      [aggregateType, aggregateId],
    );
    return rows.map(toStored);
  }

  async byCorrelation(correlationId: string, db: Queryable = this.pool): Promise<StoredEvent[]> {
    const { rows } = await db.query(
      `SELECT ${COLUMNS} FROM event_store.events WHERE correlation_id = $1 ORDER BY position`,
      [correlationId],
    );
    return rows.map(toStored);
  }

  async lastPosition(): Promise<number> {
    const { rows } = await this.pool.query("SELECT coalesce(max(position), 0) AS p FROM event_store.events");
    return rows[0].p as number;
  }

  async count(): Promise<number> {
    const { rows } = await this.pool.query("SELECT count(*)::int AS n FROM event_store.events");
    return rows[0].n as number;
  }

  async checkpoint(name: string, db: Queryable = this.pool): Promise<number> {
    const { rows } = await db.query("SELECT position FROM event_store.checkpoints WHERE name = $1", [name]);
    return rows.length ? (rows[0].position as number) : 0;
  }

  async saveCheckpoint(name: string, position: number, db: Queryable = this.pool): Promise<void> {
    await db.query(
      `INSERT INTO event_store.checkpoints (name, position) VALUES ($1, $2)
       ON CONFLICT (name) DO UPDATE SET position = GREATEST(event_store.checkpoints.position, $2), updated_at = now()`,
      [name, position],
    );
  }
}
