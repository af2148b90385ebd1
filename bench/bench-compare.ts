import fs from "node:fs";
import path from "node:path";
import type { BenchResults, CellResult } from "./bench-results.js";
import { foldRepeats, markdownTable, textTable, type Table } from "./bench-report.js";

/** `--compare A B`: the change from run A to run B, cell by cell (matched by key). */

export function loadResults(p: string): BenchResults {
  const file = fs.existsSync(p) && fs.statSync(p).isDirectory() ? path.join(p, "results.json") : p;
  if (!fs.existsSync(file)) throw new Error(`no results at ${file}`);
  const r = JSON.parse(fs.readFileSync(file, "utf8")) as BenchResults;
  if (!Array.isArray(r.cells)) throw new Error(`${file} is not a bench results.json (no cells)`);
  return r;
}

const change = (a: number, b: number) => {
  const d = b - a;
  const pct = a === 0 ? (b === 0 ? 0 : Infinity) : (d / a) * 100;
  const sign = (x: number) => (x > 0 ? "+" : x < 0 ? "" : "±");
  return { d, text: `${a.toFixed(1)} → ${b.toFixed(1)} (${sign(d)}${d.toFixed(1)}, ${Number.isFinite(pct) ? `${sign(pct)}${pct.toFixed(1)}%` : "new"})` };
};

/** A figure one of the runs lacks (PGlite's database CPU, results from before it was measured) shows "–". */
const changeOrDash = (a: number | null | undefined, b: number | null | undefined) =>
  a === null || a === undefined || b === null || b === undefined ? "–" : change(a, b).text;

/** "saga-orchestrator 98%": the cell's busiest consumer, or null where it was not measured. */
const busiestOf = (c: CellResult): string | null => (c.stages?.length ? `${c.stages[0]!.consumer} ${Math.round(c.stages[0]!.busy * 100)}%` : null);

export interface Comparison {
  table: Table;
  rows: { key: string; p50: [number, number]; p99: [number, number]; throughput: [number, number]; cpuMsPerSaga: [number | null, number | null]; databaseCpuMsPerSaga: [number | null, number | null]; statementsPerSaga: [number | null, number | null]; walKbPerSaga: [number | null, number | null]; largestRssMb: [number, number]; busiest: [string | null, string | null] }[];
  onlyInA: string[];
  onlyInB: string[];
}

export function compareResults(a: BenchResults, b: BenchResults): Comparison {
  const A = new Map(foldRepeats(a.cells).map((c) => [c.key, c]));
  const B = new Map(foldRepeats(b.cells).map((c) => [c.key, c]));
  const rows: Comparison["rows"] = [];
  const table: Table = { headers: ["cell", "p50 ms", "p99 ms", "sagas/s", "CPU ms/saga", "DB CPU ms/saga", "DB stmts/saga", "WAL KB/saga", "largest RSS MB", "busiest consumer A → B", "audit A / B"], rows: [] };
  for (const [key, ca] of A) {
    const cb = B.get(key);
    if (!cb) continue;
    rows.push({
      key,
      p50: [ca.latency_ms.p50, cb.latency_ms.p50],
      p99: [ca.latency_ms.p99, cb.latency_ms.p99],
      throughput: [ca.throughput_sps, cb.throughput_sps],
      cpuMsPerSaga: [ca.cpu_ms_per_saga, cb.cpu_ms_per_saga],
      databaseCpuMsPerSaga: [ca.database_cpu_ms_per_saga, cb.database_cpu_ms_per_saga],
      statementsPerSaga: [ca.statements_per_saga, cb.statements_per_saga],
      walKbPerSaga: [ca.wal_kb_per_saga, cb.wal_kb_per_saga],
      largestRssMb: [ca.largest_rss_mb, cb.largest_rss_mb],
      busiest: [busiestOf(ca), busiestOf(cb)],
    });
    table.rows.push([
      key,
      change(ca.latency_ms.p50, cb.latency_ms.p50).text,
      change(ca.latency_ms.p99, cb.latency_ms.p99).text,
      change(ca.throughput_sps, cb.throughput_sps).text,
      changeOrDash(ca.cpu_ms_per_saga, cb.cpu_ms_per_saga),
      changeOrDash(ca.database_cpu_ms_per_saga, cb.database_cpu_ms_per_saga),
      changeOrDash(ca.statements_per_saga, cb.statements_per_saga),
      changeOrDash(ca.wal_kb_per_saga, cb.wal_kb_per_saga),
      change(ca.largest_rss_mb, cb.largest_rss_mb).text,
      `${busiestOf(ca) ?? "–"} → ${busiestOf(cb) ?? "–"}`,
      `${ca.audit.ok ? "clean" : "FAILED"} / ${cb.audit.ok ? "clean" : "FAILED"}`,
    ]);
  }
  return { table, rows, onlyInA: [...A.keys()].filter((k) => !B.has(k)), onlyInB: [...B.keys()].filter((k) => !A.has(k)) };
}

/** Prints the comparison and writes compare.md and compare.json into `outDir`. */
export function writeComparison(aPath: string, bPath: string, outDir: string): Comparison {
  const a = loadResults(aPath);
  const b = loadResults(bPath);
  const cmp = compareResults(a, b);
  const head = `A: ${aPath} (${a.meta.started_at}, commit ${a.meta.commit})\nB: ${bPath} (${b.meta.started_at}, commit ${b.meta.commit})`;
  const notes = [
    ...(cmp.onlyInA.length ? [`only in A: ${cmp.onlyInA.join(", ")}`] : []),
    ...(cmp.onlyInB.length ? [`only in B: ${cmp.onlyInB.join(", ")}`] : []),
  ];
  console.log(`${head}\n\n${textTable(cmp.table)}${notes.length ? `\n\n${notes.join("\n")}` : ""}`);
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, "compare.md"), `# saga-bench: A → B\n\n${head.replace(/\n/g, "  \n")}\n\n${markdownTable(cmp.table)}\n${notes.map((n) => `\n- ${n}`).join("")}\n`);
  fs.writeFileSync(path.join(outDir, "compare.json"), JSON.stringify({ a: aPath, b: bPath, ...cmp }, null, 2));
  console.log(`\nwritten: ${path.join(outDir, "compare.md")}, compare.json`);
  return cmp;
}
