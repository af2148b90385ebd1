/** A batch of several items failed as a whole; each is to be tried again on its own. */
export class BatchFailed extends Error {}

/**
 * How a batcher under load lets its next batch grow before running it: once a batch has held
 * `from` items or more, the next one waits up to `ms` for `growth` times as many (at most the
 * batcher's maximum) and runs as soon as it has them. Below `from` nothing waits.
 */
export interface Linger {
  ms: number;
  from: number;
  growth: number;
}

/** No waiting: every batch takes what is there when the one before it ends. */
export const NO_LINGER: Linger = { ms: 0, from: Infinity, growth: 1 };

/**
 * Gathers work items while their transaction runs. An item that finds the batcher idle starts a
 * batch at once, alone (no wait at low load); those that arrive meanwhile go together into the
 * next one, up to `max`, which under load may wait a little to grow (`linger`). One batch at a
 * time: the batch, not parallel transactions, absorbs the load. When a batch of several fails,
 * each of its items is rejected with `BatchFailed` (the caller tries it again alone, so one bad
 * item cannot fail the others); a batch of one rejects with its own error.
 */
export class Batcher<I, O> {
  private queue: { item: I; resolve(o: O): void; reject(err: unknown): void }[] = [];
  private running = false;
  /** A lingering batch: how many items it waits for, and how to stop waiting. */
  private waiting: { for: number; stop(): void } | null = null;

  constructor(
    private readonly run: (items: readonly I[]) => Promise<O[]>,
    private readonly max: number,
    private readonly linger: Linger = NO_LINGER,
  ) {}

  submit(item: I): Promise<O> {
    return new Promise((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      if (this.waiting && this.queue.length >= this.waiting.for) this.waiting.stop();
      if (!this.running) void this.drain();
    });
  }

  /** Resolves once `count` items wait, or after the linger's time. */
  private grow(count: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.waiting?.stop(), this.linger.ms);
      this.waiting = {
        for: count,
        stop: () => {
          clearTimeout(timer);
          this.waiting = null;
          resolve();
        },
      };
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    let last = 0;
    while (this.queue.length > 0) {
      const wanted = Math.min(Math.ceil(last * this.linger.growth), this.max);
      if (this.linger.ms > 0 && last >= this.linger.from && this.queue.length < wanted) await this.grow(wanted);
      const batch = this.queue.splice(0, this.max);
      last = batch.length;
      try {
        const outcomes = await this.run(batch.map((b) => b.item));
        batch.forEach((b, i) => b.resolve(outcomes[i]!));
      } catch (err) {
        for (const b of batch) b.reject(batch.length > 1 ? new BatchFailed(String(err)) : err);
      }
    }
    this.running = false;
  }
}

/**
 * Reads by key: the lookups asked for while a read runs go together into the next read, one
 * statement for all of them. Each lookup's read still starts after it was asked for, so it sees
 * everything committed before; nothing is kept between reads, and nothing is served stale.
 */
export function coalescedReads<K, V>(read: (keys: readonly K[]) => Promise<Map<K, V>>, max = 64): (keys: readonly K[]) => Promise<Map<K, V>> {
  const batcher = new Batcher<readonly K[], Map<K, V>>(async (lookups) => {
    const found = await read([...new Set(lookups.flat())]);
    return lookups.map(() => found);
  }, max);
  return (keys) =>
    batcher.submit(keys).catch((err) => {
      if (err instanceof BatchFailed) return read(keys);
      throw err;
    });
}
