import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import { isCommandType, type MessageType } from "../../services/shared/catalogue.js";
import { loadConfig, type Config, type SagaMode } from "../../services/shared/config.js";
import type { Database } from "../../services/shared/database.js";
import { createSystem, type System } from "../../services/system.js";
import type { OrderAccepted, OrderRequest } from "../../services/orders/orders.service.js";
import type { OrderView } from "../../services/projections/order-projection.js";
import type { StoredEvent } from "../../services/event-store/pg-event-store.js";

export interface HarnessOptions {
  mode: SagaMode;
  env?: Record<string, string>;
  db?: Database;
}

export interface ProductSeed {
  id: number;
  name?: string;
  price: number;
  stock: number;
}

const POLL_MS = 20;
const SETTLE_TIMEOUT_MS = 10_000;

/**
 * One whole checkout system in this process (in-memory transport, PGlite in memory unless a
 * database is given), with the helpers the behaviour suites need.
 */
export class CheckoutHarness {
  private constructor(
    readonly system: System,
    readonly config: Config,
  ) {}

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
    return new CheckoutHarness(system, config);
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
    await this.system.stop();
  }

  async seedProducts(products: ProductSeed[]): Promise<void> {
    for (const p of products) {
      await this.pool.query(
        "INSERT INTO products.products (id, name, price) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET price = $3",
        [p.id, p.name ?? `Test product ${p.id}`, p.price],
      );
      await this.pool.query(
        "INSERT INTO warehouse.stock (product_id, available) VALUES ($1, $2) ON CONFLICT (product_id) DO UPDATE SET available = $2, reserved = 0",
        [p.id, p.stock],
      );
    }
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
    const deadline = Date.now() + SETTLE_TIMEOUT_MS;
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
    throw new Error(`${accepted.order_id} did not settle within ${SETTLE_TIMEOUT_MS} ms; events so far: ${seen.join(", ")}`);
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

  async eventCount(): Promise<number> {
    return this.system.store.count();
  }
}
