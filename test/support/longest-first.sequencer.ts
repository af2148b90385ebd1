import path from "node:path";
import { BaseSequencer, type TestSpecification } from "vitest/node";

/**
 * The suites that take longest, longest first: each starts whole systems, most of them one
 * process per service, and waits on crashes, deadlines or redeliveries. Measured in a CI run on a
 * slow 2-vCPU machine (each 57–168 s of a 10-minute run, three files at a time).
 */
const LONGEST = [
  "crash-recovery",
  "tracing",
  "embedded-crash",
  "checkout.brokers",
  "system-identity",
  "bench-stop",
  "bench",
  "startup-refusals",
  "redelivery",
  "embedded-database",
];

const rank = (spec: TestSpecification): number => {
  const i = LONGEST.indexOf(path.basename(spec.moduleId).replace(/\.test\.ts$/, ""));
  return i < 0 ? LONGEST.length : i;
};

/**
 * Vitest's order (its group order and projects first; then, where it has timed the files before,
 * the longest first, and on a fresh checkout, as in CI, the largest file first), with the longest
 * suites above moved to the front of their project. In a fresh checkout the largest files are not
 * the longest: the longest suite (168 s) started 209 s into the run, and the others had ended
 * a minute and a half before it did.
 */
export default class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const group = (s: TestSpecification) => s.project.config.sequence.groupOrder;
    const position = new Map(sorted.map((s, i) => [s, i]));
    return [...sorted].sort((a, b) => group(a) - group(b) || (a.project.name < b.project.name ? -1 : a.project.name > b.project.name ? 1 : 0) || rank(a) - rank(b) || position.get(a)! - position.get(b)!);
  }
}
