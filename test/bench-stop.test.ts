import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { connect } from "nats";
import { afterAll, describe, expect, it } from "vitest";
import type { BenchResults } from "../bench/bench-results.js";
import { freshPostgresDatabase } from "../bench/fresh-database.js";
import { cleanUpOnLeaving, teardown } from "../bench/teardown.js";
import { available, clusterAvailable, NATS_URL, POSTGRES_URL } from "./support/infrastructure.js";

/**
 * `npm run bench` stopped by SIGTERM (as `timeout` or a CI runner stops it) leaves nothing
 * behind: not the running system's processes, not its database, not its broker namespace or the
 * floor's, and it writes the cells that ended. Over NATS and PostgreSQL, where each of those
 * would outlive the bench.
 */

const repo = path.resolve(import.meta.dirname, "..");
const outDirs: string[] = [];

async function benchDatabases(): Promise<Set<string>> {
  const c = new pg.Client({ connectionString: POSTGRES_URL });
  await c.connect();
  try {
    const { rows } = await c.query("SELECT datname FROM pg_database WHERE datname LIKE 'saga_bench%'");
    return new Set(rows.map((r) => r.datname as string));
  } finally {
    await c.end();
  }
}

/** The bench's namespaces: `b…` for a cell's system, `f…` for the floor (tests use `t…`). */
async function benchStreams(): Promise<Set<string>> {
  const nc = await connect({ servers: NATS_URL });
  try {
    const jsm = await nc.jetstreamManager();
    const names = new Set<string>();
    for await (const s of jsm.streams.list()) if (/^[bf][0-9a-f]{8}_/.test(s.config.name)) names.add(s.config.name);
    return names;
  } finally {
    await nc.close();
  }
}

const alive = (pid: number) => fs.existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, "utf8"));

function childrenOf(pid: number): number[] {
  const r = spawnSync("pgrep", ["-P", String(pid)], { encoding: "utf8" });
  return r.stdout.split("\n").filter(Boolean).map(Number);
}

/** Starts the bench over NATS; resolves with it once a line of its output matches `until`. */
function startBench(args: string[], until: RegExp): Promise<{ bench: ChildProcess; out: string; output: () => string }> {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), "saga-bench-stop-"));
  outDirs.push(out);
  const bench = spawn(process.execPath, ["dist/bench/bench-cli.js", "--modes", "orchestrated", "--transports", "nats", "--port", "18370", "--out", out, ...args], {
    cwd: repo,
    env: { ...process.env, DATABASE_URL: POSTGRES_URL, NATS_URL },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let text = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no line matching ${until} in 240 s:\n${text}`)), 240_000);
    const look = (chunk: Buffer) => {
      text += chunk.toString();
      if (until.test(text)) {
        clearTimeout(timer);
        resolve({ bench, out, output: () => text });
      }
    };
    bench.stdout!.on("data", look);
    bench.stderr!.on("data", look);
    bench.once("exit", (code) => reject(new Error(`the bench exited (${code}) before ${until}:\n${text}`)));
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once("exit", (code) => resolve(code))));
}

afterAll(() => {
  for (const d of outDirs) fs.rmSync(d, { recursive: true, force: true });
});

describe("the bench stopped by SIGTERM", async () => {
  const up = await clusterAvailable("nats");

  it.skipIf(!up)("in a cell: stops its system, removes its database and namespace, writes the cells that ended, exits 143", async () => {
    const databases = await benchDatabases();
    const streams = await benchStreams();
    // two cells; the signal comes while the second one's twelve processes run
    const { bench, out, output } = await startBench(
      ["--scenarios", "happy", "--rates", "10,20", "--no-saturate", "--duration", "2", "--warmup", "1"],
      /\[2\/2\][^\n]*warm-up/,
    );
    const services = childrenOf(bench.pid!);
    expect(services.length).toBe(12);
    bench.kill("SIGTERM");
    expect(await exited(bench)).toBe(143);

    expect(services.filter(alive)).toEqual([]);
    expect([...(await benchDatabases())].filter((d) => !databases.has(d))).toEqual([]);
    expect([...(await benchStreams())].filter((s) => !streams.has(s))).toEqual([]);
    const results = JSON.parse(fs.readFileSync(path.join(out, "results.json"), "utf8")) as BenchResults;
    expect(results.cells.map((c) => c.key)).toEqual(["orchestrated/nats/cluster/happy/open@10"]);
    expect(results.skipped.map((s) => s.why)).toContain("the bench was stopped (SIGTERM)");
    expect(output()).toMatch(/SIGTERM: stopping now, removing what this run started/);
  }, 300_000);

  it.skipIf(!up)("while it measures the floor: removes the floor's database and namespace, exits 143", async () => {
    const databases = await benchDatabases();
    const streams = await benchStreams();
    const { bench } = await startBench(["--scenarios", "happy", "--rates", "10", "--no-saturate", "--duration", "2", "--warmup", "1"], /^floor: measuring/m);
    // into the floor's measurement of NATS (the PostgreSQL one comes first and takes a moment)
    await new Promise((r) => setTimeout(r, 400));
    bench.kill("SIGTERM");
    expect(await exited(bench)).toBe(143);
    expect([...(await benchDatabases())].filter((d) => !databases.has(d))).toEqual([]);
    expect([...(await benchStreams())].filter((s) => !streams.has(s))).toEqual([]);
  }, 120_000);
});

describe("a database the bench is creating when it is stopped", async () => {
  const up = await available("postgres");

  it.skipIf(!up)("is removed once its creation ends, not missed by a drop that came first", async () => {
    const fresh = freshPostgresDatabase(POSTGRES_URL, "saga_bench_interrupted");
    cleanUpOnLeaving(() => fresh.drop());
    const creating = fresh.create();
    // the signal's clean-up runs while CREATE DATABASE is still on its way
    await teardown((line) => expect.fail(line));
    await creating;
    expect(await benchDatabases()).not.toContain(fresh.name);
  });
});
