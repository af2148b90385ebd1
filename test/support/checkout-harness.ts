import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import { isCommandType, type MessageType } from "../../services/shared/catalogue.js";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ALL_SERVICES, loadConfig, type Config, type SagaMode, type ServiceName } from "../../services/shared/config.js";
import { openDatabase, type Database } from "../../services/database/database.js";
import { startService, type ClusterProcess } from "../../services/cluster.js";
import { freshPostgresDatabase } from "./infrastructure.js";
import { removeNamespace } from "../../bench/broker-cleanup.js";
import { createSystem, type System } from "../../services/system.js";
import type { OrderAccepted, OrderRequest } from "../../services/orders/orders.service.js";
import type { OrderView } from "../../services/projections/order-projection.js";
import type { StoredEvent } from "../../services/event-store/pg-event-store.js";

export interface HarnessOptions {
  mode: SagaMode;
  env?: Record<string, string>;
  db?: Database;
  /** Runs after the system has stopped (to remove what the test made for it). */
  dispose?: () => Promise<void>;
}

export interface ClusterOptions {
  mode: SagaMode;
  /** nats://… or amqp://… */
  transporter: string;
  env?: Record<string, string>;
}

export interface ProductSeed {
  id: number;
  name?: string;
  price: number;
  stock: number;
}

const POLL_MS = 20;
/** In-process a checkout settles in well under a second; a crashed consumer's messages come back after the broker's ack wait (10 s). */
const SETTLE_TIMEOUT_MS = { local: 15_000, cluster: 60_000 };

/**
 * One whole checkout system in this process (in-memory transport, PGlite in memory unless a
 * database is given), with the helpers the behaviour suites need.
 */
export class CheckoutHarness {
  /** In cluster mode: the service processes, by service. */
  readonly processes = new Map<ServiceName, ClusterProcess>();
  private clusterEnv: NodeJS.ProcessEnv = {};
  private cleanup: (() => Promise<void>)[] = [];
  /** The last lines each service process printed, for failure messages. */
  readonly logs = new Map<ServiceName, string[]>();

  private constructor(
    readonly system: System,
    readonly config: Config,
  ) {}

  /**
   * One process per service over a real broker and a fresh PostgreSQL database; this process
   * runs only a client broker (SERVICES=none) to place orders and read results.
   */
  static async startCluster(opts: ClusterOptions): Promise<CheckoutHarness> {
    const fresh = await freshPostgresDatabase();
    const namespace = `t${randomBytes(4).toString("hex")}`;
    const env: Record<string, string> = {
      SAGA_MODE: opts.mode,
      TRANSPORTER: opts.transporter,
      DATABASE_URL: fresh.url,
      NAMESPACE: namespace,
      LOG_LEVEL: "warn",
      RELAY_POLL_MS: "200",
      PORT: "0",
      NODE_ID_PREFIX: namespace,
      ...opts.env,
    };
    const db = await openDatabase({ databaseUrl: fresh.url, poolSize: 5 });
    const config = loadConfig({ ...env, SERVICES: "none" });
    const system = await createSystem(config, { db, logger: false });
    const h = new CheckoutHarness(system, config);
    h.clusterEnv = { ...process.env, ...env };
    h.cleanup.push(async () => {
      await db.close();
      await fresh.drop();
      await removeNamespace(opts.transporter, namespace).catch((err) => console.warn(`broker clean-up of ${namespace}: ${err}`));
    });
    const services = ALL_SERVICES.filter(
      (s) => s !== "gateway" && (opts.mode === "orchestrated" ? s !== "saga-watchdog" : s !== "saga-orchestrator"),
    );
    for (const s of services) h.spawn(s);
    try {
      await system.start();
      await system.broker.waitForServices([...services], 60_000);
    } catch (err) {
      // the caller never gets the harness to stop: end the processes and remove what was made
      await h.stop().catch(() => undefined);
      throw err;
    }
    return h;
  }

  /** Where each service process's whole log goes (one file per service). */
  get logDir(): string {
    return path.join(os.tmpdir(), "saga-bench-logs", this.config.namespace);
  }

  private spawn(service: ServiceName): void {
    fs.mkdirSync(this.logDir, { recursive: true });
    const file = fs.createWriteStream(path.join(this.logDir, `${service}.log`), { flags: "a" });
    const proc = startService(service, this.clusterEnv, (svc, line) => {
      file.write(`${line}\n`);
      const lines = this.logs.get(svc) ?? [];
      lines.push(line);
      if (lines.length > 400) lines.shift();
      this.logs.set(svc, lines);
    });
    this.processes.set(service, proc);
  }

  /** `kill -9` one service's process. */
  async crash(service: ServiceName): Promise<void> {
    const proc = this.processes.get(service);
    if (!proc || proc.child.exitCode !== null) return;
    const exited = new Promise((r) => proc.child.once("exit", r));
    proc.child.kill("SIGKILL");
    await exited;
  }

  /** Starts a crashed service again and waits until the others see it. */
  async restart(service: ServiceName): Promise<void> {
    this.spawn(service);
    await this.broker.waitForServices([service], 60_000);
  }

  static async start(opts: HarnessOptions): Promise<CheckoutHarness> {
    const config = loadConfig({
      SAGA_MODE: opts.mode,
      PGLITE_DIR: "memory",
      PORT: "0",
      LOG_LEVEL: "error",
      RELAY_POLL_MS: "200",
      ...opts.env,
    });
    const system = await createSystem(config, { db: opts.db, logger: false });
    await system.start();
    const h = new CheckoutHarness(system, config);
    if (opts.dispose) h.cleanup.push(opts.dispose);
    return h;
  }

  get broker() {
    return this.system.broker;
  }

  get pool() {
    return this.system.db.pool;
  }

  /** Base URL of the gateway (it listens on a free port). */
  get baseUrl(): string {
    const gateway = this.broker.getLocalService("gateway") as unknown as { server: Server };
    const { port } = gateway.server.address() as AddressInfo;
    return `http://127.0.0.1:${port}`;
  }

  async stop(): Promise<void> {
    const exits = [...this.processes.values()]
      .filter((p) => p.child.exitCode === null && p.child.signalCode === null)
      .map((p) => {
        const exited = new Promise((r) => p.child.once("exit", r));
        p.child.kill("SIGTERM");
        const force = setTimeout(() => p.child.kill("SIGKILL"), 10_000);
        return exited.finally(() => clearTimeout(force));
      });
    await Promise.all(exits);
    await this.system.stop();
    for (const c of this.cleanup) await c();
  }

  async seedProducts(products: ProductSeed[]): Promise<void> {
    await seedProducts(this.pool, products);
  }

  placeOrder(body: OrderRequest & Record<string, unknown>, idempotency_key?: string): Promise<OrderAccepted> {
    return this.broker.call("orders.create", { body, idempotency_key });
  }

  async events(correlationId: string): Promise<StoredEvent[]> {
    return this.system.store.byCorrelation(correlationId);
  }

  /** The business events of a checkout, in order (the orchestrator's commands left out). */
  async businessEvents(correlationId: string): Promise<MessageType[]> {
    return (await this.events(correlationId)).filter((e) => !isCommandType(e.event_type)).map((e) => e.event_type);
  }

  /**
   * Waits until the saga is over: cancelled (compensations run before the cancellation), or
   * confirmed and notified; then until the read model shows it.
   */
  async settle(accepted: OrderAccepted): Promise<OrderView> {
    const timeout = this.processes.size > 0 ? SETTLE_TIMEOUT_MS.cluster : SETTLE_TIMEOUT_MS.local;
    const deadline = Date.now() + timeout;
    while (Date.now() < deadline) {
      const types = await this.businessEvents(accepted.correlation_id);
      if (types.includes("OrderCancelled") || types.includes("NotificationSent")) {
        const view = await this.broker.call<OrderView | null, { correlation_id: string }>("projections.byCorrelation", {
          correlation_id: accepted.correlation_id,
        });
        if (view && view.status !== "pending" && (view.status === "cancelled" || view.notified)) return view;
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    const seen = await this.businessEvents(accepted.correlation_id);
    throw new Error(`${accepted.order_id} did not settle within ${timeout} ms; events so far: ${seen.join(", ")}`);
  }

  async checkout(body: OrderRequest & Record<string, unknown>): Promise<{ accepted: OrderAccepted; view: OrderView }> {
    const accepted = await this.placeOrder(body);
    return { accepted, view: await this.settle(accepted) };
  }

  async stock(productId: number): Promise<{ available: number; reserved: number }> {
    const { rows } = await this.pool.query("SELECT available, reserved FROM warehouse.stock WHERE product_id = $1", [productId]);
    return rows[0];
  }

  async reservations(orderId: string): Promise<{ product_id: number; quantity: number; status: string }[]> {
    const { rows } = await this.pool.query(
      "SELECT product_id, quantity, status FROM warehouse.reservations WHERE order_id = $1 ORDER BY product_id",
      [orderId],
    );
    return rows;
  }

  async payment(orderId: string): Promise<{ status: string; amount: number } | null> {
    const { rows } = await this.pool.query("SELECT status, amount::float8 AS amount FROM payments.payments WHERE order_id = $1", [orderId]);
    return rows[0] ?? null;
  }

  async order(orderId: string): Promise<{ status: string; cancellation_reason: string | null }> {
    const { rows } = await this.pool.query("SELECT status, cancellation_reason FROM orders.orders WHERE order_id = $1", [orderId]);
    return rows[0];
  }

  /** The sum of this process's counter series whose labels include `labels`. */
  counter(name: string, labels: Record<string, string> = {}): number {
    const metric = this.broker.metrics.getMetric(name) as unknown as { snapshot(): { labels: Record<string, string>; value: number }[] } | null;
    return (metric?.snapshot() ?? [])
      .filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want))
      .reduce((n, v) => n + v.value, 0);
  }

  async eventCount(): Promise<number> {
    return this.system.store.count();
  }
}

/** Test products with their stock, in any system's database (a harness's, or an embedded one the test opened). */
export async function seedProducts(pool: Database["pool"], products: ProductSeed[]): Promise<void> {
  for (const p of products) {
    await pool.query(
      "INSERT INTO products.products (id, name, price) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET price = $3",
      [p.id, p.name ?? `Test product ${p.id}`, p.price],
    );
    await pool.query(
      "INSERT INTO warehouse.stock (product_id, available) VALUES ($1, $2) ON CONFLICT (product_id) DO UPDATE SET available = $2, reserved = 0",
      [p.id, p.stock],
    );
  }
}
