import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDatabase, type Database } from "../services/database/database.js";
import { auditCheckouts } from "../bench/end-state-audit.js";
import { SEEDED_STOCK } from "../bench/bench-scenarios.js";
import { compareResults, loadResults } from "../bench/bench-compare.js";
import { foldRepeats, summaryTable } from "../bench/bench-report.js";
import { cellKey, completedFrom, type BenchResults } from "../bench/bench-results.js";
import { REQUIRE_SERVICES } from "./support/infrastructure.js";

/**
 * `npm run bench` end to end on the embedded defaults: one short real run (both styles, the
 * mixed scenario, so every chart has data), then its outputs, its page in a real browser, its
 * audit made to fail on purpose, and --compare.
 */

const repo = path.resolve(import.meta.dirname, "..");
const out = fs.mkdtempSync(path.join(os.tmpdir(), "saga-bench-run-"));
let results: BenchResults;
let stdout = "";

function chromium(): string | undefined {
  for (const bin of ["chromium", "chromium-browser", "google-chrome"]) {
    const r = spawnSync("which", [bin], { encoding: "utf8" });
    if (r.status === 0) return r.stdout.trim();
  }
  return undefined;
}

beforeAll(() => {
  // dist/ is built once before every test (test/support/build.global-setup.ts)
  const run = spawnSync(
    process.execPath,
    [
      "dist/bench/bench-cli.js",
      "--transports", "memory",
      "--scenarios", "mixed",
      "--rates", "4",
      "--duration", "4",
      "--warmup", "1",
      "--no-saturate",
      "--keep-data",
      "--port", "18350",
      "--out", out,
    ],
    { cwd: repo, encoding: "utf8", env: { ...process.env, DATABASE_URL: "" } },
  );
  stdout = run.stdout;
  if (run.status !== 0) throw new Error(`bench exited with ${run.status}:\n${run.stdout}\n${run.stderr}`);
  results = JSON.parse(fs.readFileSync(path.join(out, "results.json"), "utf8")) as BenchResults;
}, 900_000);

afterAll(() => {
  for (const c of results?.cells ?? []) if (c.database && !c.database.startsWith("postgres")) fs.rmSync(c.database, { recursive: true, force: true });
  fs.rmSync(out, { recursive: true, force: true });
});

describe("npm run bench", () => {
  it("writes every output, with the fields results.json promises, and a clean audit", () => {
    for (const f of ["results.json", "report.md", "report.html", "latency-percentiles.svg", "latency-vs-load.svg", "throughput.svg", "cpu-per-saga.svg", "compensation-latency.svg", "step-breakdown.svg"]) {
      expect(fs.existsSync(path.join(out, f)), f).toBe(true);
    }
    expect(results.cells.map((c) => c.mode).sort()).toEqual(["choreographed", "orchestrated"]);
    for (const c of results.cells) {
      expect(c).toMatchObject({ transport: "memory", topology: "single", scenario: "mixed", load: { kind: "open", rate: 4, duration_s: 4 }, repeat: 1 });
      expect(Object.keys(c.sagas).sort()).toEqual(["cancelled", "confirmed", "duplicated", "lost", "started", "stuck"]);
      expect(c.sagas.started).toBeGreaterThan(0);
      expect(c.sagas.confirmed + c.sagas.cancelled).toBe(c.sagas.started);
      expect(Object.keys(c.latency_ms).sort()).toEqual(["max", "p50", "p90", "p99", "p999"]);
      expect(c.latency_ms.p50).toBeGreaterThan(0);
      expect(c.throughput_sps).toBeGreaterThan(0);
      expect(Object.keys(c.steps_ms)).toEqual(expect.arrayContaining(["reserve_stock", "charge_payment", "schedule_shipment", "confirm"]));
      expect(c.messages_per_saga).toBeGreaterThan(0);
      expect(c.db_writes_per_saga).toBeGreaterThan(0);
      expect(c.processes.map((p) => p.name)).toContain("all");
      // the scheduler's account of the system's JavaScript thread over the window (Linux)
      const system = c.processes.find((p) => p.name === "all")!;
      if (fs.existsSync("/proc/self/task")) {
        expect(system.main_thread!.running, c.key).toBeGreaterThan(0);
        expect(system.main_thread!.running + system.main_thread!.waiting, c.key).toBeLessThanOrEqual(1.05);
        expect(system.main_thread!.preempted_per_s, c.key).toBeGreaterThanOrEqual(0);
      }
      // PGlite runs inside the system's process: its CPU is in "all", not counted apart
      expect(c.database_cpu_s).toBeNull();
      // and writes no WAL of PostgreSQL's that a position could show
      expect(c.db_wal_bytes).toBeNull();
      expect(c.floor_ms).toBeGreaterThan(0);
      expect(c.x_floor).toBeGreaterThan(0);
      // an open-loop cell warms up with a closed-loop burst of its scenario (how many it
      // completes in its second depends on the machine), then its own rate (1 s at 4/s); the
      // audit below covers those checkouts too
      expect(c.warmup_sagas, c.key).toEqual({ burst: expect.any(Number), own: 4 });
      expect(c.audit).toEqual({ ok: true, violations: [] });
      // each consumer's share of the window, from the system's /metrics
      expect(c.stages?.length, c.key).toBeGreaterThan(3);
      for (const s of c.stages!) {
        expect(s.node).toBe("all");
        expect(s.busy).toBeGreaterThanOrEqual(0);
        expect(s.busy).toBeLessThan(1);
      }
      expect(c.stages!.map((s) => s.busy)).toEqual([...c.stages!.map((s) => s.busy)].sort((a, b) => b - a));
      expect(c.stages!.some((s) => s.consumer === "saga-orchestrator")).toBe(c.mode === "orchestrated");
      // the statements the system sent over the window: every message handled took at least one
      expect(c.db_statements! / (c.sagas.confirmed + c.sagas.cancelled), c.key).toBeGreaterThan(c.messages_per_saga);
    }
    // the orchestrator's commands are stored messages too: more per saga than choreography
    const per = Object.fromEntries(results.cells.map((c) => [c.mode, c.messages_per_saga]));
    expect(per.orchestrated).toBeGreaterThan(per.choreographed);
    const orchestrated = results.cells.find((c) => c.mode === "orchestrated")!;
    expect(orchestrated.steps_split_ms.charge_payment.coordination_ms).toBeGreaterThan(0);
    expect(results.floor.memory).toMatchObject({ database: "pglite" });
    // one statement's round trip is part of a commit's (BEGIN, INSERT, COMMIT)
    expect(results.floor.memory!.statement_ms).toBeGreaterThan(0);
    expect(results.floor.memory!.statement_ms).toBeLessThan(results.floor.memory!.commit_ms);
    expect(results.meta).toMatchObject({ node: process.version, machine: { cpus: os.cpus().length } });
    expect(stdout).toContain("audit clean in all 2 cell(s)");
    for (const mode of ["orchestrated ", "choreographed"]) expect(stdout).toContain(`${mode} memory/single mixed 4/s: warm-up burst`);
    expect(stdout).toMatch(/busiest consumer \S+ \d+% busy/);
    expect(fs.readFileSync(path.join(out, "report.md"), "utf8")).toMatch(/## Busiest consumers\n\n\| style \| transport/);
    expect(fs.readFileSync(path.join(out, "report.md"), "utf8")).toMatch(/\| DB stmts\/saga O \/ C \| WAL KB\/saga O \/ C \|/);
  });

  it("renders every chart with axes and data in a real browser", () => {
    const bin = chromium();
    if (!bin) {
      if (REQUIRE_SERVICES) throw new Error("REQUIRE_SERVICES=1 but Chromium is not installed");
      console.warn("[skip] Chromium is not installed; report.html was not checked in a browser");
      return;
    }
    const page = `file://${path.join(out, "report.html")}`;
    const flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars", "--virtual-time-budget=10000"];
    const shot = path.join(out, "report.png");
    spawnSync(bin, [...flags, "--window-size=1500,4000", `--screenshot=${shot}`, page], { encoding: "utf8", timeout: 120_000 });
    expect(fs.statSync(shot).size).toBeGreaterThan(20_000);
    const dom = spawnSync(bin, [...flags, "--dump-dom", page], { encoding: "utf8", timeout: 120_000 }).stdout;
    expect(dom).toContain('data-checked="yes"');
    const figures = [...dom.matchAll(/<figure class="chart" data-chart="([^"]+)" data-rendered="axes=(\d+) marks=(\d+)"/g)];
    expect(figures.map((f) => f[1]).sort()).toEqual(["compensation-latency.svg", "cpu-per-saga.svg", "latency-percentiles.svg", "latency-vs-load.svg", "step-breakdown.svg", "throughput.svg"]);
    for (const [, chart, axes, marks] of figures) {
      expect(Number(axes), `${chart} axes`).toBeGreaterThanOrEqual(2);
      expect(Number(marks), `${chart} marks`).toBeGreaterThan(0);
    }
  });

  describe("the audit of a finished cell", () => {
    let db: Database;
    beforeAll(async () => {
      const cell = results.cells.find((c) => c.mode === "orchestrated")!;
      expect(cell.database, "--keep-data records where the cell's database is").toBeTruthy();
      db = await openDatabase({ pgliteDir: cell.database });
      await db.pool.query("ALTER TABLE event_store.events DISABLE TRIGGER events_append_only");
    });
    afterAll(() => db?.close());

    it("is clean as the bench left it", async () => {
      expect((await auditCheckouts(db.pool, SEEDED_STOCK)).violations).toEqual([]);
    });

    it("reports an order whose terminal event was deleted", async () => {
      const { rows } = await db.pool.query("DELETE FROM event_store.events WHERE position = (SELECT min(position) FROM event_store.events WHERE event_type = 'OrderConfirmed') RETURNING data->>'order_id' AS id");
      const audit = await auditCheckouts(db.pool, SEEDED_STOCK);
      expect(audit.ok).toBe(false);
      expect(audit.violations.join("\n")).toMatch(new RegExp(`terminal state without its terminal event: ${rows[0].id}\\b`));
    });

    it("reports a cancelled order whose stock release was undone", async () => {
      const { rows } = await db.pool.query(
        `UPDATE warehouse.reservations r SET status = 'reserved' FROM orders.orders o
          WHERE o.order_id = r.order_id AND o.status = 'cancelled' AND r.status = 'released'
            AND r.order_id = (SELECT min(r2.order_id) FROM warehouse.reservations r2 JOIN orders.orders o2 USING (order_id) WHERE o2.status = 'cancelled' AND r2.status = 'released')
          RETURNING r.order_id, r.product_id, r.quantity`,
      );
      expect(rows.length, "the mixed scenario cancels an order after reserving").toBeGreaterThan(0);
      for (const r of rows) await db.pool.query("UPDATE warehouse.stock SET available = available - $2, reserved = reserved + $2 WHERE product_id = $1", [r.product_id, r.quantity]);
      const audit = await auditCheckouts(db.pool, SEEDED_STOCK);
      expect(audit.violations.join("\n")).toMatch(new RegExp(`stock held by 1 cancelled order\\(s\\): ${rows[0].order_id}`));
    });
  });

  it("--compare of a run with itself shows changes of zero, and of another run the change", () => {
    const cmp = spawnSync(process.execPath, ["dist/bench/bench-cli.js", "--compare", out, path.join(out, "results.json"), "--out", path.join(out, "cmp")], { cwd: repo, encoding: "utf8" });
    expect(cmp.status).toBe(0);
    expect(cmp.stdout).toContain("p50 ms");
    expect(fs.existsSync(path.join(out, "cmp", "compare.md"))).toBe(true);
    const self = compareResults(loadResults(out), loadResults(out));
    expect(self.rows).toHaveLength(2);
    for (const r of self.rows) {
      expect(r.p50[1] - r.p50[0]).toBe(0);
      expect(r.p99[1] - r.p99[0]).toBe(0);
      expect(r.throughput[1] - r.throughput[0]).toBe(0);
      expect(r.largestRssMb[1] - r.largestRssMb[0]).toBe(0);
      expect(r.cpuMsPerSaga[0]).toBeGreaterThan(0);
      expect(r.busiest[0]).toMatch(/^\S+ \d+%$/);
      expect(r.busiest[1]).toBe(r.busiest[0]);
    }
    expect(cmp.stdout).toMatch(/±0\.0, ±0\.0%/);
    expect(cmp.stdout).toContain("largest RSS MB");
    const slower = structuredClone(results);
    for (const c of slower.cells) {
      c.latency_ms.p50 *= 2;
      // the largest process is the system's: the bench's own load generator does not count
      for (const p of c.processes) p.peak_rss_mb = p.name.startsWith("bench") ? 9999 : 100;
      c.processes.push({ name: "another", cpu_s: 0, peak_rss_mb: 120 });
    }
    const other = compareResults(results, slower);
    expect(other.table.rows.every((r) => String(r[1]).includes("+100.0%"))).toBe(true);
    expect(other.rows.every((r) => r.largestRssMb[1] === 120)).toBe(true);
    // one run a side: no p-value, and the note says why
    expect(other.rows.every((r) => r.p.throughput === null && r.runs.join() === "1,1")).toBe(true);
    expect(cmp.stdout).toContain("no p-value where a side has one run");
    // a side listed as several runs: their cells taken together; the same run twice a side
    // changes nothing and shows nothing
    const listed = spawnSync(process.execPath, ["dist/bench/bench-cli.js", "--compare", `${out},${out}`, `${out},${out}`, "--out", path.join(out, "cmp2")], { cwd: repo, encoding: "utf8" });
    expect(listed.status, listed.stderr).toBe(0);
    expect(listed.stdout).toContain("(2 runs, ");
    expect(listed.stdout).toContain("runs per cell, A / B: 2 / 2");
    expect(listed.stdout).toMatch(/±0\.0, ±0\.0%, p=1\.0 ~\)/);
    expect(listed.stdout).not.toContain("no p-value where a side has one run");
    // a directory whose name holds a comma is still one run
    const commaDir = path.join(out, "run,one");
    fs.mkdirSync(commaDir, { recursive: true });
    fs.copyFileSync(path.join(out, "results.json"), path.join(commaDir, "results.json"));
    const comma = spawnSync(process.execPath, ["dist/bench/bench-cli.js", "--compare", commaDir, out, "--out", path.join(out, "cmp3")], { cwd: repo, encoding: "utf8" });
    expect(comma.status, comma.stderr).toBe(0);
    expect(comma.stdout).toContain("runs per cell, A / B: 1 / 1");
  });

  it("--compare names the closed-loop cells whose sagas the two sides counted differently", () => {
    // this run's cells as closed loops: counted from the event store, and from the clients' answers
    // (as every closed-loop cell was before the count was recorded)
    const asClosed = (from: "event store" | "answers" | undefined): BenchResults => {
      const r = structuredClone(results);
      for (const c of r.cells) {
        // the answers' count is the answered sagas over the window; the event store's, more
        c.throughput_sps = (c.sagas.confirmed + c.sagas.cancelled + (from === "event store" ? 8 : 0)) / c.load.duration_s;
        c.load = { kind: "closed", rate: c.throughput_sps, duration_s: c.load.duration_s, connections: 8 };
        c.key = cellKey(c);
        if (from) c.completed_from = from;
        else delete c.completed_from;
      }
      return r;
    };
    const keys = asClosed("event store").cells.map((c) => c.key).sort();
    expect(compareResults(asClosed(undefined), asClosed("event store")).countedDifferently.sort()).toEqual(keys);
    expect(compareResults(asClosed("answers"), asClosed("event store")).countedDifferently.sort()).toEqual(keys);
    expect(compareResults(asClosed(undefined), asClosed("answers")).countedDifferently).toEqual([]);
    expect(compareResults(asClosed("event store"), asClosed("event store")).countedDifferently).toEqual([]);
    // open-loop cells count their own sagas on either side
    expect(compareResults(results, results).countedDifferently).toEqual([]);
    // results from before the count was recorded tell it by their figures
    const unrecorded = asClosed("event store");
    for (const c of unrecorded.cells) delete c.completed_from;
    expect(unrecorded.cells.map(completedFrom)).toEqual(unrecorded.cells.map(() => "event store"));
    expect(asClosed(undefined).cells.map(completedFrom)).toEqual(unrecorded.cells.map(() => "answers"));
    expect(results.cells.map(completedFrom)).toEqual(results.cells.map(() => undefined));
    const dir = (name: string, r: BenchResults) => {
      fs.mkdirSync(path.join(out, name), { recursive: true });
      fs.writeFileSync(path.join(out, name, "results.json"), JSON.stringify(r));
      return path.join(out, name);
    };
    const cli = spawnSync(process.execPath, ["dist/bench/bench-cli.js", "--compare", dir("answers", asClosed(undefined)), dir("counted", asClosed("event store")), "--out", path.join(out, "cmp4")], { cwd: repo, encoding: "utf8" });
    expect(cli.status, cli.stderr).toBe(0);
    expect(cli.stdout).toMatch(/counted differently: \S+, \S+: one side counted/);
    for (const key of keys) expect(cli.stdout).toContain(key);
    expect(cli.stdout).toContain("about one saga per client per window short");
  });

  it("--compare of repeated runs says which changes their spread shows and which it does not", () => {
    // four runs a side, interleaved as --repeat makes them: throughput 1.5 times higher in every
    // B run, p50 jittering the same way on both sides
    const runs = (scale: number) => {
      const r = structuredClone(results);
      r.cells = [0.98, 1.01, 0.99, 1.02].flatMap((jitter, repeat) =>
        results.cells.map((c) => {
          const copy = structuredClone(c);
          copy.repeat = repeat;
          copy.throughput_sps = c.throughput_sps * scale * jitter;
          copy.latency_ms.p50 = c.latency_ms.p50 * jitter;
          // every process of B holds 5 MB less in every run: each B run's largest below every A run's
          for (const p of copy.processes) if (!p.name.startsWith("bench")) p.peak_rss_mb = 100 * jitter - (scale - 1) * 10;
          return copy;
        }),
      );
      return r;
    };
    const cmp = compareResults(runs(1), runs(1.5));
    expect(cmp.rows).toHaveLength(2);
    for (const r of cmp.rows) {
      expect(r.runs).toEqual([4, 4]);
      // four runs a side, all of B's above all of A's: the smallest two-sided p of 4 + 4, 2/70
      expect(r.p.throughput).toBeCloseTo(2 / 70, 10);
      expect(r.p.p50).toBe(1);
      expect(r.p.largestRssMb).toBeCloseTo(2 / 70, 10);
      // shown as the most any run reached: 102 against 97
      expect(r.largestRssMb).toEqual([102, 97]);
    }
    for (const row of cmp.table.rows) {
      expect(String(row[3])).toMatch(/\+50\.0%, p=0\.029\)$/);
      expect(String(row[1])).toMatch(/p=1\.0 ~\)$/);
      expect(String(row[9])).toMatch(/^102\.0 → 97\.0 \(-5\.0, -4\.9%, p=0\.029\)$/);
    }

    // the report's O÷C: the orchestrated runs' p50 all above the choreographed ones', their p99s
    // interleaved; a single run of each gives the ratio alone
    const styles = structuredClone(results);
    styles.cells = [0.98, 1.01, 0.99, 1.02].flatMap((jitter, repeat) =>
      results.cells.map((c) => {
        const copy = structuredClone(c);
        copy.repeat = repeat;
        copy.latency_ms.p50 = (c.mode === "orchestrated" ? 200 : 100) * jitter;
        copy.latency_ms.p99 = 300 * (c.mode === "orchestrated" ? jitter : 2.01 - jitter);
        return copy;
      }),
    );
    const [row] = summaryTable(foldRepeats(styles.cells)).rows;
    expect(row![5]).toBe("2.00×, p=0.029");
    expect(row![7]).toMatch(/^0\.99×, p=0\.\d+ ~$/);
    const [single] = summaryTable(foldRepeats(results.cells)).rows;
    expect(single![5]).toMatch(/^\d+\.\d\d×$/);
  });
});
