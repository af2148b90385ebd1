import { ofMaxLabel, type BenchResults, type CellResult } from "./bench-results.js";
import type { Chart } from "./bench-charts.js";
import { foldStages } from "./consumer-stages.js";
import { median } from "./saga-analysis.js";
import { describeP, mannWhitneyP } from "./run-spread.js";

/**
 * report.md, report.html and the terminal's summary, all from one set of tables. Repetitions
 * of a cell are folded into their median, with the spread (min–max) of p50 and throughput; with
 * two or more a style, the summary's O÷C ratios carry the p-value of the styles' runs.
 */

export interface Table {
  headers: string[];
  rows: (string | number)[][];
}

export interface FoldedCell extends CellResult {
  repeats: number;
  spread: { p50: [number, number]; throughput: [number, number] };
  /** Each repetition's p50 and p99, in run order. */
  runs: { p50: number[]; p99: number[] };
  /** The largest resident set of any of the system's processes, the most across repetitions. */
  largest_rss_mb: number;
  /** The system's CPU over the measured seconds per completed saga (median); null when none completed. */
  cpu_ms_per_saga: number | null;
  /** The same for the database's PostgreSQL backends; null where not measured (PGlite: inside the system's CPU). */
  database_cpu_ms_per_saga: number | null;
  /** The same for the broker's process; null where not measured (in process: no broker). */
  broker_cpu_ms_per_saga: number | null;
  /** Statements sent to the database over the measured window per completed saga (median); null where not measured. */
  statements_per_saga: number | null;
  /** Write-ahead log per completed saga, KB (median); null where not measured (PGlite). */
  wal_kb_per_saga: number | null;
}

/** The processes of the system under test (not the bench's own load generator). */
const systemProcesses = (c: CellResult) => c.processes.filter((p) => !p.name.startsWith("bench"));
const systemCpuS = (c: CellResult) => systemProcesses(c).reduce((s, p) => s + p.cpu_s, 0);
/** The most memory any process of the system held over the cell (MB resident at its peak). */
export const largestRssMb = (c: CellResult) => Math.max(0, ...systemProcesses(c).map((p) => p.peak_rss_mb));
/**
 * A cell's total over the measured window per completed saga; null when unmeasured or none
 * completed. An open loop's window holds its own sagas whole (it waits for them); a closed loop's
 * holds what the system did in it, so its sagas are those the system completed in it.
 */
const perCompletedSaga = (c: CellResult, total: number | null | undefined) => {
  const completed = c.load.kind === "closed" ? c.throughput_sps * c.load.duration_s : c.sagas.confirmed + c.sagas.cancelled;
  return completed > 0 && total !== null && total !== undefined ? total / completed : null;
};
const ms = (s: number | null | undefined) => (s === null || s === undefined ? null : s * 1000);
const kb = (bytes: number | null | undefined) => (bytes === null || bytes === undefined ? null : bytes / 1024);
/** Per completed saga over the measured window: the system's CPU (every process but the load generator's), the database's and the broker's, ms; statements sent; WAL, KB. */
export const cpuMsPerSaga = (c: CellResult) => perCompletedSaga(c, ms(systemCpuS(c)));
export const databaseCpuMsPerSaga = (c: CellResult) => perCompletedSaga(c, ms(c.database_cpu_s));
export const brokerCpuMsPerSaga = (c: CellResult) => perCompletedSaga(c, ms(c.broker_cpu_s));
export const statementsPerSaga = (c: CellResult) => perCompletedSaga(c, c.db_statements);
export const walKbPerSaga = (c: CellResult) => perCompletedSaga(c, kb(c.db_wal_bytes));
const medianOf = (xs: (number | null)[]) => {
  const known = xs.filter((x): x is number => x !== null);
  return known.length > 0 ? median(known) : null;
};


/** One cell per key: the median of each figure across repetitions. */
export function foldRepeats(cells: CellResult[]): FoldedCell[] {
  const groups = new Map<string, CellResult[]>();
  for (const c of cells) groups.set(c.key, [...(groups.get(c.key) ?? []), c]);
  return [...groups.values()].map((g) => {
    const pick = (f: (c: CellResult) => number) => median(g.map(f));
    const first = g[0];
    const span = (f: (c: CellResult) => number): [number, number] => [Math.min(...g.map(f)), Math.max(...g.map(f))];
    return {
      ...first,
      repeats: g.length,
      latency_ms: {
        p50: pick((c) => c.latency_ms.p50),
        p90: pick((c) => c.latency_ms.p90),
        p99: pick((c) => c.latency_ms.p99),
        p999: pick((c) => c.latency_ms.p999),
        max: pick((c) => c.latency_ms.max),
      },
      throughput_sps: pick((c) => c.throughput_sps),
      confirmed_sps: pick((c) => c.confirmed_sps),
      cancelled_sps: pick((c) => c.cancelled_sps),
      x_floor: first.x_floor === null ? null : pick((c) => c.x_floor ?? 0),
      load: { ...first.load, rate: pick((c) => c.load.rate) },
      audit: { ok: g.every((c) => c.audit.ok), violations: g.flatMap((c) => c.audit.violations) },
      spread: { p50: span((c) => c.latency_ms.p50), throughput: span((c) => c.throughput_sps) },
      runs: { p50: g.map((c) => c.latency_ms.p50), p99: g.map((c) => c.latency_ms.p99) },
      largest_rss_mb: Math.max(...g.map(largestRssMb)),
      cpu_ms_per_saga: medianOf(g.map(cpuMsPerSaga)),
      database_cpu_ms_per_saga: medianOf(g.map(databaseCpuMsPerSaga)),
      broker_cpu_ms_per_saga: medianOf(g.map(brokerCpuMsPerSaga)),
      statements_per_saga: medianOf(g.map(statementsPerSaga)),
      wal_kb_per_saga: medianOf(g.map(walKbPerSaga)),
      stages: foldStages(g.map((c) => c.stages)),
    };
  });
}

const f = (x: number | null | undefined, digits = 1) => (x === null || x === undefined ? "–" : Number(x.toFixed(digits)).toString());
/** Open-loop cells at a fraction of the maximum pair the two styles by that fraction (their rates differ). */
const loadLabel = (c: CellResult) => (c.load.kind === "open" ? `open ${ofMaxLabel(c.load) ?? `${c.load.rate}/s`}` : `closed ×${c.load.connections}`);
/** The label with the rate a cell at a fraction of the maximum ran at. */
const loadWithRate = (c: CellResult) => loadLabel(c) + (c.load.of_max ? ` (${f(c.load.rate)}/s)` : "");
const ratio = (a: number | null | undefined, b: number | null | undefined) => (a && b ? `${(a / b).toFixed(2)}×` : "–");
/** O÷C of a latency percentile; with repetitions of both styles, whether their runs show it (`run-spread.ts`). */
const latencyRatio = (o: FoldedCell | undefined, c: FoldedCell | undefined, q: "p50" | "p99") =>
  ratio(o?.latency_ms[q], c?.latency_ms[q]) + (o && c ? describeP(mannWhitneyP(o.runs[q], c.runs[q])) : "");

/** Orchestrated beside choreographed, per transport, scenario and load, with ratios. */
export function summaryTable(cells: FoldedCell[]): Table {
  const rows: Table["rows"] = [];
  const byPair = new Map<string, { o?: FoldedCell; c?: FoldedCell }>();
  for (const c of cells) {
    const k = `${c.transport}/${c.topology}|${c.scenario}|${loadLabel(c)}`;
    const pair = byPair.get(k) ?? {};
    if (c.mode === "orchestrated") pair.o = c;
    else pair.c = c;
    byPair.set(k, pair);
  }
  for (const [k, { o, c }] of byPair) {
    const [transport, scenario, load] = k.split("|");
    rows.push([
      transport,
      scenario,
      load,
      `${f(o?.throughput_sps)} / ${f(c?.throughput_sps)}`,
      `${f(o?.latency_ms.p50)} / ${f(c?.latency_ms.p50)}`,
      latencyRatio(o, c, "p50"),
      `${f(o?.latency_ms.p99)} / ${f(c?.latency_ms.p99)}`,
      latencyRatio(o, c, "p99"),
      `${f(o?.x_floor)} / ${f(c?.x_floor)}`,
      `${f(o?.messages_per_saga)} / ${f(c?.messages_per_saga)}`,
      `${f(o?.statements_per_saga, 0)} / ${f(c?.statements_per_saga, 0)}`,
      `${f(o?.wal_kb_per_saga)} / ${f(c?.wal_kb_per_saga)}`,
      `${f(o?.cpu_ms_per_saga)} / ${f(c?.cpu_ms_per_saga)}`,
      `${f(o?.database_cpu_ms_per_saga)} / ${f(c?.database_cpu_ms_per_saga)}`,
      `${f(o?.broker_cpu_ms_per_saga)} / ${f(c?.broker_cpu_ms_per_saga)}`,
      [o, c].every((x) => !x || x.audit.ok) ? "clean" : "FAILED",
    ]);
  }
  return {
    headers: ["transport", "scenario", "load", "sagas/s O / C", "p50 ms O / C", "p50 O÷C", "p99 ms O / C", "p99 O÷C", "× floor O / C", "msgs/saga O / C", "DB stmts/saga O / C", "WAL KB/saga O / C", "CPU ms/saga O / C", "DB CPU ms/saga O / C", "broker CPU ms/saga O / C", "audit"],
    rows,
  };
}

export function cellTable(cells: FoldedCell[]): Table {
  return {
    headers: ["style", "transport", "scenario", "load", "started", "confirmed", "cancelled", "lost/stuck/dup", "sagas/s", "p50", "p90", "p99", "p99.9", "max", "comp. p50/p99", "msgs/saga", "writes/saga", "DB stmts/saga", "WAL KB/saga", "CPU s", "DB CPU s", "broker CPU s", "peak RSS MB", "floor ms", "× floor", "audit"],
    rows: cells.map((c) => [
      c.mode,
      `${c.transport}/${c.topology}`,
      c.scenario,
      loadWithRate(c) + (c.repeats > 1 ? ` (median of ${c.repeats}, p50 ${f(c.spread.p50[0])}–${f(c.spread.p50[1])})` : ""),
      c.sagas.started,
      c.sagas.confirmed,
      c.sagas.cancelled,
      `${c.sagas.lost}/${c.sagas.stuck}/${c.sagas.duplicated}`,
      f(c.throughput_sps),
      f(c.latency_ms.p50),
      f(c.latency_ms.p90),
      f(c.latency_ms.p99),
      f(c.latency_ms.p999),
      f(c.latency_ms.max),
      c.compensation_latency_ms ? `${f(c.compensation_latency_ms.p50)} / ${f(c.compensation_latency_ms.p99)}` : "–",
      f(c.messages_per_saga),
      f(c.db_writes_per_saga),
      f(c.statements_per_saga),
      f(c.wal_kb_per_saga),
      f(systemCpuS(c), 2),
      f(c.database_cpu_s, 2),
      f(c.broker_cpu_s, 2),
      f(systemProcesses(c).reduce((s, p) => s + p.peak_rss_mb, 0), 0),
      f(c.floor_ms, 2),
      f(c.x_floor),
      c.audit.ok ? "clean" : "FAILED",
    ]),
  };
}

export function stepTable(cells: FoldedCell[]): Table {
  const open = cells.filter((c) => c.load.kind === "open" && Object.keys(c.steps_ms).length > 0);
  const steps = [...new Set(open.flatMap((c) => Object.keys(c.steps_ms)))];
  return {
    headers: ["style", "transport", "scenario", "load", ...steps.map((s) => `${s} ms`)],
    rows: open.map((c) => [
      c.mode,
      `${c.transport}/${c.topology}`,
      c.scenario,
      loadWithRate(c),
      ...steps.map((s) => {
        const split = c.steps_split_ms[s];
        if (c.steps_ms[s] === undefined) return "–";
        return split && split.coordination_ms > 0 ? `${f(c.steps_ms[s])} (${f(split.coordination_ms)} coord. + ${f(split.participant_ms)} part.)` : f(c.steps_ms[s]);
      }),
    ]),
  };
}

/** Consumers shown per cell in the stage table: the busiest, which hold the others back. */
const STAGES_SHOWN = 3;

export function stageTable(cells: FoldedCell[]): Table {
  return {
    headers: ["style", "transport", "scenario", "load", "consumer", "process", "busy %", "transactions/s", "messages/transaction", "wait ms/message"],
    rows: cells.flatMap((c) =>
      (c.stages ?? [])
        .slice(0, STAGES_SHOWN)
        .map((s) => [c.mode, `${c.transport}/${c.topology}`, c.scenario, loadWithRate(c), s.consumer, s.node, f(s.busy * 100, 0), f(s.transactions_per_s), f(s.messages_per_transaction), f(s.wait_ms)]),
    ),
  };
}

export function floorTable(r: BenchResults): Table {
  return {
    headers: ["transport", "request/reply hop ms", "channel hop ms", "commit ms", "statement ms", "database"],
    rows: Object.entries(r.floor).map(([t, x]) => [t, f(x!.request_reply_ms, 3), f(x!.channel_hop_ms, 3), f(x!.commit_ms, 3), f(x!.statement_ms, 3), x!.database]),
  };
}

export function processTable(cells: FoldedCell[]): Table {
  return {
    headers: ["style", "transport", "scenario", "load", "process", "CPU s (measured window)", "peak RSS MB", "main thread on a core %", "waiting for a core %", "preempted /s"],
    rows: cells.flatMap((c) =>
      c.processes.map((p) => [
        c.mode,
        `${c.transport}/${c.topology}`,
        c.scenario,
        loadWithRate(c),
        p.name,
        f(p.cpu_s, 2),
        f(p.peak_rss_mb, 0),
        f(p.main_thread && p.main_thread.running * 100, 0),
        f(p.main_thread && p.main_thread.waiting * 100, 0),
        f(p.main_thread?.preempted_per_s, 0),
      ]),
    ),
  };
}

export function markdownTable(t: Table): string {
  const esc = (v: string | number) => String(v).replace(/\|/g, "\\|");
  return [`| ${t.headers.map(esc).join(" | ")} |`, `|${t.headers.map(() => "---").join("|")}|`, ...t.rows.map((r) => `| ${r.map(esc).join(" | ")} |`)].join("\n");
}

/** Columns padded for a terminal. */
export function textTable(t: Table): string {
  const widths = t.headers.map((h, i) => Math.max(h.length, ...t.rows.map((r) => String(r[i]).length)));
  const line = (r: (string | number)[]) => r.map((v, i) => String(v).padEnd(widths[i])).join("  ").trimEnd();
  return [line(t.headers), widths.map((w) => "-".repeat(w)).join("  "), ...t.rows.map(line)].join("\n");
}

const READING = `How to read it:
- O / C: orchestrated / choreographed. O÷C above 1 means the orchestrator is slower by that factor.
  With --repeat N every figure is the median of the cell's N runs, and each O÷C carries the
  p-value of the two styles' runs (two-sided Mann–Whitney U): "~" where those runs do not show
  the styles apart (p > 0.05). Four runs a style are the least that can show a difference.
- Latency is request to terminal state: the API answers a \`Prefer: wait\` request when the saga
  has ended. In open-loop cells it counts from the moment each request was due, so a queue in
  the system shows up as latency instead of slowing the load down (no coordinated omission).
- sagas/s: a closed-loop ("closed ×N") cell keeps N checkouts in flight and counts the sagas
  whose terminal event the event store holds within the measured window, whichever request
  started them (with --target, its clients' answers): the most this system completes; an
  open-loop cell counts its own sagas, over its window or, when they took longer to end, from
  the first of them ending to the last; an
  "open 50% of max" cell runs each style at half of its own closed-loop figure (--of-max).
- × floor: the cell's p50 divided by its floor model, request/reply hops × hop time + messages
  on the path × channel hop time + commits on the path × commit time, with the counts taken from
  the cell's own event store (messages stored up to the terminal event, and the distinct
  transactions that wrote them) and the times measured in this run. 1× would mean the saga costs
  nothing beyond moving its messages and committing its writes; the rest is queueing, the relay's
  wake-up, serialisation, validation and the services' own work.
- DB stmts/saga: statements the system's processes sent to the database over the measured
  window per completed saga (\`saga_db_statements_total\` in /metrics), BEGIN and COMMIT
  included: each is a round trip, the unit a hop's cost is made of. Unlike CPU and latency it
  does not depend on the machine's speed; it falls as batches grow. Times the floor's statement
  (one round trip of a trivial prepared statement), it is the least time the saga's statements
  take, one after the other: at low load, where each hop runs alone, most of the p50 (some of
  the statements, the read model's, are off the saga's path).
- WAL KB/saga: the write-ahead log PostgreSQL wrote over the measured window per completed saga
  (its WAL position before and after; the whole server's): every row, index entry and commit
  record the saga cost the database, again independent of the machine's speed. None on PGlite.
- CPU ms/saga, DB CPU ms/saga, broker CPU ms/saga: CPU seconds over the measured window per
  completed saga, of the system's processes, of PostgreSQL's backends serving the cell's
  database (none on PGlite, whose work is in the system's process) and of the broker's process
  (nats-server, RabbitMQ's beam.smp: the process listening on the broker's port; none in
  process, nor for a broker on another machine). Their sum against the machine's cores bounds
  the throughput. RabbitMQ's Erlang schedulers spin a while before they sleep (the runtime's
  \`+sbwt\` busy-wait threshold), so part of its figure is waiting, not work.
- Processes: each process's CPU over the measured window, its peak memory, and what the
  scheduler did with its main thread (a Node process's JavaScript thread, which runs all of its
  JavaScript): the share of the window it ran on a core, the share it was ready to run but
  waited for one, and how many times a second another task took its core (Linux's /proc; "–"
  elsewhere). A thread that waits for a core while the machine still has CPU to spare is being
  preempted: every statement the system sends wakes a database backend, and a woken task may
  take the core of the thread that woke it. A main thread on a core for nearly the whole window
  is its process's limit.
- Where the time goes: medians over the confirmed sagas, from the event store's timestamps.
  accept = request due → OrderInitiated stored; each step = previous answer → this answer,
  orchestrated split into coordination (previous answer → the orchestrator's command stored)
  and participant (command → answer); answer = OrderConfirmed stored → the API's answer.
- Busiest consumers: the share of the measured window each consumer spent in its transactions,
  from the system's own counters (\`saga_consumer_*\` in /metrics). A consumer runs one
  transaction at a time for the messages waiting for it, so under load it is a stage of a
  pipeline: one near 100% is the stage that limits the cell's throughput, and its messages per
  transaction show how much its batches absorb. Each consumer is named after its participant and
  what it takes (\`warehouse:ReserveStock\`, or \`warehouse:OrderInitiated->ReserveStock\` when
  choreographed); the orchestrator is one consumer for every reply. When the CPU runs out (a
  process near a whole core, or all processes and the database near the machine's cores: see
  Processes and CPU per saga), every consumer looks busy, since its transactions wait for the
  CPU too; then the CPU, not the stage, is the limit. The time a consumer under load waits for
  its next batch to grow (\`CONSUMER_LINGER_MS\`) is not counted as busy; it is part of the
  wait: how long a message stood in the consumer's queue, on average, before its transaction
  started (behind the one running, or while a batch grew), that stage's share of a saga's
  latency beyond its own transaction.
- The audit reads the cell's database after the system stopped: lost (accepted, unknown),
  stuck (not terminal after the drain), duplicated effects, stock conserved, no stock or money
  held by a cancelled order, every charge of a cancelled order refunded and no other refund.`;

export function renderMarkdown(r: BenchResults, charts: Chart[]): string {
  const cells = foldRepeats(r.cells);
  const m = r.meta;
  const parts = [
    `# saga-bench report`,
    ``,
    `Run ${m.started_at} → ${m.finished_at} on ${m.machine.cpus} × ${m.machine.cpu_model}, ${m.machine.memory_gb} GB, ${m.machine.os}, Node ${m.node}; commit ${m.commit}; load average at start ${m.machine.load_avg_at_start.join(" ")}.`,
    `Settings: ${Object.entries(m.settings).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ")}.`,
    ``,
    r.skipped.length ? `Skipped:\n${r.skipped.map((s) => `- ${s.what}: ${s.why}`).join("\n")}` : `Nothing skipped.`,
    ``,
    `## Summary`,
    ``,
    markdownTable(summaryTable(cells)),
    ``,
    `## Floor (measured in this run)`,
    ``,
    Object.keys(r.floor).length ? markdownTable(floorTable(r)) : "Not measured (the system was not started here).",
    ``,
    `## Every cell`,
    ``,
    markdownTable(cellTable(cells)),
    ``,
    `## Where the time goes`,
    ``,
    markdownTable(stepTable(cells)),
    ``,
    ...(cells.some((c) => c.stages?.length) ? [`## Busiest consumers`, ``, markdownTable(stageTable(cells)), ``] : []),
    `## Processes`,
    ``,
    markdownTable(processTable(cells)),
    ``,
    ...(cells.some((c) => c.unmeasured.length) ? [`## Not measured`, ``, [...new Set(cells.flatMap((c) => c.unmeasured))].map((u) => `- ${u}`).join("\n"), ``] : []),
    ...(cells.some((c) => !c.audit.ok) ? [`## Audit violations`, ``, cells.filter((c) => !c.audit.ok).map((c) => `- ${c.key}: ${c.audit.violations.join("; ")}`).join("\n"), ``] : []),
    `## Charts`,
    ``,
    ...charts.flatMap((c) => [`### ${c.title}`, ``, `![${c.title}](${c.file})`, ``]),
    READING,
    ``,
  ];
  return parts.join("\n");
}

const html = (s: string | number) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
const htmlTable = (t: Table) =>
  `<table><thead><tr>${t.headers.map((h) => `<th>${html(h)}</th>`).join("")}</tr></thead><tbody>${t.rows
    .map((r) => `<tr>${r.map((v) => `<td class="${v === "FAILED" ? "bad" : ""}">${html(v)}</td>`).join("")}</tr>`)
    .join("")}</tbody></table>`;

/** One self-contained page: tables and the SVG charts inline. */
export function renderHtml(r: BenchResults, charts: Chart[]): string {
  const cells = foldRepeats(r.cells);
  const m = r.meta;
  const section = (title: string, body: string) => `<section><h2>${html(title)}</h2>${body}</section>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>saga-bench report ${html(m.started_at)}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2em;max-width:1500px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:12.5px}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right;white-space:nowrap}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
td.bad{background:#fdd;font-weight:bold}
figure{margin:1em 0 2em}figcaption{font-weight:bold;margin-bottom:.4em}
pre{white-space:pre-wrap;background:#f8f8f8;padding:1em}
.scroll{overflow-x:auto}
</style></head><body>
<h1>saga-bench report</h1>
<p>Run ${html(m.started_at)} → ${html(m.finished_at)} on ${m.machine.cpus} × ${html(m.machine.cpu_model)}, ${m.machine.memory_gb} GB, ${html(m.machine.os)}, Node ${html(m.node)}; commit ${html(m.commit)}.</p>
${r.skipped.length ? `<p>Skipped:</p><ul>${r.skipped.map((s) => `<li>${html(s.what)}: ${html(s.why)}</li>`).join("")}</ul>` : "<p>Nothing skipped.</p>"}
${section("Summary", `<div class="scroll">${htmlTable(summaryTable(cells))}</div>`)}
${section("Floor (measured in this run)", Object.keys(r.floor).length ? htmlTable(floorTable(r)) : "<p>Not measured (the system was not started here).</p>")}
${section("Charts", charts.map((c) => `<figure class="chart" data-chart="${html(c.file)}"><figcaption>${html(c.title)}</figcaption>${c.svg.replace(/^<\?xml[^>]*>/, "")}</figure>`).join("\n"))}
${section("Every cell", `<div class="scroll">${htmlTable(cellTable(cells))}</div>`)}
${section("Where the time goes", `<div class="scroll">${htmlTable(stepTable(cells))}</div>`)}
${cells.some((c) => c.stages?.length) ? section("Busiest consumers", `<div class="scroll">${htmlTable(stageTable(cells))}</div>`) : ""}
${section("Processes", `<div class="scroll">${htmlTable(processTable(cells))}</div>`)}
${cells.some((c) => c.unmeasured.length) ? section("Not measured", `<ul>${[...new Set(cells.flatMap((c) => c.unmeasured))].map((u) => `<li>${html(u)}</li>`).join("")}</ul>`) : ""}
${cells.some((c) => !c.audit.ok) ? section("Audit violations", `<ul>${cells.filter((c) => !c.audit.ok).map((c) => `<li>${html(c.key)}: ${html(c.audit.violations.join("; "))}</li>`).join("")}</ul>`) : ""}
${section("How to read it", `<pre>${html(READING)}</pre>`)}
<script>
// what a browser actually drew: axes with ticks and marks with an area, per chart
addEventListener("load", () => {
  for (const fig of document.querySelectorAll("figure.chart")) {
    const svg = fig.querySelector("svg");
    const visible = (el) => { const b = el.getBBox(); return b.width > 0 && b.height > 0; };
    const axes = svg ? [...svg.querySelectorAll("g.role-axis")].filter((a) => a.querySelectorAll("g.role-axis-label text").length > 0 && visible(a)).length : 0;
    const marks = svg ? [...svg.querySelectorAll("g.role-mark path, g.role-mark rect, g.role-mark line")].filter((el) => !el.closest(".role-axis") && !el.closest(".role-legend") && visible(el)).length : 0;
    fig.dataset.rendered = "axes=" + axes + " marks=" + marks;
  }
  document.body.dataset.checked = "yes";
});
</script>
</body></html>
`;
}
