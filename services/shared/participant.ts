import type { AnyEmit, AnyEnvelope, CommandsOf, DataOf, Participant } from "./catalogue.js";
import type { Tx } from "./database.js";

export interface CommandContext<Prepared = unknown> {
  tx: Tx;
  /** The message that led to this command: the orchestrator's command, or the event a reaction follows. */
  cause: AnyEnvelope;
  /** What `prepare` fetched before the transaction opened. */
  prepared: Prepared;
}

/**
 * How a participant carries out one command: `prepare` does slow work outside the transaction
 * (a provider call, a lookup in another service); `handle` changes state and returns the events
 * that record the outcome, all inside one transaction.
 */
export interface CommandHandler<D, Prepared = unknown> {
  prepare?(data: D): Promise<Prepared>;
  handle(data: D, ctx: CommandContext<Prepared>): Promise<AnyEmit[]>;
}

/**
 * A participant's API: the commands it carries out. It does not know whether an orchestrator's
 * command or another participant's event led to the call; the saga style decides that.
 */
export type ParticipantHandlers<P extends Participant> = {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  [C in CommandsOf<P>]: CommandHandler<DataOf<C>, any>;
};
