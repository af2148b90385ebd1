import { describe, expect, it } from "vitest";
import { openDatabase, type Database } from "../services/shared/database.js";
import { HALF_EMPTY_PAGES } from "../services/shared/schema.js";
import { PgReadModelStore } from "../services/projections/pg-read-model-store.js";
import { available, freshPostgresDatabase } from "./support/infrastructure.js";

/**
 * The rows rewritten at every step (saga instances, order views) get half-empty pages on a
 * PostgreSQL server, where that saves WAL and CPU per saga, and full pages in PGlite, where it
 * cost throughput (README: Design decisions).
 */

const reachable = await available("postgres");

async function fillfactors(db: Database): Promise<Record<string, string | null>> {
  await new PgReadModelStore(db.pool, { embedded: db.embedded }).open();
  const { rows } = await db.pool.query(
    `SELECT c.oid::regclass::text AS name,
            (SELECT o FROM unnest(c.reloptions) AS o WHERE o LIKE 'fillfactor=%') AS fillfactor
       FROM pg_class c WHERE c.oid IN ('orchestrator.sagas'::regclass, 'read_model.orders'::regclass)`,
  );
  return Object.fromEntries(rows.map((r) => [r.name, r.fillfactor]));
}

describe("storage settings of the rewritten rows", () => {
  it("keeps full pages in the embedded database", async () => {
    const db = await openDatabase({});
    try {
      expect(await fillfactors(db)).toEqual({ "orchestrator.sagas": null, "read_model.orders": null });
    } finally {
      await db.close();
    }
  });

  it.skipIf(!reachable)("leaves half of each page free on a PostgreSQL server", async () => {
    const fresh = await freshPostgresDatabase();
    const db = await openDatabase({ databaseUrl: fresh.url });
    try {
      const half = `fillfactor=${HALF_EMPTY_PAGES}`;
      expect(await fillfactors(db)).toEqual({ "orchestrator.sagas": half, "read_model.orders": half });
    } finally {
      await db.close();
      await fresh.drop();
    }
  });
});
