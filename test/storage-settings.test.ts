import { describe, expect, it } from "vitest";
import { openDatabase, type Database } from "../services/database/database.js";
import { HALF_EMPTY_PAGES, keyColumnsNotC, SYSTEM_SCHEMAS } from "../services/database/schema.js";
import { PgReadModelStore } from "../services/projections/pg-read-model-store.js";
import { available, freshPostgresDatabase } from "./support/infrastructure.js";

/**
 * The rows rewritten at every step (saga instances, order views) get half-empty pages on a
 * PostgreSQL server, where that saves WAL and CPU per saga, and full pages in PGlite, where it
 * cost throughput (README: Design decisions).
 */

const reachable = await available("postgres");

async function fillfactors(db: Database): Promise<Record<string, string | null>> {
  await new PgReadModelStore(db.pool, { embedded: db.embedded }).open();
  const { rows } = await db.pool.query(
    `SELECT c.oid::regclass::text AS name,
            (SELECT o FROM unnest(c.reloptions) AS o WHERE o LIKE 'fillfactor=%') AS fillfactor
       FROM pg_class c WHERE c.oid IN ('orchestrator.sagas'::regclass, 'read_model.orders'::regclass)`,
  );
  return Object.fromEntries(rows.map((r) => [r.name, r.fillfactor]));
}

describe("storage settings of the rewritten rows", () => {
  it("keeps full pages in the embedded database", async () => {
    const db = await openDatabase({});
    try {
      expect(await fillfactors(db)).toEqual({ "orchestrator.sagas": null, "read_model.orders": null });
    } finally {
      await db.close();
    }
  });

  it.skipIf(!reachable)("leaves half of each page free on a PostgreSQL server", async () => {
    const fresh = await freshPostgresDatabase();
    const db = await openDatabase({ databaseUrl: fresh.url });
    try {
      const half = `fillfactor=${HALF_EMPTY_PAGES}`;
      expect(await fillfactors(db)).toEqual({ "orchestrator.sagas": half, "read_model.orders": half });
    } finally {
      await db.close();
      await fresh.drop();
    }
  });
});

/**
 * Identifiers compare byte by byte: every text column a key or an index covers collates "C",
 * whatever the database's default, and a database of an older layout is converted on start
 * (README: Design decisions, "Keys collate C").
 */
/** Every schema of the database but PostgreSQL's own: a schema the DDL gains is covered without being named here. */
async function ownSchemas(db: Database): Promise<string[]> {
  const { rows } = await db.pool.query(
    "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname NOT IN ('information_schema', 'public') ORDER BY 1",
  );
  return rows.map((r) => r.nspname as string);
}

async function collations(db: Database): Promise<{ notC: string[]; sample: Record<string, string> }> {
  await new PgReadModelStore(db.pool, { embedded: db.embedded }).open();
  const schemas = await ownSchemas(db);
  expect(schemas).toEqual([...SYSTEM_SCHEMAS, "read_model"].sort());
  const notC = await db.pool.query(keyColumnsNotC(schemas));
  const { rows } = await db.pool.query(
    `SELECT c.relnamespace::regnamespace::text || '.' || c.relname || '.' || a.attname AS col, a.attcollation::regcollation::text AS coll
       FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
      WHERE (c.oid, a.attname) IN (('event_store.events'::regclass, 'correlation_id'), ('messaging.inbox'::regclass, 'consumer'),
                                  ('orchestrator.sagas'::regclass, 'correlation_id'), ('read_model.orders'::regclass, 'order_id'))`,
  );
  return {
    notC: notC.rows.map((r) => `${r.nspname}.${r.relname}.${r.attname}`),
    sample: Object.fromEntries(rows.map((r) => [r.col, r.coll])),
  };
}

const allC = {
  "event_store.events.correlation_id": '"C"',
  "messaging.inbox.consumer": '"C"',
  "orchestrator.sagas.correlation_id": '"C"',
  "read_model.orders.order_id": '"C"',
};

describe("keys that collate C", () => {
  it("in the embedded database", async () => {
    const db = await openDatabase({});
    try {
      expect(await collations(db)).toEqual({ notC: [], sample: allC });
    } finally {
      await db.close();
    }
  });

  it.skipIf(!reachable)("on a PostgreSQL server, and a database of the layout before is converted without losing a row", async () => {
    const fresh = await freshPostgresDatabase();
    let db = await openDatabase({ databaseUrl: fresh.url });
    try {
      expect(await collations(db)).toEqual({ notC: [], sample: allC });
      // the layout before: keys in the database's default collation, schema version 4
      await db.pool.query(`
        ALTER TABLE event_store.events ALTER COLUMN correlation_id TYPE text COLLATE "default";
        ALTER TABLE messaging.inbox ALTER COLUMN consumer TYPE text COLLATE "default";
        ALTER TABLE read_model.orders ALTER COLUMN order_id TYPE text COLLATE "default";
        UPDATE public.saga_bench_schema SET version = 4;
        INSERT INTO messaging.inbox (consumer, message_id) VALUES ('a-consumer', gen_random_uuid());
        INSERT INTO read_model.orders (order_id, position, correlation_id, user_id, status, started_at, doc)
          VALUES ('ord-1', 1, 'corr-1', 456, 'pending', now(), '{}');`);
      const before = await db.pool.query(keyColumnsNotC(await ownSchemas(db)));
      expect(before.rows.map((r) => `${r.nspname}.${r.relname}.${r.attname}`).sort()).toEqual([
        "event_store.events.correlation_id",
        "messaging.inbox.consumer",
        "read_model.orders.order_id",
      ]);
      await db.close();
      db = await openDatabase({ databaseUrl: fresh.url });
      expect(await collations(db)).toEqual({ notC: [], sample: allC });
      const kept = await db.pool.query(
        "SELECT (SELECT count(*)::int FROM messaging.inbox WHERE consumer = 'a-consumer') AS inbox, (SELECT count(*)::int FROM read_model.orders WHERE order_id = 'ord-1') AS views",
      );
      expect(kept.rows[0]).toEqual({ inbox: 1, views: 1 });
    } finally {
      await db.close();
      await fresh.drop();
    }
  });
});
