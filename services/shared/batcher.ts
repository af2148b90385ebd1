/** A batch of several items failed as a whole; each is to be tried again on its own. */
export class BatchFailed extends Error {}

/**
 * Gathers work items while their transaction runs. An item that finds the batcher idle starts a
 * batch at once, alone (no wait at low load); those that arrive meanwhile go together into the
 * next one, up to `max`. One batch at a time: the batch, not parallel transactions, absorbs the
 * load. When a batch of several fails, each of its items is rejected with `BatchFailed` (the
 * caller tries it again alone, so one bad item cannot fail the others); a batch of one rejects
 * with its own error.
 */
export class Batcher<I, O> {
  private queue: { item: I; resolve(o: O): void; reject(err: unknown): void }[] = [];
  private running = false;

  constructor(
    private readonly run: (items: readonly I[]) => Promise<O[]>,
    private readonly max: number,
  ) {}

  submit(item: I): Promise<O> {
    return new Promise((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      if (!this.running) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.max);
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
