/**
 * How far the relay may move its checkpoint. A broker holds what it has accepted, so a batch is
 * safe once published; in process nothing holds a message but its handlers, so a batch is safe
 * only once every consumer has handled it, and batches finish in any order. The watermark is the
 * end of the longest run of finished batches, in the order they were handed on.
 */
export class HandledWatermark {
  private readonly open: { upTo: number; done: boolean }[] = [];
  /** Every message up to here has been handled. */
  position = 0;

  /**
   * The batch up to `upTo` was handed on; `handled`, if given, resolves once its handlers have
   * finished. One that rejects (the relay stopped first) holds the watermark where it is.
   */
  add(upTo: number, handled?: Promise<void>): void {
    const entry = { upTo, done: handled === undefined };
    this.open.push(entry);
    if (!handled) return this.advance();
    handled.then(
      () => {
        entry.done = true;
        this.advance();
      },
      () => undefined,
    );
  }

  private advance(): void {
    while (this.open[0]?.done) this.position = Math.max(this.position, this.open.shift()!.upTo);
  }
}
