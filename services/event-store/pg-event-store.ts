import type pg from "pg";
import type { AnyEnvelope, AnyNewMessage, MessageType } from "../shared/catalogue.js";
import type { Queryable, Tx } from "../shared/database.js";

/** A stored message with its global position. */
export type StoredEvent = AnyEnvelope & { readonly position: number };

/** The aggregate moved on since the caller read it (`expected` version); retrying will not help. */
export class ConcurrencyError extends Error {}

const APPEND_LOCK = 7_420_000;

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
   */
  async append(tx: Tx, messages: readonly AnyNewMessage[], expected?: Map<string, number>): Promise<StoredEvent[]> {
    if (messages.length === 0) return [];
    // Appends queue on one lock held to commit, so positions commit in the order they are
    // handed out: a follower that has seen position n can never later find a smaller one.
    await this.lockAppends(tx);
    const next = new Map<string, number>();
    const stored: StoredEvent[] = [];
    for (const m of messages) {
      const key = `${m.aggregate_type}/${m.aggregate_id}`;
      let version = next.get(key);
      if (version === undefined) {
        const { rows } = await tx.query(
          "SELECT coalesce(max(version), 0) AS v FROM event_store.events WHERE aggregate_type = $1 AND aggregate_id = $2",
          [m.aggregate_type, m.aggregate_id],
        );
        const current = rows[0].v as number;
        const want = expected?.get(key);
        if (want !== undefined && want !== current) {
          throw new ConcurrencyError(`${key} is at version ${current}, expected ${want}`);
        }
        version = current + 1;
      }
      next.set(key, version + 1);
      const { rows } = await tx.query(
        `INSERT INTO event_store.events (event_id, event_type, aggregate_type, aggregate_id, version, timestamp,
           correlation_id, service_name, data, metadata)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) RETURNING ${COLUMNS}`,
        [
          m.event_id,
          m.event_type,
          m.aggregate_type,
          m.aggregate_id,
          version,
          m.timestamp,
          m.correlation_id,
          m.service_name,
          JSON.stringify(m.data),
          JSON.stringify(m.metadata),
        ],
      );
      stored.push(toStored(rows[0]));
    }
    await tx.query("SELECT pg_notify('event_store', $1)", [String(stored[stored.length - 1].position)]);
    return stored;
  }

  /**
   * Waits until no other transaction is appending, and keeps it so until this one ends: what the
   * caller then reads is every event committed so far, and none can commit before it does.
   */
  async lockAppends(tx: Tx): Promise<void> {
    await tx.query("SELECT pg_advisory_xact_lock($1)", [APPEND_LOCK]);
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
   * Reads on from `after` for followers (relay, projections). Because appends commit in
   * position order (see `append`), what is visible is a gap-free prefix, and a follower that
   * checkpoints the last position it handled never skips an event.
   */
  async readCommitted(after: number, limit: number, db: Queryable = this.pool): Promise<StoredEvent[]> {
    const { rows } = await db.query(
      `SELECT ${COLUMNS} FROM event_store.events WHERE position > $1 ORDER BY position LIMIT $2`,
      [after, limit],
    );
    return rows.map(toStored);
  }

  async byType(type: string, page: Page = {}): Promise<StoredEvent[]> {
    const { after, limit } = pageOf(page);
    const { rows } = await this.pool.query(
      `SELECT ${COLUMNS} FROM event_store.events WHERE event_type = $1 AND position > $2 ORDER BY position LIMIT $3`,
      [type, after, limit],
    );
    return rows.map(toStored);
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
