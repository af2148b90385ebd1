import fs from "node:fs";
import path from "node:path";
import { completedFrom, type BenchResults, type CellResult } from "./bench-results.js";
import { brokerCpuMsPerSaga, cpuMsPerSaga, databaseCpuMsPerSaga, foldRepeats, largestRssMb, markdownTable, statementsPerSaga, textTable, walKbPerSaga, type Table } from "./bench-report.js";
import { describeP, mannWhitneyP, SIGNIFICANCE } from "./run-spread.js";

/** `--compare A B`: the change from run A to run B, cell by cell (matched by key). */

export function loadResults(p: string): BenchResults {
  const file = fs.existsSync(p) && fs.statSync(p).isDirectory() ? path.join(p, "results.json") : p;
  if (!fs.existsSync(file)) throw new Error(`no results at ${file}`);
  const r = JSON.parse(fs.readFileSync(file, "utf8")) as BenchResults;
  if (!Array.isArray(r.cells)) throw new Error(`${file} is not a bench results.json (no cells)`);
  return r;
}

/**
 * One side of a comparison: a run, or several runs of one build given as a comma-separated list
 * (`a1,a2,a3`), whose cells are taken together as repetitions. Their start times and commits
 * are listed in the header.
 */
export function loadSide(spec: string): { results: BenchResults; label: string } {
  // a path that exists is one run, even with a comma in its name
  const paths = fs.existsSync(spec) ? [spec] : spec.split(",").filter((p) => p.length > 0);
  if (paths.length === 0) throw new Error(`no results named in "${spec}"`);
  const runs = paths.map(loadResults);
  const commits = [...new Set(runs.map((r) => r.meta.commit))];
  const results: BenchResults = { ...runs[0]!, cells: runs.flatMap((r) => r.cells) };
  const label =
    runs.length === 1
      ? `${spec} (${runs[0]!.meta.started_at}, commit ${runs[0]!.meta.commit})`
      : `${paths.join(", ")} (${runs.length} runs, ${runs[0]!.meta.started_at} to ${runs.at(-1)!.meta.started_at}, commit ${commits.join(" and ")})`;
  return { results, label };
}

/**
 * "74.4 → 85.1 (+10.8, +14.5%)", the medians of each side's runs; with several runs a side, the
 * p-value of the change, and "~" where the runs' spread does not show it (`run-spread.ts`).
 */
const change = (a: number, b: number, p: number | null = null) => {
  const d = b - a;
  const pct = a === 0 ? (b === 0 ? 0 : Infinity) : (d / a) * 100;
  const sign = (x: number) => (x > 0 ? "+" : x < 0 ? "" : "±");
  return { d, text: `${a.toFixed(1)} → ${b.toFixed(1)} (${sign(d)}${d.toFixed(1)}, ${Number.isFinite(pct) ? `${sign(pct)}${pct.toFixed(1)}%` : "new"}${describeP(p)})` };
};

/** A figure one of the runs lacks (PGlite's database CPU, results from before it was measured) shows "–". */
const changeOrDash = (a: number | null | undefined, b: number | null | undefined, p: number | null = null) =>
  a === null || a === undefined || b === null || b === undefined ? "–" : change(a, b, p).text;

/** Every run's value of one figure in the cells of one key, leaving out runs that lack it. */
const runsOf = (cells: CellResult[], f: (c: CellResult) => number | null | undefined): number[] =>
  cells.map(f).filter((x): x is number => x !== null && x !== undefined && Number.isFinite(x));

/**
 * The figures whose changes get a p-value. The largest resident set is shown as the most that
 * any run of the side reached (a limit is about the worst run), and tested on each run's own
 * largest.
 */
const TESTED = {
  p50: (c: CellResult) => c.latency_ms.p50,
  p99: (c: CellResult) => c.latency_ms.p99,
  throughput: (c: CellResult) => c.throughput_sps,
  cpuMsPerSaga,
  databaseCpuMsPerSaga,
  brokerCpuMsPerSaga,
  statementsPerSaga,
  walKbPerSaga,
  largestRssMb,
};
type Tested = keyof typeof TESTED;

/** "saga-orchestrator 98%": the cell's busiest consumer, or null where it was not measured. */
const busiestOf = (c: CellResult): string | null => (c.stages?.length ? `${c.stages[0]!.consumer} ${Math.round(c.stages[0]!.busy * 100)}%` : null);

export interface Comparison {
  table: Table;
  rows: { key: string; runs: [number, number]; p: Record<Tested, number | null>; p50: [number, number]; p99: [number, number]; throughput: [number, number]; cpuMsPerSaga: [number | null, number | null]; databaseCpuMsPerSaga: [number | null, number | null]; brokerCpuMsPerSaga: [number | null, number | null]; statementsPerSaga: [number | null, number | null]; walKbPerSaga: [number | null, number | null]; largestRssMb: [number, number]; busiest: [string | null, string | null] }[];
  onlyInA: string[];
  onlyInB: string[];
  /** Closed-loop cells whose completed sagas the two sides counted differently (`completed_from`). */
  countedDifferently: string[];
}

export function compareResults(a: BenchResults, b: BenchResults): Comparison {
  const A = new Map(foldRepeats(a.cells).map((c) => [c.key, c]));
  const B = new Map(foldRepeats(b.cells).map((c) => [c.key, c]));
  const rows: Comparison["rows"] = [];
  const countedDifferently: string[] = [];
  const table: Table = { headers: ["cell", "p50 ms", "p99 ms", "sagas/s", "CPU ms/saga", "DB CPU ms/saga", "broker CPU ms/saga", "DB stmts/saga", "WAL KB/saga", "largest RSS MB", "busiest consumer A → B", "audit A / B"], rows: [] };
  for (const [key, ca] of A) {
    const cb = B.get(key);
    if (!cb) continue;
    const runsA = a.cells.filter((c) => c.key === key);
    const runsB = b.cells.filter((c) => c.key === key);
    const p = Object.fromEntries(
      Object.entries(TESTED).map(([name, f]) => [name, mannWhitneyP(runsOf(runsA, f), runsOf(runsB, f))]),
    ) as Record<Tested, number | null>;
    if (completedFrom(runsA[0]!) !== completedFrom(runsB[0]!)) countedDifferently.push(key);
    rows.push({
      key,
      runs: [runsA.length, runsB.length],
      p,
      p50: [ca.latency_ms.p50, cb.latency_ms.p50],
      p99: [ca.latency_ms.p99, cb.latency_ms.p99],
      throughput: [ca.throughput_sps, cb.throughput_sps],
      cpuMsPerSaga: [ca.cpu_ms_per_saga, cb.cpu_ms_per_saga],
      databaseCpuMsPerSaga: [ca.database_cpu_ms_per_saga, cb.database_cpu_ms_per_saga],
      brokerCpuMsPerSaga: [ca.broker_cpu_ms_per_saga, cb.broker_cpu_ms_per_saga],
      statementsPerSaga: [ca.statements_per_saga, cb.statements_per_saga],
      walKbPerSaga: [ca.wal_kb_per_saga, cb.wal_kb_per_saga],
      largestRssMb: [ca.largest_rss_mb, cb.largest_rss_mb],
      busiest: [busiestOf(ca), busiestOf(cb)],
    });
    table.rows.push([
      key,
      change(ca.latency_ms.p50, cb.latency_ms.p50, p.p50).text,
      change(ca.latency_ms.p99, cb.latency_ms.p99, p.p99).text,
      change(ca.throughput_sps, cb.throughput_sps, p.throughput).text,
      changeOrDash(ca.cpu_ms_per_saga, cb.cpu_ms_per_saga, p.cpuMsPerSaga),
      changeOrDash(ca.database_cpu_ms_per_saga, cb.database_cpu_ms_per_saga, p.databaseCpuMsPerSaga),
      changeOrDash(ca.broker_cpu_ms_per_saga, cb.broker_cpu_ms_per_saga, p.brokerCpuMsPerSaga),
      changeOrDash(ca.statements_per_saga, cb.statements_per_saga, p.statementsPerSaga),
      changeOrDash(ca.wal_kb_per_saga, cb.wal_kb_per_saga, p.walKbPerSaga),
      change(ca.largest_rss_mb, cb.largest_rss_mb, p.largestRssMb).text,
      `${busiestOf(ca) ?? "–"} → ${busiestOf(cb) ?? "–"}`,
      `${ca.audit.ok ? "clean" : "FAILED"} / ${cb.audit.ok ? "clean" : "FAILED"}`,
    ]);
  }
  return { table, rows, onlyInA: [...A.keys()].filter((k) => !B.has(k)), onlyInB: [...B.keys()].filter((k) => !A.has(k)), countedDifferently };
}

/** Prints the comparison and writes compare.md and compare.json into `outDir`. */
export function writeComparison(aPath: string, bPath: string, outDir: string): Comparison {
  const a = loadSide(aPath);
  const b = loadSide(bPath);
  const cmp = compareResults(a.results, b.results);
  const head = `A: ${a.label}\nB: ${b.label}`;
  const runs = [...new Set(cmp.rows.map((r) => `${r.runs[0]} / ${r.runs[1]}`))];
  const single = cmp.rows.some((r) => Math.min(...r.runs) < 2);
  const notes = [
    `runs per cell, A / B: ${runs.join(", ") || "–"}; each figure is the median of its cell's runs`,
    ...(cmp.rows.some((r) => Math.min(...r.runs) >= 2)
      ? [`p: two-sided Mann–Whitney U test of the runs; "~" marks a change within their spread (p > ${SIGNIFICANCE}), not shown by them`]
      : []),
    ...(single
      ? ["no p-value where a side has one run: its change cannot be told from the run-to-run spread (repeat the runs, --repeat N or several runs a side as A1,A2,A3 B1,B2,B3; four or more a side)"]
      : []),
    ...(cmp.onlyInA.length ? [`only in A: ${cmp.onlyInA.join(", ")}`] : []),
    ...(cmp.onlyInB.length ? [`only in B: ${cmp.onlyInB.join(", ")}`] : []),
    ...(cmp.countedDifferently.length
      ? [
          `counted differently: ${cmp.countedDifferently.join(", ")}: one side counted these closed-loop cells' sagas from its clients' answers, the other the system's from the event store; the answers come about one saga per client per window short (128 clients over 10 s: 12.8 sagas/s), so their sagas/s and per-saga figures move by that much from the count alone`,
        ]
      : []),
  ];
  console.log(`${head}\n\n${textTable(cmp.table)}${notes.length ? `\n\n${notes.join("\n")}` : ""}`);
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, "compare.md"), `# saga-bench: A → B\n\n${head.replace(/\n/g, "  \n")}\n\n${markdownTable(cmp.table)}\n${notes.map((n) => `\n- ${n}`).join("")}\n`);
  fs.writeFileSync(path.join(outDir, "compare.json"), JSON.stringify({ a: aPath, b: bPath, ...cmp }, null, 2));
  console.log(`\nwritten: ${path.join(outDir, "compare.md")}, compare.json`);
  return cmp;
}
