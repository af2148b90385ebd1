import type { AnyEmit, AnyEnvelope, CommandsOf, DataOf, Participant } from "./catalogue.js";
import { insertNew, type Tx } from "../database/database.js";

export interface CommandContext<Prepared = unknown> {
  tx: Tx;
  /** The message that led to this command: the orchestrator's command, or the event a reaction follows. */
  cause: AnyEnvelope;
  /** What `prepare` fetched before the transaction opened. */
  prepared: Prepared;
}

/** One command of a transaction's batch, with what `prepare` fetched for it. */
export interface QueuedCommand<D, Prepared = unknown> {
  data: D;
  prepared: Prepared;
}

interface Prepares<D, Prepared> {
  /** Slow work outside the transaction (a provider call, a lookup in another service). */
  prepare?(data: D): Promise<Prepared>;
}

/**
 * Carries out one command at a time: `handle` changes state and returns the events that record
 * the outcome, inside the transaction of the consumer's batch, after the commands before it.
 */
export interface OneAtATime<D, Prepared = unknown> extends Prepares<D, Prepared> {
  handle(data: D, ctx: CommandContext<Prepared>): Promise<AnyEmit[]>;
  handleAll?: never;
}

/**
 * Carries out every command of a consumer's transaction together, in a fixed number of
 * statements whatever their count: returns each command's events, in order. The outcome must be
 * the one the same commands would have had one after the other (a later copy of an order's
 * command finds what the first one did); `test/participant-batches.test.ts` holds each such
 * handler to that.
 */
export interface AllAtOnce<D, Prepared = unknown> extends Prepares<D, Prepared> {
  handleAll(tx: Tx, commands: readonly QueuedCommand<D, Prepared>[]): Promise<AnyEmit[][]>;
  handle?: never;
}

/**
 * How a participant carries out a command, inside one transaction with the consumer's inbox
 * claim and the append of what it emits: one at a time, or all of a batch at once.
 */
export type CommandHandler<D, Prepared = unknown> = OneAtATime<D, Prepared> | AllAtOnce<D, Prepared>;

/**
 * Indexes of the first command for each key, in order: the one that acts when the same key
 * comes twice in a batch (a later copy, run after it, would find its row and do nothing).
 */
export function firstOfEach<T>(items: readonly T[], key: (item: T) => string): Set<number> {
  const seen = new Set<string>();
  const first = new Set<number>();
  items.forEach((item, i) => {
    const k = key(item);
    if (!seen.has(k)) {
      seen.add(k);
      first.add(i);
    }
  });
  return first;
}

/**
 * A participant's API: the commands it carries out. It does not know whether an orchestrator's
 * command or another participant's event led to the call; the saga style decides that.
 */
export type ParticipantHandlers<P extends Participant> = {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  [C in CommandsOf<P>]: CommandHandler<DataOf<C>, any>;
};

/**
 * A batch of commands that each write one row, keyed by `key`: each command's outcome is decided
 * (`decide`, pure), the row of the first command of each key is inserted unless that key has one
 * already, and only the commands whose row went in get their events. One statement for the batch.
 */
export async function oneRowEach<D, P, O>(
  tx: Tx,
  commands: readonly QueuedCommand<D, P>[],
  spec: {
    table: string;
    /** The row's key columns, as `RETURNING` gives them back. */
    keyColumns: string;
    key(row: Record<string, unknown>): string;
    decide(command: QueuedCommand<D, P>): O;
    row(data: D, outcome: O, prepared: P): Record<string, unknown>;
    events(data: D, outcome: O, prepared: P): AnyEmit[];
  },
): Promise<AnyEmit[][]> {
  const decided = commands.map((c) => {
    const outcome = spec.decide(c);
    return { c, outcome, row: spec.row(c.data, outcome, c.prepared) };
  });
  const first = firstOfEach(decided, (d) => spec.key(d.row));
  const inserted = await insertNew(tx, spec.table, decided.filter((_, i) => first.has(i)).map((d) => d.row), spec.keyColumns);
  const written = new Set(inserted.map(spec.key));
  return decided.map((d, i) => (first.has(i) && written.has(spec.key(d.row)) ? spec.events(d.c.data, d.outcome, d.c.prepared) : []));
}
