import pg from "pg";
import type { LoggerInstance } from "moleculer";
import type { PgEventStore, StoredEvent } from "./pg-event-store.js";
import { ownListeners, type Database } from "../database/database.js";
import { onCommitted } from "./commit-signal.js";
import { sharedReads, type SharedReads } from "./shared-reads.js";

export interface FollowerOptions {
  name: string;
  db: Database;
  store: PgEventStore;
  logger: LoggerInstance;
  pollMs: number;
  batchSize?: number;
  /** Handles one batch in position order and records `upTo` as its checkpoint. */
  handle(events: StoredEvent[], upTo: number): Promise<void>;
  /** Where the last run stopped; by default the event store's checkpoint of this name. */
  checkpoint?(): Promise<number>;
  /** Only one process may follow under this lock (the relay); projections need none. */
  advisoryLock?: number;
}

/** Longest wait before looking again at events held back by a running transaction. */
const HELD_BACK_MAX_MS = 16;

/**
 * Follows the event store from a checkpoint: reads gap-free batches, hands them on, sleeps until
 * woken by a local commit, a PostgreSQL NOTIFY or the poll timer. The followers of one process
 * share their reads (`SharedReads`).
 */
export class EventFollower {
  private running = false;
  private wakeUp: (() => void) | null = null;
  private pending = false;
  private loop: Promise<void> | null = null;
  private listener: pg.Client | null = null;
  private listenerPid: number | undefined;
  private lockClient: pg.PoolClient | null = null;
  private unsubscribe: (() => void) | null = null;
  private readonly reads: SharedReads;
  /** When this follower last got a reason to read: a read it takes must have started after. */
  private wokenAt: number;
  position = 0;

  constructor(private readonly opts: FollowerOptions) {
    this.reads = sharedReads(opts.store);
    this.wokenAt = this.reads.stamp();
  }

  async start(): Promise<void> {
    this.running = true;
    this.unsubscribe = onCommitted(() => this.wake());
    if (this.opts.db.supportsListen) await this.listen();
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.unsubscribe?.();
    this.wake();
    await this.loop;
    if (this.listenerPid !== undefined) ownListeners.delete(this.listenerPid);
    await this.listener?.end().catch(() => undefined);
    if (this.lockClient) {
      await this.lockClient.query("SELECT pg_advisory_unlock($1)", [this.opts.advisoryLock]).catch(() => undefined);
      this.lockClient.release();
    }
  }

  wake(): void {
    this.pending = true;
    this.wokenAt = this.reads.stamp();
    this.wakeUp?.();
  }

  private async listen(): Promise<void> {
    const client = new pg.Client({ connectionString: this.opts.db.url });
    client.on("error", (err) => this.opts.logger.warn(`${this.opts.name}: LISTEN connection lost: ${err.message}`));
    client.on("notification", () => this.wake());
    await client.connect();
    // asked first: other processes recognise a listener by its last statement being the LISTEN
    this.listenerPid = (await client.query("SELECT pg_backend_pid() AS pid")).rows[0].pid as number;
    ownListeners.add(this.listenerPid);
    await client.query("LISTEN event_store");
    this.listener = client;
  }

  /** Holds the advisory lock on a dedicated connection; a standby keeps trying. */
  private async acquireLock(): Promise<boolean> {
    // the embedded database serves one process only, and its single connection must stay free
    if (this.opts.advisoryLock === undefined || this.lockClient || this.opts.db.embedded) return true;
    const client = await this.opts.db.pool.connect();
    const { rows } = await client.query("SELECT pg_try_advisory_lock($1) AS ok", [this.opts.advisoryLock]);
    if (rows[0].ok) {
      this.lockClient = client;
      this.opts.logger.info(`${this.opts.name}: took the lead`);
      return true;
    }
    client.release();
    return false;
  }

  private sleep(ms: number): Promise<void> {
    if (this.pending) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.wokenAt = this.reads.stamp(); // a poll: a read from before it will not do
        done();
      }, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeUp = done;
    }).then(() => {
      this.wakeUp = null;
    });
  }

  private async run(): Promise<void> {
    let loaded = false;
    let failures = 0;
    let heldBack = 0;
    const batchSize = this.opts.batchSize ?? 500;
    while (this.running) {
      try {
        if (!(await this.acquireLock())) {
          await this.sleep(Math.max(this.opts.pollMs, 1000));
          continue;
        }
        if (!loaded) {
          this.position = await (this.opts.checkpoint ? this.opts.checkpoint() : this.opts.store.checkpoint(this.opts.name));
          loaded = true;
        }
        this.pending = false;
        const { events, heldBack: waiting, more } = await this.reads.follow(this.position, batchSize, this.wokenAt);
        // committed events behind a transaction still running: look again soon, not at the next poll
        heldBack = waiting ? heldBack + 1 : 0;
        if (events.length === 0) {
          await this.sleep(heldBack > 0 ? Math.min(2 ** heldBack, HELD_BACK_MAX_MS, this.opts.pollMs) : this.opts.pollMs);
          continue;
        }
        const upTo = events[events.length - 1].position;
        await this.opts.handle(events, upTo);
        this.position = upTo;
        failures = 0;
        // A full batch may have more behind it, and held-back events come soon: read on. After a
        // short batch, sleep: the read saw every commit signalled before it, and a commit since
        // has set `pending`, so the sleep ends at once (reading on regardless cost every follower
        // one empty read per commit)
        if (!more && heldBack === 0) await this.sleep(this.opts.pollMs);
        else this.wokenAt = this.reads.stamp();
      } catch (err) {
        if (!this.running) break;
        failures++;
        this.opts.logger.error(`${this.opts.name}: ${String(err)}; retrying`);
        loaded = false; // re-read the checkpoint: the batch may have been half handled
        await this.sleep(Math.min(100 * 2 ** failures, 5_000));
      }
    }
  }
}
