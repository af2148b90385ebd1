import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { PGlite } from "@electric-sql/pglite";
import { PGliteStream } from "../services/database/pglite-stream.js";

/** The embedded database's connection: `pg` speaking the wire protocol straight into PGlite. */
describe("PGliteStream", () => {
  let lite: PGlite;
  const client = () => new pg.Client({ user: "postgres", database: "postgres", stream: () => new PGliteStream(lite) } as pg.ClientConfig);

  beforeAll(async () => {
    lite = await PGlite.create("memory://");
    await lite.exec("CREATE TABLE t (id int PRIMARY KEY, note text)");
  });
  afterAll(() => lite.close());

  it("carries parameters, named statements, types and errors as a server connection does", async () => {
    const c = client();
    await c.connect();
    try {
      const { rows } = await c.query({
        name: "s1",
        text: "SELECT $1::int + 1 AS n, $2::jsonb AS j, '2026-01-02T03:04:05Z'::timestamptz AS t",
        values: [41, JSON.stringify({ a: [1] })],
      });
      expect(rows).toEqual([{ n: 42, j: { a: [1] }, t: new Date("2026-01-02T03:04:05Z") }]);
      const again = await c.query({ name: "s1", text: "SELECT $1::int + 1 AS n, $2::jsonb AS j, '2026-01-02T03:04:05Z'::timestamptz AS t", values: [1, "null"] });
      expect(again.rows[0].n).toBe(2);
      await expect(c.query("INSERT INTO t VALUES ($1, $2), ($1, $2)", [1, "dup"])).rejects.toMatchObject({ code: "23505" });
      // the failed statement changed nothing and the connection goes on
      expect((await c.query("SELECT count(*)::int AS n FROM t")).rows[0].n).toBe(0);
      // a statement's messages go in together: one that fails at Parse or at Bind skips the rest
      // of its statement up to its Sync, and the connection goes on
      await expect(c.query("SELEC $1::int", [1])).rejects.toMatchObject({ code: "42601" });
      await expect(c.query({ name: "s2", text: "SELECT $1::int AS n", values: ["not a number"] })).rejects.toMatchObject({ code: "22P02" });
      expect((await c.query({ name: "s2", text: "SELECT $1::int AS n", values: [7] })).rows[0].n).toBe(7);
    } finally {
      await c.end();
    }
  });

  it("hands PGlite a statement's protocol messages in one call", async () => {
    const c = client();
    await c.connect();
    const calls: number[] = [];
    const original = lite.execProtocolRawStream.bind(lite);
    lite.execProtocolRawStream = ((message: Uint8Array, options: never) => {
      calls.push(message.length);
      return original(message, options);
    }) as typeof lite.execProtocolRawStream;
    try {
      // Parse, Bind, Describe, Execute and Sync the first time; the same but Parse after
      await c.query({ name: "s3", text: "SELECT $1::int AS n", values: [1] });
      await c.query({ name: "s3", text: "SELECT $1::int AS n", values: [2] });
      expect(calls).toHaveLength(2);
    } finally {
      lite.execProtocolRawStream = original;
      await c.end();
    }
  });

  it("answers a burst of queries sent without waiting, each with its own result, in order", async () => {
    // through a pool of one connection, as the embedded system sends them (pg queues them for it)
    const pool = new pg.Pool({ user: "postgres", database: "postgres", max: 1, stream: () => new PGliteStream(lite) } as pg.PoolConfig);
    try {
      const results = await Promise.all(Array.from({ length: 200 }, (_, i) => pool.query("SELECT $1::int * 2 AS n", [i])));
      expect(results.map((r) => r.rows[0].n)).toEqual(Array.from({ length: 200 }, (_, i) => i * 2));
    } finally {
      await pool.end();
    }
  });

  it("rolls back what a connection that goes away left open, and the next one starts clean", async () => {
    const first = client();
    await first.connect();
    await first.query("BEGIN");
    await first.query("INSERT INTO t VALUES (7, 'abandoned')");
    await first.end(); // no COMMIT
    expect(lite.isInTransaction()).toBe(false);

    const second = client();
    await second.connect();
    try {
      expect((await second.query("SELECT count(*)::int AS n FROM t WHERE id = 7")).rows[0].n).toBe(0);
      await second.query("INSERT INTO t VALUES (8, 'kept')");
    } finally {
      await second.end();
    }
    expect((await lite.query<{ note: string }>("SELECT note FROM t WHERE id = 8")).rows[0].note).toBe("kept");
  });

  it("leaves alone the transaction another connection began since", async () => {
    const gone = client();
    gone.on("error", () => undefined);
    await gone.connect();
    await gone.query("SELECT 1");
    const next = client();
    await next.connect();
    try {
      await next.query("BEGIN");
      await next.query("INSERT INTO t VALUES (10, 'next')");
      // the first connection goes away while the second one's transaction is open
      await gone.end();
      await next.query("COMMIT");
    } finally {
      await next.end();
    }
    expect((await lite.query<{ note: string }>("SELECT note FROM t WHERE id = 10")).rows[0]?.note).toBe("next");
  });

  it("rolls back the open transaction of a connection destroyed without a goodbye", async () => {
    const c = client();
    const lost: Error[] = [];
    c.on("error", (err) => lost.push(err));
    await c.connect();
    await c.query("BEGIN");
    await c.query("INSERT INTO t VALUES (9, 'destroyed')");
    const stream = (c as unknown as { connection: { stream: PGliteStream } }).connection.stream;
    await new Promise<void>((resolve) => {
      stream.once("close", () => resolve());
      stream.destroy();
    });
    expect(lite.isInTransaction()).toBe(false);
    expect((await lite.query<{ n: number }>("SELECT count(*)::int AS n FROM t WHERE id = 9")).rows[0].n).toBe(0);
    expect(lost.map((e) => e.message)).toEqual(["Connection terminated unexpectedly"]);
  });
});
