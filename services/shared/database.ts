import { mkdirSync } from "node:fs";
import pg from "pg";
import { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";
import { migrate } from "./schema.js";

export type Tx = pg.PoolClient;
export type Queryable = pg.Pool | pg.PoolClient;

export interface Database {
  pool: pg.Pool;
  /** Connection string the pool uses (for the embedded database: the pglite-socket address). */
  url: string;
  embedded: boolean;
  /** LISTEN/NOTIFY works across processes only on a real PostgreSQL server. */
  supportsListen: boolean;
  close(): Promise<void>;
}

// pg returns BIGINT as string by default; positions fit comfortably in a JS number.
pg.types.setTypeParser(20, (v) => Number(v));

export interface OpenDatabaseOptions {
  databaseUrl?: string;
  pgliteDir?: string;
  poolSize?: number;
}

/**
 * With a URL, connects to that PostgreSQL server. Without one, starts PGlite (PostgreSQL compiled
 * to WebAssembly) behind pglite-socket on a free loopback port, so the same `pg` code runs with
 * nothing installed.
 */
export async function openDatabase(opts: OpenDatabaseOptions): Promise<Database> {
  if (opts.databaseUrl) {
    const pool = new pg.Pool({ connectionString: opts.databaseUrl, max: opts.poolSize ?? 10 });
    pool.on("error", () => undefined); // idle-client errors surface on the next query instead
    await pool.query("SELECT 1");
    await migrate(pool);
    return {
      pool,
      url: opts.databaseUrl,
      embedded: false,
      supportsListen: true,
      close: () => pool.end(),
    };
  }
  // PGlite creates only the last directory of its path; a fresh checkout has no .data yet
  if (opts.pgliteDir) mkdirSync(opts.pgliteDir, { recursive: true });
  const lite = await PGlite.create(opts.pgliteDir ?? "memory://");
  // One connection: pglite-socket's multiplexer interleaves the extended-protocol messages of
  // concurrent connections (a Bind of one client lands on the Parse of another), so every
  // statement goes through a single connection, which is all PGlite can run at once anyway.
  const server = new PGLiteSocketServer({ db: lite, host: "127.0.0.1", port: 0, maxConnections: 2 });
  await server.start();
  const address = server.getServerConn();
  const url = `postgres://postgres@${address}/postgres?sslmode=disable`;
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  pool.on("error", () => undefined);
  await migrate(pool);
  return {
    pool,
    url,
    embedded: true,
    supportsListen: false,
    async close() {
      await pool.end();
      await server.stop();
      await lite.close();
    },
  };
}

const RETRYABLE = new Set([
  "40001", // serialization_failure
  "40P01", // deadlock_detected
  "23505", // unique_violation: a concurrent writer took the same aggregate version
]);

export function isRetryable(err: unknown): boolean {
  return typeof err === "object" && err !== null && RETRYABLE.has((err as { code?: string }).code ?? "");
}

/** Runs `fn` in one transaction, retrying it from the start on conflicts. */
export async function withTransaction<T>(pool: pg.Pool, fn: (tx: Tx) => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const client = await pool.connect();
    try {
      await client.query("BEGIN");
      const result = await fn(client);
      await client.query("COMMIT");
      return result;
    } catch (err) {
      await client.query("ROLLBACK").catch(() => undefined);
      if (attempt >= attempts || !isRetryable(err)) throw err;
      await new Promise((r) => setTimeout(r, 2 ** attempt + Math.random() * 10));
    } finally {
      client.release();
    }
  }
}
