/**
 * When a follower writes its checkpoint: at most every `everyMs` instead of after every batch. A
 * checkpoint left behind costs a restart the messages after it handled again, which consumers'
 * inboxes (relay) and the views' positions (projections) make harmless; writing it costs a
 * commit per batch. The position not yet written is written when the follower stops.
 */
export class CheckpointPace {
  private savedAt = 0;
  /** The position handled but not yet written, if any. */
  lagging: number | undefined;

  constructor(private readonly everyMs: number) {}

  /** Whether the next batch should write its checkpoint. */
  get due(): boolean {
    return Date.now() - this.savedAt >= this.everyMs;
  }

  /** The batch up to `upTo` was handled; `written`: its checkpoint with it. */
  handled(upTo: number, written: boolean): void {
    if (written) {
      this.savedAt = Date.now();
      this.lagging = undefined;
    } else this.lagging = upTo;
  }
}
