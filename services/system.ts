import { ServiceBroker, type LoggerConfig, type ServiceSchema } from "moleculer";
import type { Config, ServiceName } from "./shared/config.js";
import { openDatabase, type Database } from "./shared/database.js";
import { channelsMiddleware, duplicateDeliveryMiddleware, transporterOptions } from "./shared/messaging.js";
import type { ServiceDeps } from "./shared/service-deps.js";
import { PgEventStore } from "./event-store/pg-event-store.js";
import { eventStoreService } from "./event-store/event-store.service.js";
import { usersService } from "./users/users.service.js";
import { productsService } from "./products/products.service.js";
import { cartsService } from "./carts/carts.service.js";
import { ordersService } from "./orders/orders.service.js";
import { warehouseService } from "./warehouse/warehouse.service.js";
import { paymentsService } from "./payments/payments.service.js";
import { shippingService } from "./shipping/shipping.service.js";
import { notificationsService } from "./notifications/notifications.service.js";
import { projectionsService } from "./projections/projections.service.js";
import { gatewayService, openGatewayPort } from "./gateway/gateway.service.js";
import { sagaStyle } from "../sagas/index.js";
import { registerSagaMetrics } from "../observability/metrics.js";

export interface System {
  config: Config;
  broker: ServiceBroker;
  db: Database;
  store: PgEventStore;
  /** The services this process runs. */
  services: ServiceName[];
  start(): Promise<void>;
  /**
   * Stops in order: no new requests (the gateway closes its port), then the services, each
   * draining what it is handling (actions, channel messages, the relay), then the broker and
   * database connections. `onStep` hears one line per stage.
   */
  stop(onStep?: (step: string) => void): Promise<void>;
}

export interface SystemOptions {
  /** Use this database instead of opening one (tests share one across brokers). */
  db?: Database;
  logger?: LoggerConfig | boolean;
}

/**
 * The one place where the pieces are wired: database, event store, saga style, transport and
 * the services this process runs (`SERVICES`, all by default).
 */
export async function createSystem(config: Config, opts: SystemOptions = {}): Promise<System> {
  // misuse is refused before anything is touched: a port in use, then a database in use
  const server = config.services.includes("gateway") ? await openGatewayPort(config.host, config.port) : undefined;
  let db: Database;
  try {
    db = opts.db ?? (await openDatabase({ databaseUrl: config.databaseUrl, pgliteDir: config.pgliteDir }));
  } catch (err) {
    server?.close();
    throw err;
  }
  const store = new PgEventStore(db.pool);
  const style = sagaStyle(config.sagaMode, { config, db, store });
  const deps: ServiceDeps = { config, db, store, drive: style.drive };

  const factories: Partial<Record<ServiceName, () => ServiceSchema>> = {
    "event-store": () => eventStoreService(deps),
    users: () => usersService(deps),
    products: () => productsService(deps),
    carts: () => cartsService(deps),
    orders: () => ordersService(deps),
    warehouse: () => warehouseService(deps),
    payments: () => paymentsService(deps),
    shipping: () => shippingService(deps),
    notifications: () => notificationsService(deps),
    projections: () => projectionsService(deps),
    gateway: () => gatewayService(deps, server!),
    ...style.services,
  };

  // the channel adapters register one internal service per subscription: keep those quiet
  const logLevels = { "$CHANNEL**": "warn", REGISTRY: "warn", "**": config.logLevel } as const;
  const broker = new ServiceBroker({
    namespace: config.namespace,
    nodeID: config.nodeId,
    transporter: transporterOptions(config),
    logger: opts.logger ?? { type: "Console", options: { level: logLevels, formatter: "short", colors: process.stdout.isTTY } },
    logLevel: logLevels,
    requestTimeout: 10_000,
    // the process's signal handlers (main.ts) decide when to stop; a second, concurrent stop by
    // Moleculer's own handlers drained the NATS connection twice and released pg clients twice
    skipProcessEventRegistration: true,
    // broker.stop() waits for the action calls in progress
    tracking: { enabled: true, shutdownTimeout: 10_000 },
    // Moleculer's own tracing stays off: spans come from the OpenTelemetry middleware
    tracing: false,
    // the saga metrics are read through the gateway's /metrics (observability/metrics.ts)
    metrics: { enabled: true, reporter: [] },
    middlewares: [channelsMiddleware(config), ...(config.duplicateDelivery ? [duplicateDeliveryMiddleware()] : [])],
  });

  registerSagaMetrics(broker);

  const running = config.services.filter((name) => factories[name]);
  for (const name of running) broker.createService(factories[name]!());

  return {
    config,
    broker,
    db,
    store,
    services: running,
    start: () => broker.start(),
    async stop(onStep = () => undefined) {
      const gateway = broker.getLocalService("gateway") as unknown as { stopListening?: () => Promise<void> } | undefined;
      if (gateway?.stopListening) {
        await gateway.stopListening();
        onStep("the gateway takes no more requests; those in progress were answered");
      }
      await broker.stop();
      onStep("services stopped, messages and calls in progress drained, broker disconnected");
      if (!opts.db) {
        await db.close();
        onStep("database closed");
      }
    },
  };
}
