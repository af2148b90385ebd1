import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import net from "node:net";
import { backendCpuBetween, brokerCpuBetween, onThisMachine, readBackendCpu, readBrokerCpu, readWalPosition, walBetween } from "../bench/process-stats.js";
import { foldRepeats, summaryTable } from "../bench/bench-report.js";
import type { CellResult } from "../bench/bench-results.js";
import { available, freshPostgresDatabase } from "./support/infrastructure.js";

/**
 * The bench counts the database's share of a saga's cost: the CPU of the PostgreSQL backends
 * serving the cell's database, read from /proc when the server runs on this machine; and the
 * broker's, the process listening on the broker's port.
 */

const reachable = await available("postgres");

describe("where the database's CPU can be read", () => {
  it("is a server on loopback or a Unix socket, not one elsewhere", async () => {
    expect(onThisMachine("postgres://postgres@127.0.0.1:5432/x")).toBe(true);
    expect(onThisMachine("postgres://postgres@localhost/x")).toBe(true);
    expect(onThisMachine("postgres://postgres@[::1]:5432/x")).toBe(true);
    expect(onThisMachine("postgres:///x?host=/var/run/postgresql")).toBe(true);
    expect(onThisMachine("postgresql://postgres@%2Fvar%2Frun%2Fpostgresql/x")).toBe(true);
    expect(onThisMachine("postgres://postgres@db.example.com:5432/x")).toBe(false);
    expect(onThisMachine("postgres://postgres@10.1.2.3/x")).toBe(false);
    // a server elsewhere is not asked at all
    expect(await readBackendCpu("postgres://postgres@db.invalid:5432/x")).toBeNull();
  });
});

describe("the broker's CPU", () => {
  /** A port this test's own process listens on, standing in for a broker's. */
  async function listening(): Promise<{ port: number; close(): Promise<unknown> }> {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    return { port: (server.address() as net.AddressInfo).port, close: () => new Promise((r) => server.close(r)) };
  }

  it("is the CPU of the process listening on the broker's port on this machine", async () => {
    const { port, close } = await listening();
    const named = process.title;
    // this process stands in for the broker's server under its name
    process.title = "nats-server";
    try {
      const before = readBrokerCpu(`nats://127.0.0.1:${port}`);
      expect(before?.pid).toBe(process.pid);
      let x = 0;
      for (let i = 0; i < 3e7; i++) x += i % 7;
      expect(x).toBeGreaterThan(0);
      const after = readBrokerCpu(`amqp://guest:guest@localhost:${port}`);
      expect(after?.pid).toBe(process.pid);
      expect(brokerCpuBetween(before, after)).toBeGreaterThan(0);
      // under another name it is not a broker (a container's port proxy, say): not counted
      process.title = "docker-proxy";
      expect(readBrokerCpu(`nats://127.0.0.1:${port}`)).toBeNull();
    } finally {
      process.title = named;
      await close();
    }
  });

  it("is not read for a broker elsewhere, a port nobody listens on, or two different processes", async () => {
    expect(readBrokerCpu("nats://broker.example.com:4222")).toBeNull();
    const { port, close } = await listening();
    await close();
    expect(readBrokerCpu(`nats://127.0.0.1:${port}`)).toBeNull();
    expect(brokerCpuBetween({ pid: 1, cpu_s: 2 }, { pid: 2, cpu_s: 3 })).toBeNull();
    expect(brokerCpuBetween(null, { pid: 2, cpu_s: 3 })).toBeNull();
  });
});

describe.skipIf(!reachable)("the CPU of one database's backends (PostgreSQL on this machine)", () => {
  const dbs: { url: string; drop(): Promise<void> }[] = [];
  const pools: pg.Pool[] = [];
  let mine: pg.Pool;
  let other: pg.Pool;
  let url: string;

  beforeAll(async () => {
    for (let i = 0; i < 2; i++) {
      const fresh = await freshPostgresDatabase();
      dbs.push(fresh);
      pools.push(new pg.Pool({ connectionString: fresh.url, max: 1 }));
    }
    [mine, other] = pools as [pg.Pool, pg.Pool];
    url = dbs[0]!.url;
  });
  afterAll(async () => {
    for (const p of pools) await p.end();
    for (const d of dbs) await d.drop();
  });

  it("counts the work of the database's own backends, not another database's", async () => {
    const { rows: a } = await mine.query("SELECT pg_backend_pid() AS pid");
    const { rows: b } = await other.query("SELECT pg_backend_pid() AS pid");
    const before = await readBackendCpu(url);
    expect(before).not.toBeNull();
    // (an autovacuum worker visiting the database would be counted too: its work is the database's)
    expect([...before!.keys()]).toContain(a[0].pid);
    expect([...before!.keys()]).not.toContain(b[0].pid);
    await mine.query("SELECT count(*) FROM generate_series(1, 3000000)");
    const after = await readBackendCpu(url);
    expect([...after!.keys()]).not.toContain(b[0].pid);
    expect(backendCpuBetween(before, after)).toBeGreaterThan(0);
  });

  it("reads the write-ahead log written between two readings: at least what a durable insert of known size wrote", async () => {
    await mine.query("CREATE TABLE IF NOT EXISTS wal_probe (v text NOT NULL)");
    const before = await readWalPosition(url);
    expect(before).toBeGreaterThan(0);
    // 200 rows of 1 KB each: their WAL records hold every byte of them (incompressible text)
    await mine.query("INSERT INTO wal_probe SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 200) g, generate_series(1, 32) k GROUP BY g");
    const after = await readWalPosition(url);
    expect(walBetween(before, after)).toBeGreaterThan(200 * 1024);
    expect(walBetween(null, after)).toBeNull();
    expect(walBetween(before, null)).toBeNull();
  });

  it("counts a backend that started between the readings from zero, and none without a reading", () => {
    expect(backendCpuBetween(new Map([[1, 2.5]]), new Map([[1, 3.0], [2, 0.25]]))).toBe(0.75);
    expect(backendCpuBetween(null, new Map([[1, 1]]))).toBeNull();
    expect(backendCpuBetween(new Map(), null)).toBeNull();
  });
});

describe("the report's cost per saga", () => {
  const cell = (mode: "orchestrated" | "choreographed", cpu: number, database: number | null): CellResult =>
    ({
      key: `${mode}/memory/single/happy/closed@c32`,
      mode,
      transport: "memory",
      topology: "single",
      scenario: "happy",
      load: { kind: "closed", rate: 100, duration_s: 10, connections: 32 },
      repeat: 1,
      sagas: { started: 1000, confirmed: 1000, cancelled: 0, lost: 0, stuck: 0, duplicated: 0 },
      latency_ms: { p50: 300, p90: 400, p99: 500, p999: 600, max: 700 },
      compensation_latency_ms: null,
      throughput_sps: 100,
      confirmed_sps: 100,
      cancelled_sps: 0,
      steps_ms: {},
      steps_split_ms: {},
      messages_per_saga: 11,
      db_writes_per_saga: 3,
      path: { messages: 9, commits: 9, request_reply_hops: 1 },
      processes: [
        { name: "all", cpu_s: cpu, peak_rss_mb: 140 },
        { name: "bench (load generator)", cpu_s: 1, peak_rss_mb: 150 },
      ],
      database_cpu_s: database,
      floor_ms: 10,
      x_floor: 30,
      audit: { ok: true, violations: [] },
      errors: {},
      unmeasured: [],
    }) as CellResult;

  it("shows the system's and the database's CPU per completed saga side by side, and – where the database's was not measured", () => {
    const table = summaryTable(foldRepeats([cell("orchestrated", 7, 5.5), cell("choreographed", 5, null)]));
    const row = table.rows[0]!;
    expect(row[table.headers.indexOf("CPU ms/saga O / C")]).toBe("7 / 5");
    expect(row[table.headers.indexOf("DB CPU ms/saga O / C")]).toBe("5.5 / –");
  });

  it("shows the broker's CPU per completed saga, and – where there is no broker or it was not measured", () => {
    const table = summaryTable(foldRepeats([{ ...cell("orchestrated", 7, 5.5), broker_cpu_s: 1.5 }, cell("choreographed", 5, null)]));
    expect(table.rows[0]![table.headers.indexOf("broker CPU ms/saga O / C")]).toBe("1.5 / –");
  });

  it("shows the write-ahead log per completed saga in KB, and – where it was not measured", () => {
    const table = summaryTable(foldRepeats([{ ...cell("orchestrated", 7, 5.5), db_wal_bytes: 1000 * 38 * 1024 }, cell("choreographed", 5, null)]));
    expect(table.rows[0]![table.headers.indexOf("WAL KB/saga O / C")]).toBe("38 / –");
  });
});
