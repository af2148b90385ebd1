import { randomUUID } from "node:crypto";
import type { LoggerInstance } from "moleculer";
import type { Queryable } from "../database/database.js";

/**
 * Messages a consumer gave up on (`messaging.dead_letters`): parked with the error and the number
 * of attempts, listed, and published again by an operator (the event-store service's admin
 * routes). The consumer's inbox still guards a replayed message against a second effect.
 */

export interface DeadLetter {
  id: number;
  consumer: string;
  channel: string;
  message_id: string;
  error: string;
  attempts: number;
  created_at: Date;
  replayed_at: Date | null;
  envelope: unknown;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Parks a message its consumer gives up on; one without a usable id gets a new one. */
export async function parkDeadLetter(
  db: Queryable,
  logger: LoggerInstance,
  letter: { consumer: string; channel: string; message: unknown; error: unknown; attempts: number },
): Promise<void> {
  const { consumer, channel, message, error, attempts } = letter;
  const m = (message ?? {}) as { event_id?: unknown; event_type?: unknown };
  const id = typeof m.event_id === "string" && UUID.test(m.event_id) ? m.event_id : randomUUID();
  logger.error(`${consumer}: ${String(m.event_type)} ${id} dead-lettered after ${attempts} attempt(s): ${String(error)}`);
  await db.query(
    `INSERT INTO messaging.dead_letters (consumer, channel, message_id, envelope, error, attempts)
     VALUES ($1, $2, $3, $4, $5, $6)`,
    [consumer, channel, id, JSON.stringify(message ?? null), String(error instanceof Error ? (error.stack ?? error.message) : error), attempts],
  );
}

/** Dead letters not replayed yet. */
export async function countDeadLetters(db: Queryable): Promise<number> {
  const { rows } = await db.query("SELECT count(*)::int AS n FROM messaging.dead_letters WHERE replayed_at IS NULL");
  return rows[0].n as number;
}

/** Every dead letter, replayed or not, oldest first. */
export async function listDeadLetters(db: Queryable): Promise<DeadLetter[]> {
  const { rows } = await db.query(
    `SELECT id, consumer, channel, message_id, error, attempts, created_at, replayed_at, envelope
       FROM messaging.dead_letters ORDER BY id`,
  );
  return rows as DeadLetter[];
}

/** Marks a dead letter replayed and returns what to publish again, or null when there is no such letter. */
export async function takeDeadLetter(db: Queryable, id: number): Promise<{ channel: string; envelope: unknown } | null> {
  const { rows } = await db.query("UPDATE messaging.dead_letters SET replayed_at = now() WHERE id = $1 RETURNING channel, envelope", [id]);
  return rows.length ? { channel: rows[0].channel as string, envelope: rows[0].envelope } : null;
}
