import { MongoClient } from "mongodb";
import { randomBytes } from "node:crypto";
import { reachable } from "../../bench/reachable.js";
import { freshPostgresDatabase as freshDatabaseOn, type FreshDatabase } from "../../bench/fresh-database.js";

/**
 * Which real services the tests may use. Under REQUIRE_SERVICES=1 (as .ci/run sets it) a test
 * that needs an unreachable service fails instead of skipping.
 */
export const REQUIRE_SERVICES = process.env.REQUIRE_SERVICES === "1";

export const POSTGRES_URL = process.env.TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
export const NATS_URL = process.env.TEST_NATS_URL ?? "nats://127.0.0.1:4222";
export const AMQP_URL = process.env.TEST_AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672";

export type ServiceKind = "postgres" | "nats" | "amqp";
const URLS: Record<ServiceKind, string> = { postgres: POSTGRES_URL, nats: NATS_URL, amqp: AMQP_URL };

/**
 * True when the service answers. When it does not: throws under REQUIRE_SERVICES=1, otherwise
 * returns false so the caller skips, saying why.
 */
export async function available(kind: ServiceKind): Promise<boolean> {
  const ok = await reachable(URLS[kind]);
  if (!ok && REQUIRE_SERVICES) {
    throw new Error(`REQUIRE_SERVICES=1 but ${kind} is not reachable at ${URLS[kind]}`);
  }
  if (!ok) console.warn(`[skip] ${kind} is not reachable at ${URLS[kind]}; its tests are skipped`);
  return ok;
}

/** A new, empty database on the local PostgreSQL server, created; `drop()` removes it. */
export async function freshPostgresDatabase(): Promise<FreshDatabase> {
  const fresh = freshDatabaseOn(POSTGRES_URL);
  await fresh.create();
  return fresh;
}

/** The brokers the multi-process suites run over. */
export const BROKERS = [
  { kind: "nats", url: NATS_URL },
  { kind: "amqp", url: AMQP_URL },
] as const;

/** A cluster needs PostgreSQL and the broker (same rules as `available`). */
export async function clusterAvailable(kind: "nats" | "amqp"): Promise<boolean> {
  return (await available("postgres")) && (await available(kind));
}

/** A fresh database on the MongoDB server `url` names (MONGO_URL); `drop()` removes it. */
export function freshMongoDatabase(url: string): { url: string; drop(): Promise<void> } {
  const name = `saga_test_${randomBytes(6).toString("hex")}`;
  const fresh = new URL(url);
  fresh.pathname = `/${name}`;
  return {
    url: fresh.toString(),
    async drop() {
      const client = new MongoClient(url);
      try {
        await client.db(name).dropDatabase();
      } finally {
        await client.close();
      }
    },
  };
}

/**
 * The read-model store a suite runs on, chosen as a deployment chooses it: READ_MODEL_STORE
 * (PostgreSQL unless set), with a fresh MongoDB database when it says mongodb.
 */
export function readModelStoreFromEnvironment(): { label: string; env: Record<string, string>; drop(): Promise<void> } {
  const kind = process.env.READ_MODEL_STORE ?? "postgres";
  if (kind !== "mongodb") return { label: `READ_MODEL_STORE=${kind}`, env: { READ_MODEL_STORE: kind }, drop: async () => undefined };
  if (!process.env.MONGO_URL) throw new Error("READ_MODEL_STORE=mongodb needs MONGO_URL");
  const fresh = freshMongoDatabase(process.env.MONGO_URL);
  return { label: "READ_MODEL_STORE=mongodb", env: { READ_MODEL_STORE: kind, MONGO_URL: fresh.url }, drop: () => fresh.drop() };
}
