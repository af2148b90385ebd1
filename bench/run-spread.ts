/**
 * Whether two sets of runs of one cell differ by more than their own spread. On a small virtual
 * machine the same build can move by a third from one run to the next, so a change in the medians
 * of a few runs says little by itself. `--compare` marks each change, and the report each O÷C of
 * repeated cells, with the two-sided Mann–Whitney U test of the runs behind it (as Go's benchstat
 * does for changes): it needs no assumption about how run-to-run noise is distributed, only that
 * runs of one side are interchangeable, which interleaving them (A, B, A, B) makes likely.
 */

/** Below this p-value a change is taken as shown by the runs; above it, as within their spread. */
export const SIGNIFICANCE = 0.05;

/** Pooled samples up to this size get the exact distribution; larger ones the normal approximation. */
const EXACT_UP_TO = 60;

/** 1-based ranks of `xs`, ties sharing the mean of the ranks they span. */
function midRanks(xs: readonly number[]): number[] {
  const order = xs.map((x, i) => [x, i] as const).sort((p, q) => p[0] - q[0]);
  const ranks = new Array<number>(xs.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && order[j + 1]![0] === order[i]![0]) j++;
    for (let k = i; k <= j; k++) ranks[order[k]![1]] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return ranks;
}

/** Standard normal upper tail, P(Z ≥ z) (Abramowitz and Stegun 7.1.26, error below 1.5e-7). */
function normalUpperTail(z: number): number {
  const t = 1 / (1 + 0.3275911 * Math.abs(z) / Math.SQRT2);
  const erfc = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))) * Math.exp(-(z * z) / 2);
  return z >= 0 ? erfc / 2 : 1 - erfc / 2;
}

/**
 * Two-sided p-value of the Mann–Whitney U test of `a` against `b`: the probability, were every
 * run of either side drawn from one distribution, of a rank sum for `a` at least as far from
 * its expectation as the one observed. Exact (every split of the pooled ranks, ties included)
 * up to 60 runs in all; null when a side has fewer than two runs, where no spread is known.
 * With 2 + 2 runs the smallest possible p is 0.33, with 3 + 3 it is 0.1, with 4 + 4 0.029: a
 * change is only ever shown by four or more runs a side.
 */
export function mannWhitneyP(a: readonly number[], b: readonly number[]): number | null {
  if (a.length < 2 || b.length < 2) return null;
  const n1 = a.length;
  const n = a.length + b.length;
  // doubled ranks are whole numbers even where ties give half ranks
  const pooled = midRanks([...a, ...b]);
  const ranks = pooled.map((r) => Math.round(r * 2));
  const observed = ranks.slice(0, n1).reduce((s, r) => s + r, 0);
  const expected = n1 * (n + 1);
  const distance = Math.abs(observed - expected);
  if (n > EXACT_UP_TO) {
    const ties = [...pooled.reduce((m, r) => m.set(r, (m.get(r) ?? 0) + 1), new Map<number, number>()).values()];
    const variance = ((n1 * (n - n1)) / 12) * (n + 1 - ties.reduce((s, t) => s + t ** 3 - t, 0) / (n * (n - 1)));
    if (variance === 0) return 1;
    // in rank units, with the continuity correction
    const z = (distance / 2 - 0.5) / Math.sqrt(variance);
    return z <= 0 ? 1 : Math.min(1, 2 * normalUpperTail(z));
  }
  // ways[k][s]: how many choices of k of the ranks seen so far sum (doubled) to s (counts in doubles: C(60, 30) is 1.2e17)
  const maxSum = ranks.reduce((s, r) => s + r, 0);
  let ways: Float64Array[] = Array.from({ length: n1 + 1 }, () => new Float64Array(maxSum + 1));
  ways[0]![0] = 1;
  for (const r of ranks) {
    const next = ways.map((row) => row.slice());
    for (let k = 1; k <= n1; k++) {
      const from = ways[k - 1]!;
      const to = next[k]!;
      for (let s = 0; s + r <= maxSum; s++) if (from[s]) to[s + r]! += from[s]!;
    }
    ways = next;
  }
  const all = ways[n1]!;
  let total = 0;
  let asFar = 0;
  for (let s = 0; s <= maxSum; s++) {
    total += all[s]!;
    if (Math.abs(s - expected) >= distance) asFar += all[s]!;
  }
  return Math.min(1, asFar / total);
}

/** ", p=0.18 ~" beside a figure: its p-value, and "~" where the runs' spread does not show it; "" without one. */
export function describeP(p: number | null): string {
  if (p === null) return "";
  return `, p=${p < 0.001 ? "<0.001" : p.toPrecision(2)}${p > SIGNIFICANCE ? " ~" : ""}`;
}
