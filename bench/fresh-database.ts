import pg from "pg";
import { randomBytes } from "node:crypto";

export interface FreshDatabase {
  name: string;
  url: string;
  /** Creates it (once, however often called). */
  create(): Promise<void>;
  /**
   * Removes it (with FORCE, so a connection a crashed process left open cannot keep it alive).
   * A creation still running is waited for first, so a drop that comes while CREATE DATABASE
   * runs (a signal's clean-up) cannot miss the database that statement is about to make.
   */
  drop(): Promise<void>;
}

/**
 * A new database's name and address on the PostgreSQL server that `adminUrl` reaches, not yet
 * created: its owner registers the drop first, then creates it, so nothing can stop the bench
 * between the database coming to be and its removal being known.
 */
export function freshPostgresDatabase(adminUrl: string, prefix = "saga_test"): FreshDatabase {
  const name = `${prefix}_${randomBytes(6).toString("hex")}`;
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const admin = async (sql: string) => {
    const c = new pg.Client({ connectionString: adminUrl });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };
  let creating: Promise<void> | undefined;
  return {
    name,
    url: url.toString(),
    create: () => (creating ??= admin(`CREATE DATABASE ${name}`)),
    async drop() {
      await creating?.catch(() => undefined);
      await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
  };
}
