import type pg from "pg";
import { ADVISORY_LOCKS } from "./advisory-locks.js";

/**
 * One schema per service. Every statement is idempotent, so each process runs this at start;
 * an advisory lock keeps processes that start together from racing on the DDL.
 */
const DDL = `
CREATE SCHEMA IF NOT EXISTS event_store;
CREATE TABLE IF NOT EXISTS event_store.events (
  position       BIGSERIAL PRIMARY KEY,
  event_id       UUID        NOT NULL UNIQUE,
  event_type     TEXT        NOT NULL,
  aggregate_type TEXT        NOT NULL,
  aggregate_id   TEXT        NOT NULL,
  version        INTEGER     NOT NULL CHECK (version > 0),
  timestamp      TIMESTAMPTZ NOT NULL,
  correlation_id TEXT        NOT NULL,
  service_name   TEXT        NOT NULL,
  data           JSONB       NOT NULL,
  metadata       JSONB       NOT NULL,
  tx_id          xid8        NOT NULL DEFAULT pg_current_xact_id(),
  UNIQUE (aggregate_type, aggregate_id, version)
);
-- the writing transaction's id orders what followers read (see PgEventStore.readCommitted);
-- a database from schema version 1 gets it here, its old rows all the migration's id
ALTER TABLE event_store.events ADD COLUMN IF NOT EXISTS tx_id xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX IF NOT EXISTS events_tx_idx ON event_store.events (tx_id, position);
-- each aggregate's last version: appends number on from it under its row lock, so writers of
-- different aggregates never wait for each other
CREATE TABLE IF NOT EXISTS event_store.streams (
  aggregate_type TEXT    NOT NULL,
  aggregate_id   TEXT    NOT NULL,
  version        INTEGER NOT NULL,
  PRIMARY KEY (aggregate_type, aggregate_id)
);
INSERT INTO event_store.streams (aggregate_type, aggregate_id, version)
  SELECT aggregate_type, aggregate_id, max(version) FROM event_store.events GROUP BY 1, 2
  ON CONFLICT DO NOTHING;
CREATE INDEX IF NOT EXISTS events_type_idx ON event_store.events (event_type, position);
CREATE INDEX IF NOT EXISTS events_correlation_idx ON event_store.events (correlation_id, position);
CREATE OR REPLACE FUNCTION event_store.reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'event_store.events is append-only'; END $$;
DROP TRIGGER IF EXISTS events_append_only ON event_store.events;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON event_store.events
  FOR EACH ROW EXECUTE FUNCTION event_store.reject_change();
CREATE TABLE IF NOT EXISTS event_store.checkpoints (
  name       TEXT PRIMARY KEY,
  position   BIGINT NOT NULL,
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE SCHEMA IF NOT EXISTS messaging;
CREATE TABLE IF NOT EXISTS messaging.inbox (
  consumer     TEXT NOT NULL,
  message_id   UUID NOT NULL,
  processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, message_id)
);
CREATE TABLE IF NOT EXISTS messaging.dead_letters (
  id          BIGSERIAL PRIMARY KEY,
  consumer    TEXT NOT NULL,
  channel     TEXT NOT NULL,
  message_id  UUID NOT NULL,
  envelope    JSONB NOT NULL,
  error       TEXT NOT NULL,
  attempts    INTEGER NOT NULL,
  created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
  replayed_at TIMESTAMPTZ
);

-- the identity of this system, made with its database: every envelope names it, and a consumer
-- drops messages of another system that shares the broker namespace
CREATE TABLE IF NOT EXISTS messaging.system (
  singleton  BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
  id         UUID NOT NULL DEFAULT gen_random_uuid(),
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO messaging.system (singleton) VALUES (true) ON CONFLICT DO NOTHING;

CREATE SCHEMA IF NOT EXISTS users;
CREATE TABLE IF NOT EXISTS users.users (
  id    INTEGER PRIMARY KEY,
  name  TEXT NOT NULL,
  email TEXT NOT NULL,
  phone TEXT,
  street TEXT NOT NULL,
  city TEXT NOT NULL,
  postal_code TEXT NOT NULL
);

CREATE SCHEMA IF NOT EXISTS products;
CREATE TABLE IF NOT EXISTS products.products (
  id       INTEGER PRIMARY KEY,
  name     TEXT NOT NULL,
  price    NUMERIC(12,2) NOT NULL CHECK (price >= 0),
  currency TEXT NOT NULL DEFAULT 'CAD'
);

CREATE SCHEMA IF NOT EXISTS carts;
CREATE SEQUENCE IF NOT EXISTS carts.cart_seq;
CREATE TABLE IF NOT EXISTS carts.carts (
  cart_id    TEXT PRIMARY KEY,
  user_id    INTEGER NOT NULL,
  items      JSONB NOT NULL DEFAULT '[]',
  status     TEXT NOT NULL DEFAULT 'open',
  order_id   TEXT,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- the Idempotency-Key of the checkout that claimed the cart, so that request can get its answer again
ALTER TABLE carts.carts ADD COLUMN IF NOT EXISTS checkout_key TEXT;

CREATE SCHEMA IF NOT EXISTS orders;
CREATE SEQUENCE IF NOT EXISTS orders.order_seq;
CREATE TABLE IF NOT EXISTS orders.orders (
  order_id            TEXT PRIMARY KEY,
  correlation_id      TEXT NOT NULL UNIQUE,
  customer_id         INTEGER NOT NULL,
  status              TEXT NOT NULL CHECK (status IN ('pending','confirmed','cancelled')),
  cancellation_reason TEXT,
  total_amount        NUMERIC(12,2) NOT NULL,
  currency            TEXT NOT NULL,
  created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS orders.idempotency_keys (
  key        TEXT PRIMARY KEY,
  order_id   TEXT NOT NULL,
  response   JSONB NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE SCHEMA IF NOT EXISTS warehouse;
CREATE TABLE IF NOT EXISTS warehouse.stock (
  product_id INTEGER PRIMARY KEY,
  available  INTEGER NOT NULL CHECK (available >= 0),
  reserved   INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0)
);
CREATE TABLE IF NOT EXISTS warehouse.reservations (
  order_id   TEXT NOT NULL,
  product_id INTEGER NOT NULL,
  quantity   INTEGER NOT NULL CHECK (quantity > 0),
  status     TEXT NOT NULL CHECK (status IN ('reserved','released')),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (order_id, product_id)
);
-- an order whose stock was released never reserves again (a late ReserveStock after a timeout)
CREATE TABLE IF NOT EXISTS warehouse.closed_orders (
  order_id TEXT PRIMARY KEY
);

CREATE SCHEMA IF NOT EXISTS payments;
CREATE TABLE IF NOT EXISTS payments.payments (
  order_id       TEXT PRIMARY KEY,
  payment_id     TEXT,
  customer_id    INTEGER,
  amount         NUMERIC(12,2) NOT NULL,
  currency       TEXT NOT NULL,
  status         TEXT NOT NULL CHECK (status IN ('captured','failed','refunded','voided')),
  transaction_id TEXT,
  error_code     TEXT,
  updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE SCHEMA IF NOT EXISTS shipping;
CREATE TABLE IF NOT EXISTS shipping.shipments (
  order_id           TEXT PRIMARY KEY,
  shipment_id        TEXT,
  status             TEXT NOT NULL CHECK (status IN ('scheduled','failed','cancelled')),
  carrier            TEXT,
  estimated_delivery TEXT,
  postal_code        TEXT,
  updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE SCHEMA IF NOT EXISTS notifications;
CREATE TABLE IF NOT EXISTS notifications.sent (
  order_id  TEXT NOT NULL,
  template  TEXT NOT NULL,
  channel   TEXT NOT NULL,
  recipient TEXT NOT NULL,
  sent_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (order_id, template, channel)
);

CREATE SCHEMA IF NOT EXISTS orchestrator;
CREATE TABLE IF NOT EXISTS orchestrator.sagas (
  correlation_id TEXT PRIMARY KEY,
  order_id       TEXT NOT NULL,
  status         TEXT NOT NULL,
  step           TEXT NOT NULL,
  state          JSONB NOT NULL,
  deadline_at    TIMESTAMPTZ,
  step_deadline_at TIMESTAMPTZ,
  created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sagas_open_idx ON orchestrator.sagas (deadline_at) WHERE status IN ('running','compensating');

`;

/** The text columns of `schemas` that a key or index covers and that do not yet collate "C". */
export const keyColumnsNotC = (schemas: readonly string[]): string => `
  SELECT DISTINCT n.nspname, t.relname, a.attname
    FROM pg_index i
    JOIN pg_class t ON t.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY (i.indkey)
   WHERE n.nspname IN (${schemas.map((x) => `'${x}'`).join(", ")})
     AND a.atttypid = 'text'::regtype AND a.attcollation <> 'pg_catalog."C"'::regcollation`;

/**
 * Identifiers (ids, message types, consumer names) are compared byte by byte: every text column
 * that a key or an index of `schemas` covers is made to collate "C", whatever the database's
 * default collation. Ordering ids by a language's rules buys nothing and costs a locale-aware
 * comparison at every index step, sort and lookup, on the hottest statements (the append's six
 * index insertions, the inbox claim, the saga instances' lookup): on the eighteenth machine's
 * PostgreSQL an append took 15-21% less time with these columns collated "C", against both
 * `C.UTF-8` and ICU's `en-US` as the default (README: Design decisions). Idempotent: a column
 * already collated "C" is left alone, so a database of an older layout is converted once (its
 * indexes rebuilt) and a current one not touched.
 */
export const bytewiseKeys = (schemas: readonly string[]): string => `
DO $bytewise$
DECLARE c record;
BEGIN
  FOR c IN ${keyColumnsNotC(schemas)}
  LOOP
    EXECUTE format('ALTER TABLE %I.%I ALTER COLUMN %I TYPE text COLLATE "C"', c.nspname, c.relname, c.attname);
  END LOOP;
END $bytewise$;
`;

/** Every schema the DDL above creates (the read models' own, `read_model`, is `PgReadModelStore`'s). */
export const SYSTEM_SCHEMAS = ["event_store", "messaging", "users", "products", "carts", "orders", "warehouse", "payments", "shipping", "notifications", "orchestrator"];

const SEED = `
INSERT INTO users.users (id, name, email, phone, street, city, postal_code) VALUES
  (456, 'John Doe', 'customer@example.com', '+1-555-0100', '123 King Street West', 'Toronto', 'M5H 1A1'),
  (457, 'Jane Smith', 'jane.smith@example.com', '+1-555-0101', '45 Rue Sainte-Catherine', 'Montreal', 'H2X 1K4'),
  (458, 'Ravi Patel', 'ravi.patel@example.com', NULL, '900 Granville Street', 'Vancouver', 'V6Z 1L2')
ON CONFLICT (id) DO NOTHING;
INSERT INTO products.products (id, name, price, currency) VALUES
  (101, 'Laptop Dell XPS', 199.99, 'CAD'),
  (102, 'Logitech MX Master 3S', 99.99, 'CAD'),
  (103, 'USB-C Dock', 149.99, 'CAD'),
  (104, '27-inch 4K Monitor', 329.99, 'CAD'),
  (105, 'Mechanical Keyboard', 89.99, 'CAD')
ON CONFLICT (id) DO NOTHING;
INSERT INTO warehouse.stock (product_id, available) VALUES
  (101, 50), (102, 200), (103, 100), (104, 30), (105, 150)
ON CONFLICT (product_id) DO NOTHING;
`;

/**
 * Half-empty pages for the rows rewritten at every step (`fillfactor`): each saga's instance is
 * rewritten at every reply, and room on its page lets the new version stay there without new
 * index entries (a HOT update). That pays off on a PostgreSQL server (less WAL, less CPU per
 * saga); in PGlite it cost the orchestrated style 8% of its throughput, so the embedded
 * database keeps full pages (README: Design decisions). The read model's table takes the same
 * setting (`PgReadModelStore`).
 */
export const HALF_EMPTY_PAGES = 50;
const storage = (embedded: boolean) =>
  embedded ? "ALTER TABLE orchestrator.sagas RESET (fillfactor)" : `ALTER TABLE orchestrator.sagas SET (fillfactor = ${HALF_EMPTY_PAGES})`;

const MIGRATION_LOCK = ADVISORY_LOCKS.migration;
/** Bump when DDL or SEED change. */
const SCHEMA_VERSION = 5;

/**
 * Creates the schemas and seed data once per version. A process that starts against a migrated
 * database runs no DDL at all: the trigger DDL takes an exclusive lock on the events table,
 * which would deadlock with the live traffic of the other processes.
 */
export async function migrate(pool: pg.Pool, { embedded }: { embedded: boolean }): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK]);
    await client.query("CREATE TABLE IF NOT EXISTS public.saga_bench_schema (version INTEGER NOT NULL)");
    const { rows } = await client.query("SELECT max(version) AS v FROM public.saga_bench_schema");
    if (rows[0].v === SCHEMA_VERSION) return;
    await client.query(DDL);
    await client.query(bytewiseKeys(SYSTEM_SCHEMAS));
    await client.query(storage(embedded));
    await client.query(SEED);
    await client.query("INSERT INTO public.saga_bench_schema (version) VALUES ($1)", [SCHEMA_VERSION]);
  } finally {
    await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK]).catch(() => undefined);
    client.release();
  }
}

/** This system's identity (messaging.system), created with the database. */
export async function systemIdentity(pool: pg.Pool): Promise<string> {
  const { rows } = await pool.query("SELECT id FROM messaging.system");
  return rows[0].id as string;
}
