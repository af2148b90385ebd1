import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import type net from "node:net";
import amqp from "amqplib";
import { batchAmqpWrites } from "../services/messaging/amqp-write-batching.js";
import { AMQP_URL, available } from "./support/infrastructure.js";

/**
 * amqplib writes each frame of a turn to the socket on its own; `batchAmqpWrites` corks the socket
 * around that loop. Checked against RabbitMQ: what one turn publishes leaves in one write, every
 * message arrives once and in order, and a turn larger than the socket's buffer still drains.
 * The first case runs before the change is made, so it shows what the count measures.
 */

const reachable = await available("amqp");

/** Counts the writes that reach the socket (one per system call: `_write` alone, `_writev` corked). */
function countWrites(socket: net.Socket): { count(): number } {
  let n = 0;
  const s = socket as unknown as { _write: (...a: unknown[]) => void; _writev: (...a: unknown[]) => void };
  const write = s._write.bind(socket);
  const writev = s._writev.bind(socket);
  s._write = (...a) => (n++, write(...a));
  s._writev = (...a) => (n++, writev(...a));
  return { count: () => n };
}

describe.skipIf(!reachable)("amqplib's writes, one per turn", () => {
  let connection: amqp.ChannelModel;
  let channel: amqp.ConfirmChannel;
  let queue: string;
  let writes: { count(): number };

  beforeAll(async () => {
    connection = await amqp.connect(AMQP_URL, { noDelay: true });
    channel = await connection.createConfirmChannel();
    queue = `saga-bench-write-batching-${randomBytes(4).toString("hex")}`;
    // exclusive: RabbitMQ removes it with the connection
    await channel.assertQueue(queue, { exclusive: true, durable: false });
    writes = countWrites((connection as unknown as { connection: { stream: net.Socket } }).connection.stream);
  });
  afterAll(async () => {
    await connection?.close();
  });

  /** Publishes `n` messages in one turn; resolves with the socket writes they took once RabbitMQ confirmed them all. */
  async function publishTurn(n: number, size = 32): Promise<{ writes: number; bodies: string[] }> {
    const bodies = Array.from({ length: n }, (_, i) => `${String(i).padStart(6, "0")}:${"x".repeat(size)}`);
    const before = writes.count();
    for (const b of bodies) channel.sendToQueue(queue, Buffer.from(b));
    await channel.waitForConfirms();
    return { writes: writes.count() - before, bodies };
  }

  async function drainQueue(expected: number): Promise<string[]> {
    const got: string[] = [];
    while (got.length < expected) {
      const msg = await channel.get(queue, { noAck: true });
      if (msg === false) await new Promise((r) => setTimeout(r, 10));
      else got.push(msg.content.toString());
    }
    return got;
  }

  it("as amqplib has it, each message is a write of its own", async () => {
    const { writes: n } = await publishTurn(50);
    await drainQueue(50);
    expect(n).toBeGreaterThanOrEqual(50);
  });

  it("batched, a turn's 50 messages leave in one or two writes, each arriving once and in order", async () => {
    expect(batchAmqpWrites()).toBe(true);
    expect(batchAmqpWrites()).toBe(true); // a second call changes nothing
    const { writes: n, bodies } = await publishTurn(50);
    expect(await drainQueue(50)).toEqual(bodies);
    expect(await channel.get(queue)).toBe(false);
    expect(n).toBeLessThanOrEqual(2);
  });

  it("a turn far larger than the socket's buffer still goes out whole: backpressure holds", async () => {
    const { bodies } = await publishTurn(3000, 1000);
    expect(await drainQueue(3000)).toEqual(bodies);
  });
});
