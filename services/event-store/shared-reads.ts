import type { PgEventStore, StoredEvent } from "./pg-event-store.js";

/** What one follower gets from a read: a gap-free run of events from its position. */
export interface FollowPage {
  events: StoredEvent[];
  /** Committed events wait behind a transaction still running. */
  heldBack: boolean;
  /** The run was cut at a limit: more events may follow it already. */
  more: boolean;
}

interface Read {
  stamp: number;
  after: number;
  limit: number;
  result: Promise<{ events: StoredEvent[]; heldBack: boolean }>;
  /** Set once the read has answered. */
  done?: { events: StoredEvent[]; heldBack: boolean };
}

/** How many recent reads are kept for followers that come next. */
const KEPT = 4;

/**
 * The followers of one event store in one process (the relay and the projections, when they run
 * together) share their reads: woken by the same commit, they would each send the same statement
 * for the same events. A follower may take a read that started after its last reason to read
 * (`stamp()`, taken when it was woken): that read's snapshot follows every commit it was woken
 * for, so it is as good as one of its own. From a read that began at another position it takes the
 * events after its own position, when the read holds that position: a gap-free run all the same,
 * since a read returns events in the followers' order from its cursor on.
 */
export class SharedReads {
  private clock = 0;
  private recent: Read[] = [];

  constructor(private readonly store: PgEventStore) {}

  /** A point in this process's order of wake-ups and reads. */
  stamp(): number {
    return ++this.clock;
  }

  /** Events after `position`, from a read that started after `since`; a new read if none fits. */
  async follow(position: number, limit: number, since: number): Promise<FollowPage> {
    for (let i = this.recent.length - 1; i >= 0; i--) {
      const read = this.recent[i];
      if (read.stamp <= since) break; // older ones started earlier still
      if (read.after === position) {
        const page = await read.result.catch(() => undefined);
        if (page) return cut(page, 0, limit, read.limit);
        continue;
      }
      const from = read.done?.events.findIndex((e) => e.position === position) ?? -1;
      if (from >= 0) return cut(read.done!, from + 1, limit, read.limit);
    }
    const read: Read = { stamp: this.stamp(), after: position, limit, result: this.store.follow(position, limit) };
    this.recent.push(read);
    if (this.recent.length > KEPT) this.recent.shift();
    read.result.then(
      (page) => (read.done = page),
      () => (this.recent = this.recent.filter((r) => r !== read)),
    );
    return cut(await read.result, 0, limit, limit);
  }
}

function cut(page: { events: StoredEvent[]; heldBack: boolean }, from: number, limit: number, readLimit: number): FollowPage {
  const events = page.events.slice(from, from + limit);
  return { events, heldBack: page.heldBack, more: from + limit < page.events.length || page.events.length === readLimit };
}

const byStore = new WeakMap<PgEventStore, SharedReads>();

/** The shared reads of this store in this process. */
export function sharedReads(store: PgEventStore): SharedReads {
  let reads = byStore.get(store);
  if (!reads) byStore.set(store, (reads = new SharedReads(store)));
  return reads;
}
