import * as vega from "vega";
import * as vl from "vega-lite";
import type { TopLevelSpec } from "vega-lite";
import { ofMaxLabel, type CellResult } from "./bench-results.js";
import type { FoldedCell } from "./bench-report.js";

/**
 * The charts, declared in Vega-Lite and rendered to SVG by Vega in Node (no browser involved).
 * Each takes the cells (medians across repetitions) and returns a named SVG, or nothing when the
 * run has no data for it.
 */

export interface Chart {
  file: string;
  title: string;
  svg: string;
}

const MODE_COLORS = { domain: ["orchestrated", "choreographed"], range: ["#4c78a8", "#f58518"] };
const label = (c: CellResult) => `${c.transport}/${c.scenario}`;
/** A cell's load in a chart's labels: its rate (or its fraction of the maximum, the same for both styles), or its clients when it is closed-loop. */
const loadName = (c: CellResult) => (c.load.kind === "open" ? `@${ofMaxLabel(c.load) ?? `${c.load.rate}/s`}` : `closed ×${c.load.connections}`);

async function render(spec: TopLevelSpec): Promise<string> {
  const compiled = vl.compile({ ...spec, config: { font: "sans-serif", ...(spec.config ?? {}) } }).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: "none" });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}

/**
 * One bar per cell and style, side by side (solid: orchestrated), each stacked by its parts; the
 * cells in the run's order (open-loop rates, then each closed loop), their labels in full.
 */
function stackedPerStyle(
  rows: { cell: string; mode: string; part: string; value: number }[],
  o: { yTitle: string; partTitle: string; parts: string[]; colors: string[] },
): TopLevelSpec {
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    data: { values: rows },
    width: { step: 18 },
    height: 220,
    mark: "bar",
    encoding: {
      x: { field: "cell", type: "nominal", title: null, sort: null, axis: { labelAngle: -30, labelLimit: 240 } },
      xOffset: { field: "mode", scale: { domain: MODE_COLORS.domain } },
      y: { field: "value", type: "quantitative", stack: "zero", title: o.yTitle },
      color: { field: "part", type: "nominal", scale: { domain: o.parts, range: o.colors }, title: o.partTitle },
      opacity: { field: "mode", type: "ordinal", sort: MODE_COLORS.domain, scale: { domain: MODE_COLORS.domain, range: [1, 0.55] }, title: "style (solid: orchestrated)", legend: { titleLimit: 300 } },
      tooltip: [{ field: "cell" }, { field: "mode" }, { field: "part", title: o.partTitle }, { field: "value", title: o.yTitle, format: ".1f" }],
    },
  };
}

export async function renderCharts(cells: FoldedCell[]): Promise<Chart[]> {
  const open = cells.filter((c) => c.load.kind === "open");
  const charts: Chart[] = [];

  const percentileRows = open.flatMap((c) =>
    (["p50", "p90", "p99", "p999"] as const).map((p) => ({ cell: `${label(c)} ${loadName(c)}`, mode: c.mode, percentile: p === "p999" ? "p99.9" : p, ms: c.latency_ms[p] })),
  );
  if (percentileRows.length) {
    charts.push({
      file: "latency-percentiles.svg",
      title: "Saga latency percentiles per style (request to terminal state, open loop)",
      svg: await render({
        $schema: "https://vega.github.io/schema/vega-lite/v5.json",
        data: { values: percentileRows },
        facet: { column: { field: "cell", type: "nominal", title: null } },
        spec: {
          width: 160,
          height: 200,
          mark: "bar",
          encoding: {
            x: { field: "percentile", type: "ordinal", sort: ["p50", "p90", "p99", "p99.9"], title: null },
            xOffset: { field: "mode", sort: MODE_COLORS.domain },
            y: { field: "ms", type: "quantitative", title: "latency (ms)" },
            color: { field: "mode", type: "nominal", scale: MODE_COLORS, title: "style" },
            tooltip: [{ field: "mode" }, { field: "percentile" }, { field: "ms" }],
          },
        },
        resolve: { scale: { y: "independent" } },
      }),
    });
  }

  // the happy path where the run has it, else the first scenario it has
  const curve = cells.some((c) => c.scenario === "happy") ? "happy" : cells[0]?.scenario;
  const loadRows = cells
    .filter((c) => c.scenario === curve)
    .flatMap((c) => [
      { transport: c.transport, mode: c.mode, offered: c.load.rate, ms: c.latency_ms.p50, stat: "p50", kind: c.load.kind === "open" ? "open loop" : "saturation" },
      { transport: c.transport, mode: c.mode, offered: c.load.rate, ms: c.latency_ms.p99, stat: "p99", kind: c.load.kind === "open" ? "open loop" : "saturation" },
    ])
    // a cell that completed nothing has no latency to draw (and no place on a log scale)
    .filter((r) => r.ms > 0);
  if (loadRows.length) {
    charts.push({
      file: "latency-vs-load.svg",
      title: `Latency against offered load up to saturation (${curve}; a closed-loop cell adds the maximum completed rate)`,
      svg: await render({
        $schema: "https://vega.github.io/schema/vega-lite/v5.json",
        data: { values: loadRows },
        facet: { column: { field: "transport", type: "nominal", title: null } },
        spec: {
          width: 260,
          height: 220,
          mark: { type: "line", point: true },
          encoding: {
            x: { field: "offered", type: "quantitative", title: "checkouts/s (offered; saturation: completed)" },
            y: { field: "ms", type: "quantitative", scale: { type: "log" }, title: "latency (ms, log)" },
            color: { field: "mode", type: "nominal", scale: MODE_COLORS, title: "style" },
            strokeDash: { field: "stat", type: "nominal", title: "percentile" },
            shape: { field: "kind", type: "nominal", title: "load" },
            detail: { field: "stat" },
          },
        },
      }),
    });
  }

  const throughputRows = cells.flatMap((c) => [
    { cell: `${label(c)} ${loadName(c)}`, mode: c.mode, part: "confirmed", value: c.confirmed_sps },
    { cell: `${label(c)} ${loadName(c)}`, mode: c.mode, part: "cancelled", value: c.cancelled_sps },
  ]);
  if (throughputRows.length) {
    charts.push({
      file: "throughput.svg",
      title: "Completed sagas per second, confirmed and cancelled",
      svg: await render(stackedPerStyle(throughputRows, { yTitle: "sagas/s", partTitle: "outcome", parts: ["confirmed", "cancelled"], colors: ["#54a24b", "#e45756"] })),
    });
  }

  // what a completed saga costs in CPU: the system's processes, and PostgreSQL's backends where
  // they were measured (with PGlite the database's work is in the system's process already)
  const costRows = cells
    .filter((c) => c.cpu_ms_per_saga !== null)
    .flatMap((c) => [
      { cell: `${label(c)} ${loadName(c)}`, mode: c.mode, part: "system's processes", value: c.cpu_ms_per_saga! },
      ...(c.database_cpu_ms_per_saga !== null ? [{ cell: `${label(c)} ${loadName(c)}`, mode: c.mode, part: "PostgreSQL", value: c.database_cpu_ms_per_saga }] : []),
      ...(c.broker_cpu_ms_per_saga !== null ? [{ cell: `${label(c)} ${loadName(c)}`, mode: c.mode, part: "broker", value: c.broker_cpu_ms_per_saga }] : []),
    ]);
  if (costRows.length) {
    charts.push({
      file: "cpu-per-saga.svg",
      title: "CPU per completed saga: the system's processes, PostgreSQL's backends (PGlite's work is in the system's) and the broker",
      svg: await render(stackedPerStyle(costRows, { yTitle: "CPU ms per saga", partTitle: "where", parts: ["system's processes", "PostgreSQL", "broker"], colors: ["#72b7b2", "#b279a2", "#9d755d"] })),
    });
  }

  const compensationRows = cells
    .filter((c) => c.compensation_latency_ms)
    .flatMap((c) => [
      { cell: `${label(c)}${c.load.kind === "open" ? "" : ` ${loadName(c)}`}`, mode: c.mode, stat: "p50", ms: c.compensation_latency_ms!.p50 },
      { cell: `${label(c)}${c.load.kind === "open" ? "" : ` ${loadName(c)}`}`, mode: c.mode, stat: "p99", ms: c.compensation_latency_ms!.p99 },
    ]);
  if (compensationRows.length) {
    charts.push({
      file: "compensation-latency.svg",
      title: "Compensation latency: from the failure event to the last compensation",
      svg: await render({
        $schema: "https://vega.github.io/schema/vega-lite/v5.json",
        data: { values: compensationRows },
        facet: { column: { field: "stat", type: "nominal", title: null } },
        spec: {
          width: { step: 22 },
          height: 200,
          mark: "bar",
          encoding: {
            x: { field: "cell", type: "nominal", title: null, axis: { labelAngle: -30 } },
            xOffset: { field: "mode", sort: MODE_COLORS.domain },
            y: { field: "ms", type: "quantitative", title: "ms" },
            color: { field: "mode", type: "nominal", scale: MODE_COLORS, title: "style" },
          },
        },
        resolve: { scale: { y: "independent" } },
      }),
    });
  }

  const stepRows = open
    .filter((c) => c.scenario === "happy" || !open.some((x) => x.scenario === "happy"))
    .flatMap((c) =>
      Object.entries(c.steps_ms).flatMap(([step, ms], order) => {
        const split = c.steps_split_ms[step];
        const row = { cell: `${c.transport} ${loadName(c)}`, mode: c.mode };
        if (!split) return [{ ...row, segment: step, ms, order: order * 2 }];
        return [
          { ...row, segment: `${step}: coordination`, ms: split.coordination_ms, order: order * 2 },
          { ...row, segment: `${step}: participant`, ms: split.participant_ms, order: order * 2 + 1 },
        ].filter((r) => r.ms > 0 || r.segment.endsWith("participant"));
      }),
    );
  if (stepRows.length) {
    charts.push({
      file: "step-breakdown.svg",
      title: "Where the time goes: median time of each step of the critical path (confirmed sagas)",
      svg: await render({
        $schema: "https://vega.github.io/schema/vega-lite/v5.json",
        data: { values: stepRows },
        facet: { row: { field: "cell", type: "nominal", title: null } },
        spec: {
          width: 520,
          height: { step: 26 },
          mark: "bar",
          encoding: {
            y: { field: "mode", type: "nominal", title: null, sort: MODE_COLORS.domain },
            x: { field: "ms", type: "quantitative", stack: "zero", title: "ms (medians, stacked)" },
            color: { field: "segment", type: "nominal", sort: { field: "order" }, scale: { scheme: "tableau20" }, title: "step", legend: { labelLimit: 400 } },
            order: { field: "order", type: "quantitative" },
            tooltip: [{ field: "mode" }, { field: "segment" }, { field: "ms" }],
          },
        },
        resolve: { scale: { x: "independent" } },
      }),
    });
  }
  return charts;
}
