import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ALL_SERVICES, type SagaMode, type ServiceName, type Transport } from "../services/shared/config.js";
import { openDatabase, type Database } from "../services/database/database.js";
import { startService, SYSTEM_PROCESS_NODE_FLAGS } from "../services/cluster.js";
import { freshPostgresDatabase, type FreshDatabase } from "./fresh-database.js";
import { removeNamespace } from "./broker-cleanup.js";
import { SEEDED_STOCK } from "./bench-scenarios.js";
import { cleanUpOnLeaving } from "./teardown.js";
import { readBackendCpu, readWalPosition, readProcessStats, type BackendCpu, type ProcessStats } from "./process-stats.js";

/**
 * One system under test, in child processes running the compiled build (dist/): `single` is one
 * process with every service, `cluster` one process per service. Each gets its own database
 * (a fresh PGlite directory, or a fresh database on the PostgreSQL server) seeded with the same
 * stock, and its own broker namespace, removed when it is disposed of.
 */

export type Topology = "single" | "cluster";

export interface SystemSpec {
  mode: SagaMode;
  transport: Transport;
  /** nats://… or amqp://…; unused in memory. */
  transporterUrl?: string;
  topology: Topology;
  /** A PostgreSQL server to create the cell's database on; undefined → embedded PGlite. */
  adminDatabaseUrl?: string;
  port: number;
  env: Record<string, string>;
  /** Where each process's log goes. */
  logDir: string;
  /** Options for node itself in every process of the system (the bench's `--cpu-prof DIR`). */
  execArgv?: string[];
  /** Keep the database when the system is disposed of (the bench's `--keep-data`). */
  keepDatabase?: boolean;
}

export interface RunningProcess {
  name: string;
  child: ChildProcess;
}

const distDir = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const MAIN = path.join(distDir, "services", "main.js");

interface CellDatabase {
  location: string;
  fresh?: FreshDatabase;
  pgliteDir?: string;
  /** Removes it (once); a no-op with `keepDatabase`. */
  remove(): Promise<void>;
}

/**
 * Creates the cell's database and seeds its stock; the system's own migration then finds it
 * ready. Its removal is registered from the moment it exists (unless it is to be kept).
 */
async function prepareDatabase(spec: SystemSpec): Promise<CellDatabase> {
  let fresh: FreshDatabase | undefined;
  let pgliteDir: string | undefined;
  if (spec.adminDatabaseUrl) fresh = freshPostgresDatabase(spec.adminDatabaseUrl, "saga_bench");
  else pgliteDir = fs.mkdtempSync(path.join(os.tmpdir(), "saga-bench-pglite-"));
  const remove = spec.keepDatabase
    ? async () => undefined
    : cleanUpOnLeaving(async () => {
        if (fresh) await fresh.drop().catch((err) => console.warn(`drop of ${fresh.name}: ${err}`));
        if (pgliteDir) fs.rmSync(pgliteDir, { recursive: true, force: true });
      });
  try {
    await fresh?.create();
    const db = fresh ? await openDatabase({ databaseUrl: fresh.url, poolSize: 1 }) : await openDatabase({ pgliteDir: pgliteDir! });
    try {
      for (const s of SEEDED_STOCK) {
        await db.pool.query("UPDATE warehouse.stock SET available = $2, reserved = 0 WHERE product_id = $1", [s.product_id, s.stock]);
      }
    } finally {
      await db.close();
    }
  } catch (err) {
    await remove();
    throw err;
  }
  return { location: fresh?.url ?? pgliteDir!, fresh, pgliteDir, remove };
}

/**
 * Every process of every system still running. Should the bench end without stopping them (a
 * `process.exit` elsewhere, an error its teardown could not survive), they get SIGTERM as it
 * exits: a system outliving its bench would hold its port, its database and its broker
 * subscriptions for good.
 */
const children = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
});

export class SystemUnderTest {
  readonly processes: RunningProcess[] = [];
  /** Set as the release begins: from then on the database is not opened again. */
  private releasing = false;
  /** The bench's own handles on the database (`openDatabase`), each settled when it is closed. */
  private readonly handles = new Set<Promise<void>>();
  /**
   * Stops the processes, removes the namespace and the database: once, by `dispose` or the
   * bench's teardown. The database goes after the bench's handles on it are closed: PGlite, its
   * directory removed under an open handle or before a handle opens it, makes its files again
   * (a new, empty database that nothing would remove).
   */
  private readonly release = cleanUpOnLeaving(async () => {
    this.releasing = true;
    await this.stop();
    if (this.spec.transporterUrl && this.spec.transport !== "memory") {
      await removeNamespace(this.spec.transporterUrl, this.namespace).catch((err) => console.warn(`broker clean-up of ${this.namespace}: ${err}`));
    }
    await Promise.all(this.handles);
    await this.database.remove();
  });

  private constructor(
    readonly spec: SystemSpec,
    readonly namespace: string,
    readonly database: CellDatabase,
  ) {}

  get baseUrl(): string {
    return `http://127.0.0.1:${this.spec.port}`;
  }

  static async start(spec: SystemSpec): Promise<SystemUnderTest> {
    if (!fs.existsSync(MAIN)) throw new Error(`${MAIN} is missing: run npm run build`);
    const namespace = `b${randomBytes(4).toString("hex")}`;
    const database = await prepareDatabase(spec);
    const sut = new SystemUnderTest(spec, namespace, database);
    fs.mkdirSync(spec.logDir, { recursive: true });
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      SAGA_MODE: spec.mode,
      TRANSPORTER: spec.transport === "memory" ? "memory" : spec.transporterUrl,
      NAMESPACE: namespace,
      NODE_ID_PREFIX: namespace,
      PORT: String(spec.port),
      LOG_LEVEL: "warn",
      ...spec.env,
    };
    delete env.DATABASE_URL;
    delete env.PGLITE_DIR;
    if (database.fresh) env.DATABASE_URL = database.fresh.url;
    else env.PGLITE_DIR = database.pgliteDir;
    try {
      if (spec.topology === "single") {
        const child = spawn(process.execPath, [...SYSTEM_PROCESS_NODE_FLAGS, ...(spec.execArgv ?? []), MAIN], { env: { ...env, NODE_ID: `${namespace}-all` }, stdio: ["ignore", "pipe", "pipe"] });
        sut.capture("all", child);
        sut.adopt("all", child);
      } else {
        const other = spec.mode === "orchestrated" ? "saga-watchdog" : "saga-orchestrator";
        const services = ALL_SERVICES.filter((s) => s !== other);
        for (const s of services) {
          const log = fs.createWriteStream(path.join(spec.logDir, `${s}.log`), { flags: "a" });
          const { child } = startService(s, env, (_svc: ServiceName, line) => log.write(`${line}\n`), spec.execArgv);
          sut.adopt(s, child);
        }
      }
      // a dozen processes starting at once on a small machine take their time
      await sut.waitHealthy(180_000);
    } catch (err) {
      await sut.dispose();
      throw err;
    }
    return sut;
  }

  private adopt(name: string, child: ChildProcess): void {
    this.processes.push({ name, child });
    children.add(child);
    child.once("exit", () => children.delete(child));
  }

  private capture(name: string, child: ChildProcess): void {
    const log = fs.createWriteStream(path.join(this.spec.logDir, `${name}.log`), { flags: "a" });
    createInterface({ input: child.stdout! }).on("line", (l) => log.write(`${l}\n`));
    createInterface({ input: child.stderr! }).on("line", (l) => log.write(`${l}\n`));
  }

  private async waitHealthy(timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    let last = "no answer";
    while (Date.now() < until) {
      const dead = this.processes.find((p) => p.child.exitCode !== null);
      if (dead) throw new Error(`${dead.name} exited with code ${dead.child.exitCode} while starting; see ${this.spec.logDir}`);
      try {
        const res = await fetch(`${this.baseUrl}/health`, { signal: AbortSignal.timeout(5_000) });
        const body = (await res.json()) as { status?: string; missing?: string[] };
        if (res.ok && body.status === "ok") return;
        last = `${res.status} ${JSON.stringify(body.missing ?? body.status)}`;
      } catch (err) {
        last = (err as Error).message;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`the system did not become healthy in ${timeoutMs / 1000} s (${last}); see ${this.spec.logDir}`);
  }

  /** CPU seconds so far and peak RSS of every process. */
  stats(): ProcessStats[] {
    return this.processes.map((p) => readProcessStats(p.name, p.child.pid!));
  }

  /**
   * CPU so far of the PostgreSQL backends serving the cell's database; null on PGlite (it runs
   * inside the system's process, whose CPU includes it) or on a server elsewhere.
   */
  backendCpu(): Promise<BackendCpu | null> {
    return this.database.fresh ? readBackendCpu(this.database.fresh.url) : Promise.resolve(null);
  }

  /** The PostgreSQL server's WAL position (bytes); null on PGlite. */
  walPosition(): Promise<number | null> {
    return this.database.fresh ? readWalPosition(this.database.fresh.url) : Promise.resolve(null);
  }

  /** Stops every process (SIGTERM, then SIGKILL after 15 s). */
  async stop(): Promise<void> {
    await Promise.all(
      this.processes.map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.child.exitCode !== null || p.child.signalCode !== null) return resolve();
            const timer = setTimeout(() => p.child.kill("SIGKILL"), 15_000);
            p.child.once("exit", () => {
              clearTimeout(timer);
              resolve();
            });
            p.child.kill("SIGTERM");
          }),
      ),
    );
  }

  /**
   * Opens the cell's database (after `stop` for PGlite, whose files only one process may hold);
   * refused once the system is being released. Its removal waits for this handle's `close`.
   */
  async openDatabase(): Promise<Database> {
    if (this.releasing) throw new Error(`the cell's database is being removed (${this.database.location})`);
    let settle!: () => void;
    const handle = new Promise<void>((resolve) => (settle = resolve));
    this.handles.add(handle);
    const done = () => {
      this.handles.delete(handle);
      settle();
    };
    try {
      const db = this.database.fresh
        ? await openDatabase({ databaseUrl: this.database.fresh.url, poolSize: 2 })
        : await openDatabase({ pgliteDir: this.database.pgliteDir });
      return { ...db, close: () => db.close().finally(done) };
    } catch (err) {
      done();
      throw err;
    }
  }

  /** Stops what still runs, removes the namespace from the broker and, unless kept, the database. */
  dispose(): Promise<void> {
    return this.release();
  }
}
