import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { HELP, parseOptions, UsageError } from "./bench-options.js";
import { runLocal, runTarget } from "./bench-runner.js";
import { renderCharts } from "./bench-charts.js";
import { foldRepeats, renderHtml, renderMarkdown, summaryTable, textTable } from "./bench-report.js";
import { writeComparison } from "./bench-compare.js";
import { ProgressDisplay } from "./progress-display.js";
import { teardown } from "./teardown.js";
import type { BenchResults } from "./bench-results.js";

/** `npm run bench`: warm-up, measured run, one result per cell, report and comparison table. */

/** Set once a signal or a crash makes the bench leave early: from then on `leave` alone ends the process. */
let leaving = false;

const repoDir = path.dirname(path.dirname(path.dirname(fileURLToPath(import.meta.url))));

/** Writes results.json, the charts, report.md and report.html; returns the files written. */
export async function writeOutputs(results: BenchResults, outDir: string): Promise<string[]> {
  fs.mkdirSync(outDir, { recursive: true });
  const charts = await renderCharts(foldRepeats(results.cells));
  fs.writeFileSync(path.join(outDir, "results.json"), JSON.stringify(results, null, 2));
  for (const c of charts) fs.writeFileSync(path.join(outDir, c.file), c.svg);
  fs.writeFileSync(path.join(outDir, "report.md"), renderMarkdown(results, charts));
  fs.writeFileSync(path.join(outDir, "report.html"), renderHtml(results, charts));
  return ["results.json", ...charts.map((c) => c.file), "report.md", "report.html"];
}

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  if (options.help) {
    console.log(HELP);
    return 0;
  }
  const stamp = new Date().toISOString().replace(/[:.]/g, "-").replace(/-\d{3}Z$/, "Z");
  if (options.compare) {
    writeComparison(options.compare[0], options.compare[1], options.out ?? path.join(repoDir, "bench", "results", `compare-${stamp}`));
    return 0;
  }
  const outDir = path.resolve(options.out ?? path.join(repoDir, "bench", "results", stamp));
  const progress = new ProgressDisplay();
  let stopping = false;
  let sofar: (() => BenchResults) | undefined;
  // Leaves before the cells end: stops the running system and removes what it made (processes,
  // broker namespace, database), writes the cells that ended, then exits. A signal while that
  // runs leaves at once.
  const leave = (why: string, code: number, signal = true) => {
    if (leaving) {
      if (signal) process.exit(code);
      return;
    }
    leaving = true;
    progress.line(`${why}: stopping now, removing what this run started (a system's processes, its database and broker namespace) and writing the cells that ended (once more to leave at once, leaving them behind)`);
    void (async () => {
      await teardown((line) => progress.line(line));
      const results = sofar?.();
      if (results && results.cells.length > 0) {
        results.skipped.push({ what: "the cells after the last one shown", why: `the bench was stopped (${why})` });
        const files = await writeOutputs(results, outDir);
        progress.line(`written to ${outDir}: ${files.join(", ")} (the ${results.cells.length} cell(s) that ended)`);
      }
    })()
      .catch((err) => progress.line(`while leaving: ${err instanceof Error ? err.message : String(err)}`))
      .finally(() => {
        progress.stop();
        process.exit(code);
      });
  };
  process.on("SIGINT", () => {
    if (stopping) return leave("interrupted again", 130);
    stopping = true;
    progress.line("interrupted: finishing this cell and writing what ran (Ctrl-C again to stop now)");
    process.exitCode = 130;
  });
  process.on("SIGTERM", () => leave("SIGTERM", 143));
  // a crash (a bug, or stdout closed under `npm run bench | head`) cleans up as well
  process.on("uncaughtException", (err) => {
    if (!leaving) console.error(`bench: ${err.stack ?? err}`);
    leave("an error", 1, false);
  });
  const ctx = { options, outDir, progress, interrupted: () => stopping || leaving, running: (read: () => BenchResults) => (sofar = read) };
  const results = options.target ? await runTarget(ctx) : await runLocal(ctx);
  if (leaving) return 130; // `leave` writes what ended and exits
  const files = await writeOutputs(results, outDir);
  console.log(`\n${textTable(summaryTable(foldRepeats(results.cells)))}\n`);
  for (const s of results.skipped) console.log(`skipped: ${s.what}: ${s.why}`);
  const failed = results.cells.filter((c) => !c.audit.ok);
  console.log(`\nwritten to ${outDir}: ${files.join(", ")}`);
  if (results.cells.length === 0) {
    console.error("no cell ran");
    return 1;
  }
  if (failed.length) {
    console.error(`audit FAILED in ${failed.length} cell(s):\n${failed.map((c) => `  ${c.key}: ${c.audit.violations.join("; ")}`).join("\n")}`);
    return 1;
  }
  console.log(`audit clean in all ${results.cells.length} cell(s)`);
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  main().then(
    (code) => {
      if (!leaving) process.exit(code);
    },
    (err) => {
      // the cell that was running fails as its system is taken away: `leave` reports and exits
      if (leaving) return;
      console.error(err instanceof UsageError ? `bench: ${err.message}\n\n${HELP}` : `bench: ${err instanceof Error ? err.message : String(err)}`);
      process.exit(err instanceof UsageError ? 2 : 1);
    },
  );
}
