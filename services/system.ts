import { INTERNAL_MIDDLEWARES, ServiceBroker, type LoggerConfig, type ServiceSchema } from "moleculer";
import type { Config, ServiceName } from "./shared/config.js";
import { openDatabase, type Database } from "./database/database.js";
import { channelsMiddleware, duplicateDeliveryMiddleware, transporterOptions } from "./messaging/transport.js";
import { batchAmqpWrites } from "./messaging/amqp-write-batching.js";
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
import type { ReadModelStore } from "./projections/read-model-store.js";
import { PgReadModelStore } from "./projections/pg-read-model-store.js";
import { openGatewayPort } from "./gateway/gateway-port.js";
import { sagaStyle } from "../sagas/index.js";
import { metricsMiddleware } from "../observability/metrics.js";
import { tracingMiddleware } from "../observability/tracing.middleware.js";
import { processAttributes } from "../observability/span-attributes.js";
import { systemIdentity } from "./database/schema.js";
import { envelopeFactory, type EnvelopeFactory } from "./messaging/envelope-factory.js";

export interface System {
  config: Config;
  broker: ServiceBroker;
  db: Database;
  store: PgEventStore;
  /** Builds every envelope of this system (its identity, saga mode, trace context). */
  envelopes: EnvelopeFactory;
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

/** Moleculer's internal middlewares, in its own order, without its per-call `Metrics`. */
const MOLECULER_MIDDLEWARES = INTERNAL_MIDDLEWARES.filter((name) => name !== "Metrics");

/**
 * The projections' store, as READ_MODEL_STORE says: PostgreSQL (the system's database) or MongoDB.
 * The MongoDB driver is loaded only here, when chosen: it took 0.2 s of CPU to load in every
 * process (a dozen of them per deployment, most of which never use it).
 */
async function readModelStore(config: Config, db: Database): Promise<ReadModelStore> {
  switch (config.readModelStore) {
    case "postgres":
      return new PgReadModelStore(db.pool, { embedded: db.embedded });
    case "mongodb": {
      const { MongoReadModelStore } = await import("./projections/mongo-read-model-store.js");
      return new MongoReadModelStore(config.mongoUrl!);
    }
    default: {
      const unknown: never = config.readModelStore;
      throw new Error(`unknown read-model store ${String(unknown)}`);
    }
  }
}

/**
 * The one place where the pieces are wired: database, event store, read-model store, saga style,
 * transport and the services this process runs (`SERVICES`, all by default).
 */
export async function createSystem(config: Config, opts: SystemOptions = {}): Promise<System> {
  // misuse is refused before anything is touched: a port in use, then a database in use
  const server = config.services.includes("gateway") ? await openGatewayPort(config.host, config.port) : undefined;
  let db: Database;
  try {
    db = opts.db ?? (await openDatabase({ databaseUrl: config.databaseUrl, pgliteDir: config.pgliteDir, poolSize: config.dbPoolSize }));
  } catch (err) {
    server?.close();
    throw err;
  }
  const store = new PgEventStore(db.pool);
  const systemId = await systemIdentity(db.pool);
  const envelopes = envelopeFactory({ systemId, sagaMode: config.sagaMode });
  processAttributes.sagaMode = config.sagaMode;
  const style = sagaStyle(config.sagaMode, { config, db, store, envelopes });
  const deps: ServiceDeps = { config, db, store, envelopes, drive: style.drive };
  // loaded only by the processes that run them: moleculer-web alone took 0.2 s of CPU to load
  const readModel = config.services.includes("projections") ? await readModelStore(config, db) : undefined;
  const gateway = server ? await import("./gateway/gateway.service.js") : undefined;

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
    projections: () => projectionsService(deps, readModel!),
    gateway: () => gateway!.gatewayService(deps, server!),
    ...style.services,
  };

  if (config.transport === "amqp") batchAmqpWrites();
  // the channel adapters register one internal service per subscription: keep those quiet
  const logLevels = { "$CHANNEL**": "warn", REGISTRY: "warn", "**": config.logLevel } as const;
  const broker = new ServiceBroker({
    // Action calls stay inside this system: its nodes alone share this transit namespace, so two
    // systems on one NAMESPACE never serve each other's requests. The durable channels keep
    // NAMESPACE as their prefix (messaging.ts), where the envelope's identity tells them apart.
    namespace: `${config.namespace}-${systemId.slice(0, 8)}`,
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
    // The in-process channels (the Fake adapter) are Moleculer events behind a bulkhead of
    // maxInFlight handlers, whose queue takes these defaults. Moleculer's 100 dropped every message
    // beyond it, after the relay had checkpointed past it: under a burst, accepted orders never
    // took their next step. 0 lifts the limit, as a broker's queue has none.
    bulkhead: { enabled: false, concurrency: 10, maxQueueSize: 0 },
    // Moleculer's own tracing stays off: spans come from the OpenTelemetry middleware
    tracing: false,
    // the saga metrics are read through the gateway's /metrics (observability/metrics.ts)
    metrics: { enabled: true, reporter: [] },
    // Moleculer's internal middlewares are listed below, after the system's own as Moleculer
    // would add them, less its per-call Metrics: it timed every action call and event handler
    // into histograms and counters that /metrics never served (it serves saga_* only), and took
    // a fifth to a third of the CPU of a saga in one process (README, "Moleculer's per-call
    // metrics").
    internalMiddlewares: false,
    // later ones wrap earlier ones: tracing sees the metrics' work, fault injection wraps all
    middlewares: [
      channelsMiddleware(config),
      metricsMiddleware(true, () => db.statements()),
      tracingMiddleware(config.transport),
      ...(config.duplicateDelivery ? [duplicateDeliveryMiddleware()] : []),
      ...MOLECULER_MIDDLEWARES,
    ],
  });

  const running = config.services.filter((name) => factories[name]);
  for (const name of running) broker.createService(factories[name]!());

  return {
    config,
    broker,
    db,
    store,
    envelopes,
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
