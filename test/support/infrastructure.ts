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

/** A new, empty database on the local PostgreSQL server; `drop()` removes it. */
export function freshPostgresDatabase(): Promise<FreshDatabase> {
  return freshDatabaseOn(POSTGRES_URL);
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
