import { afterEach, describe, expect, it, vi } from "vitest";
import { Batcher, BatchFailed, coalescedReads } from "../services/shared/batcher.js";

/** A batch run that the test lets finish, one at a time. */
function gate() {
  const runs: { items: readonly number[]; finish(fail?: Error): void }[] = [];
  const run = (items: readonly number[]) =>
    new Promise<string[]>((resolve, reject) => runs.push({ items, finish: (fail) => (fail ? reject(fail) : resolve(items.map((i) => `done ${i}`))) }));
  return { runs, run };
}

const tick = () => new Promise((r) => setImmediate(r));

describe("Batcher", () => {
  it("runs an item that finds it idle at once, alone, and gathers those that arrive meanwhile, up to its maximum", async () => {
    const { runs, run } = gate();
    const batcher = new Batcher(run, 3);
    const first = batcher.submit(1);
    await tick();
    expect(runs.map((r) => r.items)).toEqual([[1]]);
    const later = [2, 3, 4, 5].map((i) => batcher.submit(i));
    await tick();
    runs[0]!.finish();
    await tick();
    expect(runs.map((r) => r.items)).toEqual([[1], [2, 3, 4]]);
    runs[1]!.finish();
    await tick();
    expect(runs.map((r) => r.items)).toEqual([[1], [2, 3, 4], [5]]);
    runs[2]!.finish();
    expect(await first).toBe("done 1");
    expect(await Promise.all(later)).toEqual(["done 2", "done 3", "done 4", "done 5"]);
  });

  it("rejects every item of a failed batch of several with BatchFailed, and a batch of one with its own error", async () => {
    const { runs, run } = gate();
    const batcher = new Batcher(run, 10);
    const alone = batcher.submit(1);
    await tick();
    const together = [2, 3].map((i) => batcher.submit(i).catch((err: unknown) => err));
    runs[0]!.finish(new Error("one broke"));
    await expect(alone).rejects.toThrow("one broke");
    await tick();
    runs[1]!.finish(new Error("two broke"));
    for (const err of await Promise.all(together)) expect(err).toBeInstanceOf(BatchFailed);
    // and it goes on with the next item
    const next = batcher.submit(4);
    await tick();
    runs[2]!.finish();
    expect(await next).toBe("done 4");
  });
});

describe("Batcher under load (linger)", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("starts a batch below `from` at once, and lets one after a batch of `from` or more wait until it holds `growth` times as many", async () => {
    const { runs, run } = gate();
    const batcher = new Batcher(run, 10, { ms: 60_000, from: 2, growth: 2 });
    const all = [batcher.submit(1)];
    await tick();
    all.push(batcher.submit(2), batcher.submit(3));
    runs[0]!.finish();
    await tick();
    // the last batch held 1: no wait
    expect(runs.map((r) => r.items)).toEqual([[1], [2, 3]]);
    all.push(batcher.submit(4));
    runs[1]!.finish();
    await tick();
    // the last batch held 2: the next waits for 4
    all.push(batcher.submit(5), batcher.submit(6));
    await tick();
    expect(runs).toHaveLength(2);
    all.push(batcher.submit(7));
    await tick();
    expect(runs.map((r) => r.items)).toEqual([[1], [2, 3], [4, 5, 6, 7]]);
    runs[2]!.finish();
    expect(await Promise.all(all)).toEqual([1, 2, 3, 4, 5, 6, 7].map((i) => `done ${i}`));
  });

  it("runs what it has once the linger's time has passed, and waits no more once the load is gone", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const { runs, run } = gate();
    const batcher = new Batcher(run, 10, { ms: 20, from: 2, growth: 4 });
    const all = [batcher.submit(1)];
    await tick();
    all.push(batcher.submit(2), batcher.submit(3));
    runs[0]!.finish();
    await tick();
    all.push(batcher.submit(4));
    runs[1]!.finish();
    await tick();
    vi.advanceTimersByTime(19);
    await tick();
    expect(runs).toHaveLength(2);
    vi.advanceTimersByTime(1);
    await tick();
    expect(runs.map((r) => r.items)).toEqual([[1], [2, 3], [4]]);
    // a batch of one: the next item runs at once
    all.push(batcher.submit(5));
    runs[2]!.finish();
    await tick();
    expect(runs.map((r) => r.items)).toEqual([[1], [2, 3], [4], [5]]);
    runs[3]!.finish();
    expect(await Promise.all(all)).toEqual([1, 2, 3, 4, 5].map((i) => `done ${i}`));
  });
});

describe("coalescedReads", () => {
  it("reads the lookups asked for during a read together in the next read, which sees what was written before they asked", async () => {
    const table = new Map([[1, "one"]]);
    const reads: { keys: readonly number[]; finish(): void }[] = [];
    const lookup = coalescedReads((keys: readonly number[]) => {
      // the read takes what the table holds when it starts
      const snapshot = new Map(keys.flatMap((k) => (table.has(k) ? [[k, table.get(k)!] as const] : [])));
      return new Promise<Map<number, string>>((resolve) => reads.push({ keys, finish: () => resolve(snapshot) }));
    });
    const first = lookup([1, 2]);
    await tick();
    table.set(2, "two"); // written after the first read began, before the next lookups asked
    const second = lookup([2]);
    const third = lookup([1, 3]);
    await tick();
    expect(reads.map((r) => r.keys)).toEqual([[1, 2]]);
    reads[0]!.finish();
    expect((await first).get(2)).toBeUndefined();
    await tick();
    expect(reads.map((r) => r.keys)).toEqual([[1, 2], [2, 1, 3]]);
    reads[1]!.finish();
    expect((await second).get(2)).toBe("two");
    expect((await third).get(1)).toBe("one");
    expect((await third).has(3)).toBe(false);
  });

  it("reads a lookup of a failed read again on its own", async () => {
    let calls = 0;
    const reads: { keys: readonly number[]; finish(fail?: boolean): void }[] = [];
    const lookup = coalescedReads((keys: readonly number[]) => {
      calls++;
      return new Promise<Map<number, string>>((resolve, reject) =>
        reads.push({ keys, finish: (fail) => (fail ? reject(new Error("read failed")) : resolve(new Map(keys.map((k) => [k, `v${k}`])))) }),
      );
    });
    const first = lookup([1]);
    await tick();
    const a = lookup([2]);
    const b = lookup([3]);
    reads[0]!.finish();
    await first;
    await tick();
    reads[1]!.finish(true); // the read of [2, 3] together
    await tick();
    await tick();
    expect(reads.slice(2).map((r) => r.keys)).toEqual([[2], [3]]);
    for (const r of reads.slice(2)) r.finish();
    expect((await a).get(2)).toBe("v2");
    expect((await b).get(3)).toBe("v3");
    expect(calls).toBe(4);
  });
});
