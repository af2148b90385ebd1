import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from "node:fs";
import path from "node:path";
import v8 from "node:v8";
import pg from "pg";
// PGlite is loaded only by a process that runs it (openEmbedded), not by every service process
import { PGliteStream } from "./pglite-stream.js";
import { initializeDirectory, pristineCluster } from "./pglite-template.js";
import { migrate } from "./schema.js";


export type Tx = pg.PoolClient;

/** Distinct statements one connection prepares at most; any further one is planned every time. */
const MAX_PREPARED = 500;
let connections = 0;

/**
 * Every statement with parameters becomes a named prepared statement of its connection, so the
 * server plans it once per connection instead of on every execution. Planning cost more than
 * running for the statements of every hop (PostgreSQL: about 1 ms against 0.3 ms for a
 * follower's read; PGlite, in WebAssembly: 2.1 ms against 0.6 ms). The names are unique per
 * connection object: PGlite's one session outlives the pool's connections, and a reconnected
 * client must not prepare a name that session already holds.
 *
 * Every statement sent is counted in `sent` as well (BEGIN and COMMIT too): each is a round trip
 * to the database, the unit a hop's cost is made of (the bench reports them per saga).
 */
function prepareStatements(client: pg.PoolClient, sent: { statements: number }): void {
  const id = ++connections;
  const names = new Map<string, string>();
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  (client as unknown as { query: (...args: unknown[]) => unknown }).query = (config: unknown, values?: unknown, callback?: unknown) => {
    sent.statements++;
    if (typeof config === "string" && Array.isArray(values) && values.length > 0) {
      let name = names.get(config);
      if (!name && names.size < MAX_PREPARED) names.set(config, (name = `q${id}_${names.size}`));
      if (name) return callback === undefined ? query({ name, text: config, values }) : query({ name, text: config, values }, callback);
    }
    return query(config, values, callback);
  };
}

export type Queryable = pg.Pool | pg.PoolClient;

export interface Database {
  pool: pg.Pool;
  /** Connection string the pool uses (the embedded database has none: its connection is in process). */
  url: string;
  embedded: boolean;
  /** LISTEN/NOTIFY works across processes only on a real PostgreSQL server. */
  supportsListen: boolean;
  /** Statements this process has sent through the pool so far, each one round trip (BEGIN and COMMIT count). */
  statements(): number;
  close(): Promise<void>;
}

// pg returns BIGINT as string by default; positions fit comfortably in a JS number.
pg.types.setTypeParser(20, (v) => Number(v));

const PGLITE_SHARED_BUFFERS = "16MB";

export interface OpenDatabaseOptions {
  databaseUrl?: string;
  pgliteDir?: string;
  poolSize?: number;
  /** Where to say that a stale lock was taken over (default: stderr). */
  log?: (line: string) => void;
}

/** Another live process holds the embedded database's directory. */
export class DatabaseLockedError extends Error {}

const LOCK_FILE = "saga-bench.lock";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * PGlite is one process's database: a second process on the same directory corrupts it. The
 * lock file is created exclusively (O_EXCL) with the owner's pid before PGlite opens anything; a
 * lock whose process is gone is taken over, and said so.
 */
export function lockDirectory(dir: string, log: (line: string) => void): () => void {
  const file = path.join(dir, LOCK_FILE);
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(file, "wx");
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => {
        try {
          if (readFileSync(file, "utf8").trim() === String(process.pid)) unlinkSync(file);
        } catch {
          // already gone
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST" || attempt > 0) throw err;
    }
    const owner = Number(readFileSync(file, "utf8").trim());
    if (Number.isInteger(owner) && owner > 0 && alive(owner)) {
      throw new DatabaseLockedError(
        `the embedded database in ${dir} is in use by process ${owner} (another npm start?); stop that one, or set PGLITE_DIR to another directory (or PGLITE_DIR=memory)`,
      );
    }
    log(`taking over the embedded database in ${dir}: its lock was left by process ${Number.isInteger(owner) ? owner : "?"}, which is no longer running`);
    unlinkSync(file);
  }
}

/**
 * With a URL, connects to that PostgreSQL server. Without one, starts PGlite (PostgreSQL compiled
 * to WebAssembly) in this process and connects `pg` to it through a stream (`PGliteStream`), so
 * the same `pg` code runs with nothing installed.
 */
export async function openDatabase(opts: OpenDatabaseOptions): Promise<Database> {
  if (opts.databaseUrl) {
    const pool = new pg.Pool({ connectionString: opts.databaseUrl, max: opts.poolSize ?? 10 });
    pool.on("error", () => undefined); // idle-client errors surface on the next query instead
    const sent = { statements: 0 };
    pool.on("connect", (client) => prepareStatements(client, sent));
    await pool.query("SELECT 1");
    await migrate(pool, { embedded: false });
    notifiers.set(pool, new CommitNotifier(pool));
    return {
      pool,
      url: opts.databaseUrl,
      embedded: false,
      supportsListen: true,
      statements: () => sent.statements,
      close: () => pool.end(),
    };
  }
  // PGlite creates only the last directory of its path; a fresh checkout has no .data yet
  if (opts.pgliteDir) mkdirSync(opts.pgliteDir, { recursive: true });
  const unlock = opts.pgliteDir ? lockDirectory(opts.pgliteDir, opts.log ?? ((l) => console.warn(`saga-bench: ${l}`))) : () => undefined;
  try {
    return await openEmbedded(opts.pgliteDir, unlock);
  } catch (err) {
    unlock();
    throw err;
  }
}

/**
 * Two V8 flags for the process that runs PGlite, set before PGlite's module is compiled (README:
 * Design decisions, and Performance for the measurements). The flags are V8's and process-wide; a
 * V8 without one says so on stderr and runs as before.
 * - `--liftoff-only`: PGlite's WebAssembly runs as V8's baseline compiler (Liftoff) makes it,
 *   without tiering hot functions up to its optimising compiler (TurboFan). Those compilations
 *   ran on background threads and peaked at 92 MB of V8's malloc'd memory while the database
 *   started, which glibc then kept: the idle process held 259 MB, 197 MB without them, at the
 *   same throughput and CPU under the bench.
 * - `--heap-growing-percent=50`: the JavaScript heap grows to at most 1.5 times what the last
 *   major collection left alive before the next one, where V8 would let it grow further under
 *   load. The process's peak under a closed loop fell from 328-345 MB to 236-247 MB, at the same
 *   throughput and CPU.
 */
const EMBEDDED_V8_FLAGS = ["--liftoff-only", "--heap-growing-percent=50"];

async function openEmbedded(pgliteDir: string | undefined, unlock: () => void): Promise<Database> {
  // a new database starts from the template: a directory gets it unpacked by another process
  if (pgliteDir) await initializeDirectory(pgliteDir);
  const loadDataDir = pgliteDir ? undefined : await pristineCluster();
  for (const flag of EMBEDDED_V8_FLAGS) v8.setFlagsFromString(flag);
  // PGlite's WebAssembly memory only grows; its default 128 MB of shared buffers is most of
  // what it holds beyond its own start-up, and one process's working set needs far less
  const { PGlite } = await import("@electric-sql/pglite");
  const lite = await PGlite.create(pgliteDir ?? "memory://", { loadDataDir, postgresqlconf: [`shared_buffers=${PGLITE_SHARED_BUFFERS}`] });
  // One connection, straight into PGlite (no socket): PGlite runs one session, and every
  // statement of the process goes through it in turn
  const url = "pglite://in-process";
  const pool = new pg.Pool({ user: "postgres", database: "postgres", max: 1, stream: () => new PGliteStream(lite) } as pg.PoolConfig);
  pool.on("error", () => undefined);
  const sent = { statements: 0 };
  pool.on("connect", (client) => prepareStatements(client, sent));
  await migrate(pool, { embedded: true });
  return {
    pool,
    url,
    embedded: true,
    supportsListen: false,
    statements: () => sent.statements,
    async close() {
      await pool.end();
      await lite.close();
      unlock();
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

/** Transactions that appended to the event store and have not ended yet. */
const appending = new WeakSet<Tx>();

/** Called by the event store: once this transaction commits, followers in other processes are woken. */
export function markAppended(tx: Tx): void {
  appending.add(tx);
}

/** Backend pids of the LISTEN connections of this process's followers (they are woken in-process). */
export const ownListeners = new Set<number>();

/**
 * Wakes followers in other processes (LISTEN event_store) after commits that appended. The NOTIFY
 * is sent after the commit, in its own statement, not inside the appending transaction: a
 * transaction that notifies holds a server-wide lock through its commit, which would make every
 * appending commit on the server take turns. One NOTIFY at a time per pool, and one more for all
 * the commits that happened while it was under way; none while no other process listens (every
 * follower is in this process and woken in-process), which is looked up every few seconds.
 */
class CommitNotifier {
  private busy = false;
  private again = false;
  private othersListen = true;
  private checkedAt = 0;
  constructor(private readonly pool: pg.Pool) {}

  wake(): void {
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    this.notify()
      .catch(() => undefined) // a missed wake-up costs one poll interval
      .finally(() => {
        this.busy = false;
        if (this.again) {
          this.again = false;
          this.wake();
        }
      });
  }

  private async notify(): Promise<void> {
    if (Date.now() - this.checkedAt > LISTENERS_CHECK_MS) {
      this.checkedAt = Date.now();
      const { rows } = await this.pool.query(
        `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
            AND query = 'LISTEN event_store' AND pid <> ALL($1::int[])) AS others`,
        [[...ownListeners]],
      );
      this.othersListen = rows[0].others as boolean;
    }
    if (this.othersListen) await this.pool.query("SELECT pg_notify('event_store', '')");
  }
}
const LISTENERS_CHECK_MS = 2_000;
const notifiers = new WeakMap<pg.Pool, CommitNotifier>();

/** Runs `fn` in one transaction, retrying it from the start on conflicts. */
export async function withTransaction<T>(pool: pg.Pool, fn: (tx: Tx) => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const client = await pool.connect();
    try {
      await client.query("BEGIN");
      const result = await fn(client);
      await client.query("COMMIT");
      if (appending.delete(client)) notifiers.get(pool)?.wake();
      return result;
    } catch (err) {
      appending.delete(client);
      await client.query("ROLLBACK").catch(() => undefined);
      if (attempt >= attempts || !isRetryable(err)) throw err;
      await new Promise((r) => setTimeout(r, 2 ** attempt + Math.random() * 10));
    } finally {
      client.release();
    }
  }
}

/**
 * Inserts rows in one statement, leaving out each row whose key is taken (`ON CONFLICT DO
 * NOTHING`); returns the `returning` columns of those inserted. The rows go as one jsonb array,
 * each value read as the type of its column in `table`; every row has the first row's keys.
 * `table`, the keys and `returning` are the caller's constants, never input.
 */
export async function insertNew(tx: Queryable, table: string, rows: readonly Record<string, unknown>[], returning: string): Promise<Record<string, unknown>[]> {
  if (rows.length === 0) return [];
  const columns = Object.keys(rows[0]!).join(", ");
  const { rows: inserted } = await tx.query(
    `INSERT INTO ${table} (${columns}) SELECT ${columns} FROM jsonb_populate_recordset(NULL::${table}, $1::jsonb)
     ON CONFLICT DO NOTHING RETURNING ${returning}`,
    [JSON.stringify(rows)],
  );
  return inserted;
}
