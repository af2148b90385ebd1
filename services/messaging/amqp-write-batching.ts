import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

interface Corkable {
  cork(): void;
  uncork(): void;
}
interface MuxPrototype {
  _readIncoming(this: { out: Corkable }): void;
  [BATCHED]?: true;
}
const BATCHED = Symbol.for("saga-bench.amqp-write-batching");

/**
 * One socket write per turn for every amqplib connection of this process: the relay's confirm
 * channel, the channel adapter's consumers (their acknowledgements) and Moleculer's AMQP
 * transporter.
 *
 * amqplib queues each channel's frames and its `Mux` hands them to the socket in a loop, one
 * `socket.write` per frame; with `noDelay` each is a system call and a packet of its own, so a
 * relay batch of 30 messages cost 30 writes (a third of the relay process's profile samples
 * were in them). Corking the socket around that loop sends what the turn queued in one
 * `writev`, at the same moment: nothing waits for a timer. Backpressure is unchanged: a corked
 * write still returns false past the socket's high-water mark, and the loop stops there until
 * `drain`.
 *
 * The loop is amqplib's own (0.10, `lib/mux.js`); if a later version has none, nothing is
 * changed and this returns false (test/amqp-write-batching.test.ts then fails, which is the
 * prompt to look again).
 */
export function batchAmqpWrites(): boolean {
  let proto: MuxPrototype | undefined;
  try {
    proto = (require("amqplib/lib/mux.js") as { Mux?: { prototype: MuxPrototype } }).Mux?.prototype;
  } catch {
    return false;
  }
  if (!proto || typeof proto._readIncoming !== "function") return false;
  if (proto[BATCHED]) return true;
  const readIncoming = proto._readIncoming;
  proto._readIncoming = function (this: { out: Corkable }) {
    const out = this.out;
    if (typeof out?.cork !== "function") return readIncoming.call(this);
    out.cork();
    try {
      readIncoming.call(this);
    } finally {
      out.uncork();
    }
  };
  proto[BATCHED] = true;
  return true;
}
