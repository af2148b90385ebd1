import { z } from "zod";

/**
 * All configuration is read and validated here, once. Everything else receives a `Config`.
 * `SAGA_MODE` in particular is read nowhere else.
 */

export const SAGA_MODES = ["orchestrated", "choreographed"] as const;
export type SagaMode = (typeof SAGA_MODES)[number];

export const ALL_SERVICES = [
  "event-store",
  "users",
  "products",
  "carts",
  "orders",
  "warehouse",
  "payments",
  "shipping",
  "notifications",
  "projections",
  "saga-orchestrator",
  "saga-watchdog",
  "gateway",
] as const;
export type ServiceName = (typeof ALL_SERVICES)[number];

export const READ_MODEL_STORES = ["postgres", "mongodb"] as const;
export type ReadModelStoreKind = (typeof READ_MODEL_STORES)[number];

const rate = z.coerce.number().min(0).max(1);
const ms = z.coerce.number().int().min(0);

const envSchema = z.object({
  SAGA_MODE: z.enum(SAGA_MODES).default("orchestrated"),
  TRANSPORTER: z.string().trim().default("memory"),
  DATABASE_URL: z.string().trim().optional(),
  DB_POOL_SIZE: z.coerce.number().int().min(1).max(100).optional(),
  PGLITE_DIR: z.string().trim().default(".data/pglite"),
  SERVICES: z.string().trim().optional(),
  NODE_ID: z.string().trim().optional(),
  NAMESPACE: z.string().trim().regex(/^[A-Za-z0-9_-]+$/, "letters, digits, - and _ only").default("saga-bench"),
  PORT: z.coerce.number().int().min(0).max(65535).default(8000),
  HOST: z.string().trim().optional(),
  API_KEYS: z.string().trim().optional(),
  RATE_LIMIT_PER_MINUTE: z.coerce.number().int().min(0).default(0),
  BODY_LIMIT: z
    .string()
    .trim()
    .regex(/^\d+\s*(b|kb|mb)?$/i, "a size such as 65536, 64kb or 1mb")
    .default("64kb"),
  ALLOW_OPEN_GATEWAY: z.enum(["0", "1", "true", "false"]).default("0"),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace"]).default("info"),
  PAYMENT_FAILURE_RATE: rate.default(0),
  SHIPPING_FAILURE_RATE: rate.default(0),
  PAYMENT_LATENCY_MS: ms.default(0),
  FAULT_SEED: z.string().default("42"),
  SAGA_STEP_TIMEOUT_MS: ms.default(30_000),
  SAGA_TIMEOUT_MS: ms.default(120_000),
  MESSAGE_MAX_RETRIES: z.coerce.number().int().min(0).default(5),
  CONSUMER_LINGER_MS: ms.max(1_000).default(20),
  RELAY_POLL_MS: ms.default(1_000),
  CHAOS_DUPLICATE_DELIVERY: z.enum(["0", "1", "true", "false"]).default("0"),
  READ_MODEL_STORE: z.enum(READ_MODEL_STORES).default("postgres"),
  MONGO_URL: z.string().trim().regex(/^mongodb(\+srv)?:\/\//, "a mongodb://host:27017/database URL").optional(),
});

/** Every variable this module reads (the deployment files are checked against it). */
export const CONFIG_VARIABLES = Object.keys(envSchema.shape) as (keyof z.infer<typeof envSchema>)[];

export type Transport = "memory" | "nats" | "amqp";

export interface FaultConfig {
  paymentFailureRate: number;
  shippingFailureRate: number;
  paymentLatencyMs: number;
  seed: string;
}

export interface Config {
  sagaMode: SagaMode;
  transport: Transport;
  /** The broker URL for nats/amqp; undefined in memory mode. */
  transporterUrl?: string;
  /** undefined → embedded PGlite. */
  databaseUrl?: string;
  /**
   * Connections this process may open to DATABASE_URL (`DB_POOL_SIZE`): 10 when one process runs
   * every service, 4 per process otherwise, so a dozen service processes (or two systems on one
   * server) stay well inside PostgreSQL's default 100 connections.
   */
  dbPoolSize: number;
  /** Where embedded PGlite keeps its files (`PGLITE_DIR`, default .data/pglite); undefined → in memory (`PGLITE_DIR=memory`). */
  pgliteDir?: string;
  services: ServiceName[];
  nodeId?: string;
  /** Moleculer namespace: separates systems sharing one broker (subjects, queues, streams). */
  namespace: string;
  port: number;
  host: string;
  apiKeys: string[];
  rateLimitPerMinute: number;
  /** Largest request body, in bytes (`BODY_LIMIT`). */
  bodyLimitBytes: number;
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace";
  faults: FaultConfig;
  stepTimeoutMs: number;
  sagaTimeoutMs: number;
  maxRetries: number;
  /** Under load, how long a consumer's next batch may wait to grow (0: never). */
  consumerLingerMs: number;
  relayPollMs: number;
  /** Fault injection: the relay publishes every message twice and every consumer gets each twice. */
  duplicateDelivery: boolean;
  /** Where the projections keep the read models: PostgreSQL (the event store's database) or MongoDB. */
  readModelStore: ReadModelStoreKind;
  /** Set when readModelStore is mongodb. */
  mongoUrl?: string;
}

export class ConfigError extends Error {}

export function transportOf(url: string): Transport {
  if (url === "" || url === "memory" || url === "Fake") return "memory";
  if (url.startsWith("nats://")) return "nats";
  if (url.startsWith("amqp://") || url.startsWith("amqps://")) return "amqp";
  throw new ConfigError(
    `TRANSPORTER must be "memory", a nats://host:port URL or an amqp://user:pass@host:port URL; got "${url}"`,
  );
}

function parseServices(list: string | undefined): ServiceName[] {
  if (!list || list === "*" || list === "all") return [...ALL_SERVICES];
  if (list === "none") return []; // a client broker: calls services in other processes
  const names = list.split(",").map((s) => s.trim()).filter(Boolean);
  const unknown = names.filter((n) => !(ALL_SERVICES as readonly string[]).includes(n));
  if (unknown.length > 0) {
    throw new ConfigError(`SERVICES names unknown service(s): ${unknown.join(", ")}; known: ${ALL_SERVICES.join(", ")}`);
  }
  return names as ServiceName[];
}

export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127(?:\.\d{1,3}){3}$/.test(host);
}

function bytesOf(size: string): number {
  const [, n, unit] = /^(\d+)\s*(b|kb|mb)?$/i.exec(size)!;
  return Number(n) * ({ b: 1, kb: 1024, mb: 1024 * 1024 }[(unit ?? "b").toLowerCase() as "b" | "kb" | "mb"]);
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: Partial<Config> = {}): Config {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const parsed = envSchema.safeParse(cleaned);
  if (!parsed.success) {
    const detail = parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
    throw new ConfigError(`invalid configuration: ${detail}`);
  }
  const e = parsed.data;
  const transport = transportOf(e.TRANSPORTER);
  if (e.READ_MODEL_STORE === "mongodb" && !e.MONGO_URL) {
    throw new ConfigError("READ_MODEL_STORE=mongodb needs MONGO_URL (for example mongodb://127.0.0.1:27017/sagabench)");
  }
  const apiKeys = (e.API_KEYS ?? "").split(",").map((k) => k.trim()).filter(Boolean);
  // Without API keys the gateway is open, so it listens on loopback unless told otherwise, explicitly.
  const host = e.HOST ?? (apiKeys.length > 0 ? "0.0.0.0" : "127.0.0.1");
  const allowOpen = e.ALLOW_OPEN_GATEWAY === "1" || e.ALLOW_OPEN_GATEWAY === "true";
  const services = parseServices(e.SERVICES);
  if (services.includes("gateway") && apiKeys.length === 0 && !isLoopback(host) && !allowOpen) {
    throw new ConfigError(
      `HOST=${host} would open the gateway to the network with no API_KEYS: set API_KEYS, or ALLOW_OPEN_GATEWAY=1 to run it open on purpose`,
    );
  }
  const config: Config = {
    sagaMode: e.SAGA_MODE,
    transport,
    transporterUrl: transport === "memory" ? undefined : e.TRANSPORTER,
    databaseUrl: e.DATABASE_URL,
    dbPoolSize: e.DB_POOL_SIZE ?? (services.length === ALL_SERVICES.length ? 10 : 4),
    pgliteDir: e.PGLITE_DIR === "memory" ? undefined : e.PGLITE_DIR,
    services,
    nodeId: e.NODE_ID,
    namespace: e.NAMESPACE,
    port: e.PORT,
    host,
    apiKeys,
    rateLimitPerMinute: e.RATE_LIMIT_PER_MINUTE,
    bodyLimitBytes: bytesOf(e.BODY_LIMIT),
    logLevel: e.LOG_LEVEL,
    faults: {
      paymentFailureRate: e.PAYMENT_FAILURE_RATE,
      shippingFailureRate: e.SHIPPING_FAILURE_RATE,
      paymentLatencyMs: e.PAYMENT_LATENCY_MS,
      seed: e.FAULT_SEED,
    },
    stepTimeoutMs: e.SAGA_STEP_TIMEOUT_MS,
    sagaTimeoutMs: e.SAGA_TIMEOUT_MS,
    maxRetries: e.MESSAGE_MAX_RETRIES,
    consumerLingerMs: e.CONSUMER_LINGER_MS,
    relayPollMs: e.RELAY_POLL_MS,
    duplicateDelivery: e.CHAOS_DUPLICATE_DELIVERY === "1" || e.CHAOS_DUPLICATE_DELIVERY === "true",
    readModelStore: e.READ_MODEL_STORE,
    mongoUrl: e.MONGO_URL,
  };
  return { ...config, ...overrides };
}
