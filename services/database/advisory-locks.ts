/**
 * Every advisory lock key of the system, in one table so that no two uses can collide (a
 * read-model start once waited forever on the relay's leadership lock, which had the same key).
 */
export const ADVISORY_LOCKS = {
  /** two-key space: (this, hashtext(correlation id)), one lock per checkout (pg-event-store.ts) */
  checkouts: 7_420_000,
  migration: 7_420_001,
  relayLeader: 7_420_002,
  readModelLayout: 7_420_003,
} as const;
