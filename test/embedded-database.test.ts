import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { openDatabase, withTransaction } from "../services/database/database.js";
import { systemIdentity } from "../services/database/schema.js";

/** `npm start` on a fresh checkout: PGlite keeps its files in a directory that does not exist yet. */
describe("embedded database on disk", () => {
  const root = mkdtempSync(path.join(os.tmpdir(), "saga-pglite-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("creates its directory, seeds once, and keeps what was written across a restart", async () => {
    const dir = path.join(root, ".data", "pglite");
    const first = await openDatabase({ pgliteDir: dir });
    await first.pool.query("UPDATE warehouse.stock SET available = available - 3 WHERE product_id = 101");
    await first.close();

    const second = await openDatabase({ pgliteDir: dir });
    try {
      const { rows } = await second.pool.query("SELECT available FROM warehouse.stock WHERE product_id = 101");
      expect(rows[0].available).toBe(47); // seeded with 50 at first start, not re-seeded
      const users = await second.pool.query("SELECT count(*)::int AS n FROM users.users WHERE id = 456");
      expect(users.rows[0].n).toBe(1);
    } finally {
      await second.close();
    }
  });
});

describe("new embedded databases, made from one template", () => {
  it("are each their own: a system identity each, and what one writes the others never see", async () => {
    const root = mkdtempSync(path.join(os.tmpdir(), "saga-pglite-template-"));
    const dbs = [await openDatabase({}), await openDatabase({}), await openDatabase({ pgliteDir: path.join(root, "a") })];
    try {
      const ids = await Promise.all(dbs.map((db) => systemIdentity(db.pool)));
      expect(new Set(ids).size).toBe(3);
      await dbs[0].pool.query("UPDATE warehouse.stock SET available = 7 WHERE product_id = 101");
      for (const db of dbs.slice(1)) {
        const { rows } = await db.pool.query("SELECT available FROM warehouse.stock WHERE product_id = 101");
        expect(rows[0].available).toBe(50);
      }
    } finally {
      for (const db of dbs) await db.close();
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe("statements counted by the database's pool", () => {
  it("counts each statement sent, with and without parameters, BEGIN and COMMIT included", async () => {
    const db = await openDatabase({});
    try {
      const before = db.statements();
      expect(before).toBeGreaterThan(0); // the schema's migration
      await db.pool.query("SELECT 1");
      await db.pool.query("SELECT $1::int AS n", [2]);
      await withTransaction(db.pool, async (tx) => {
        await tx.query("SELECT count(*) FROM warehouse.stock WHERE product_id = $1", [101]);
      });
      await db.pool.query("SELECT nope FROM nowhere").catch(() => undefined); // a failed one was sent too
      expect(db.statements() - before).toBe(6);
    } finally {
      await db.close();
    }
  });
});
