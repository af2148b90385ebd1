import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { mannWhitneyP } from "../bench/run-spread.js";

/**
 * The test `--compare` puts on a change between two sets of runs: exact values known from the
 * U distribution's tables, and the dynamic programme against every split of the pooled runs
 * counted one by one, ties included.
 */

/** Every way to choose `k` of `n` indices. */
function* choices(n: number, k: number, from = 0, chosen: number[] = []): Generator<number[]> {
  if (chosen.length === k) {
    yield chosen;
    return;
  }
  for (let i = from; i <= n - (k - chosen.length); i++) yield* choices(n, k, i + 1, [...chosen, i]);
}

/** The same p-value by brute force: U for every relabelling of the pooled runs. */
function bruteForceP(a: number[], b: number[]): number {
  const pooled = [...a, ...b];
  const u = (xs: number[], ys: number[]) => xs.reduce((s, x) => s + ys.reduce((t, y) => t + (x > y ? 1 : x === y ? 0.5 : 0), 0), 0);
  const mean = (a.length * b.length) / 2;
  const observed = Math.abs(u(a, b) - mean);
  let asFar = 0;
  let all = 0;
  for (const pick of choices(pooled.length, a.length)) {
    const inA = new Set(pick);
    const xs = pick.map((i) => pooled[i]!);
    const ys = pooled.filter((_, i) => !inA.has(i));
    all++;
    if (Math.abs(u(xs, ys) - mean) >= observed - 1e-9) asFar++;
  }
  return asFar / all;
}

describe("the runs' spread (Mann–Whitney U, two-sided)", () => {
  it("gives the exact p of fully separated runs: 2 / C(n, k)", () => {
    expect(mannWhitneyP([1, 2, 3], [4, 5, 6])).toBeCloseTo(2 / 20, 12);
    expect(mannWhitneyP([1, 2, 3, 4], [5, 6, 7, 8])).toBeCloseTo(2 / 70, 12);
    expect(mannWhitneyP([10, 20, 30, 40, 50], [60, 70, 80, 90, 100])).toBeCloseTo(2 / 252, 12);
    expect(mannWhitneyP([60, 70, 80, 90, 100, 110], [1, 2, 3, 4, 5, 6])).toBeCloseTo(2 / 924, 12);
  });

  it("finds nothing between identical runs, and no spread in a single run", () => {
    expect(mannWhitneyP([5, 5, 5], [5, 5, 5])).toBe(1);
    expect(mannWhitneyP([1, 2, 3, 4], [1, 2, 3, 4])).toBe(1);
    expect(mannWhitneyP([1], [2, 3, 4])).toBeNull();
    expect(mannWhitneyP([1, 2, 3], [4])).toBeNull();
  });

  it("matches every split counted one by one, ties included, and either side first", () => {
    const runs = fc.array(fc.integer({ min: 0, max: 6 }), { minLength: 2, maxLength: 6 });
    fc.assert(
      fc.property(runs, runs, (a, b) => {
        const p = mannWhitneyP(a, b)!;
        expect(p).toBeCloseTo(bruteForceP(a, b), 10);
        expect(mannWhitneyP(b, a)).toBeCloseTo(p, 10);
        expect(p).toBeGreaterThan(0);
        expect(p).toBeLessThanOrEqual(1);
      }),
      { numRuns: 300 },
    );
  });

  it("agrees with the normal approximation it uses beyond 60 runs in all", () => {
    const spread = (n: number, shift: number) => Array.from({ length: n }, (_, i) => 100 + shift + ((i * 37) % n));
    // just inside and just beyond the exact limit, the same shifted shape: close p-values
    for (const [shift, shown] of [[1, false], [3, false], [6, true], [8, true]] as const) {
      const exact = mannWhitneyP(spread(30, 0), spread(30, shift))!;
      const approximate = mannWhitneyP(spread(31, 0), spread(31, shift))!;
      expect(Math.abs(exact - approximate), `shift ${shift}: ${exact} against ${approximate}`).toBeLessThan(0.02);
      expect(exact < 0.05, `shift ${shift}`).toBe(shown);
      expect(approximate < 0.05, `shift ${shift}`).toBe(shown);
    }
    expect(mannWhitneyP(spread(40, 0), spread(40, 40))).toBeLessThan(0.001);
    expect(mannWhitneyP(spread(40, 0), spread(40, 0))).toBe(1);
  });
});
