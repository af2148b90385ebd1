import { Duplex } from "node:stream";
import type { PGlite } from "@electric-sql/pglite";

/** The protocol version 3.0 word that marks a startup message (which has no type byte). */
const PROTOCOL_3 = 196608;
/** Frontend message "Terminate". */
const TERMINATE = 0x58;
const isTerminate = (message: Buffer) => message[0] === TERMINATE && message.length === 5;
/** A simple-protocol Query message: ROLLBACK. */
const ROLLBACK = (() => {
  const sql = Buffer.from("ROLLBACK\0");
  const message = Buffer.alloc(5 + sql.length);
  message.write("Q", 0);
  message.writeInt32BE(4 + sql.length, 1);
  sql.copy(message, 5);
  return new Uint8Array(message);
})();

/** Which connection left each PGlite session's transaction open (PGlite has one session). */
const transactionOwner = new WeakMap<PGlite, PGliteStream>();

/**
 * A `pg` connection straight into PGlite, in the same process: `pg` writes the wire protocol into
 * this stream, each complete message goes to PGlite's `execProtocolRawStream`, and PGlite's answer
 * bytes come back as the stream's data. No socket, no second protocol server: the same `pg` code
 * (types, prepared statements, errors) runs as against a PostgreSQL server.
 *
 * PGlite runs one session. Messages are executed strictly in order; the pool that uses this
 * stream keeps one connection (see `openEmbedded`). `pg` writes a statement's protocol
 * messages (Parse, Bind, Describe, Execute, Sync) as chunks of one corked write; they reach
 * PGlite together, in one call, as they would reach a server in one packet: each call into
 * PGlite has a cost of its own (its lock, its entry into WebAssembly, its file-system sync),
 * about a third of a trivial prepared statement's time when each message went in alone. A Terminate ends the stream
 * without reaching PGlite (its session outlives the connection), rolling back a transaction the
 * connection left open, as a server does for a client that goes away; a transaction another
 * connection began since (the pool's next connection) is left alone.
 */
export class PGliteStream extends Duplex {
  private buffered: Buffer = Buffer.alloc(0);
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly db: PGlite) {
    super();
  }

  // the net.Socket surface `pg` uses
  connect(): this {
    setImmediate(() => this.emit("connect"));
    return this;
  }
  setNoDelay(): this {
    return this;
  }
  setKeepAlive(): this {
    return this;
  }
  ref(): this {
    return this;
  }
  unref(): this {
    return this;
  }

  override _read(): void {
    // data is pushed as PGlite produces it
  }

  /** A corked write's chunks (one statement's messages) as one write. */
  override _writev(chunks: { chunk: Buffer }[], callback: (err?: Error | null) => void): void {
    this._write(chunks.length === 1 ? chunks[0].chunk : Buffer.concat(chunks.map((c) => c.chunk)), "binary", callback);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const messages: Buffer[] = [];
    for (;;) {
      const length = this.nextLength();
      if (length === 0 || this.buffered.length < length) break;
      messages.push(this.buffered.subarray(0, length));
      this.buffered = this.buffered.subarray(length);
    }
    if (messages.length === 0) return callback();
    // one turn of the event loop per write, as a socket's round trip would take: the work that
    // arrived meanwhile (messages for a consumer's next batch, requests) gets its turn, instead of
    // waiting behind a whole transaction run in one go
    const run = this.chain.then(() => new Promise<void>((resolve) => setImmediate(resolve))).then(() => this.execute(messages));
    this.chain = run.catch(() => undefined);
    // `pg` writes the next messages only once these are taken; their answers follow as data
    run.then(
      () => undefined,
      (err: Error) => this.destroy(err),
    );
    callback();
  }

  /** Length of the first complete-or-not message in the buffer, or 0 when not known yet. */
  private nextLength(): number {
    const b = this.buffered;
    if (b.length >= 8 && b.readInt32BE(4) === PROTOCOL_3) return b.readInt32BE(0);
    if (b.length >= 5) return 1 + b.readInt32BE(1);
    return 0;
  }

  /** Runs each stretch of messages up to a Terminate in one call into PGlite. */
  private async execute(messages: Buffer[]): Promise<void> {
    for (let i = 0; i < messages.length; ) {
      if (isTerminate(messages[i])) {
        await this.rollbackAbandoned();
        this.push(null);
        return;
      }
      let end = i;
      while (end < messages.length && !isTerminate(messages[end])) end++;
      const input = end - i === 1 ? messages[i] : Buffer.concat(messages.slice(i, end));
      i = end;
      await this.db.runExclusive(async () => {
        await this.db.execProtocolRawStream(new Uint8Array(input.buffer, input.byteOffset, input.byteLength), {
          onRawData: (data) => {
            if (data.length > 0) this.push(Buffer.from(data));
          },
        });
        if (this.db.isInTransaction()) transactionOwner.set(this.db, this);
        else if (transactionOwner.get(this.db) === this) transactionOwner.delete(this.db);
      });
    }
  }

  /** Rolls back the transaction this connection left open; never one another connection began since. */
  private async rollbackAbandoned(): Promise<void> {
    await this.db.runExclusive(async () => {
      if (transactionOwner.get(this.db) !== this) return;
      transactionOwner.delete(this.db);
      // as a protocol message: `exec` would wait for the lock held here
      if (this.db.isInTransaction()) await this.db.execProtocolRawStream(ROLLBACK, { onRawData: () => undefined });
    });
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.chain.then(() => callback(), callback);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.chain
      .then(() => this.rollbackAbandoned())
      .then(
        () => callback(err),
        () => callback(err),
      );
  }
}
