import { beforeAll, describe, expect, it } from "vitest";
import { SAGA_MODES } from "../services/shared/config.js";
import { runAll, scenarios, type Outcome } from "./support/scenarios.js";

/**
 * Redelivery: with every message published twice by the relay and handed twice (at once) to its
 * consumer, every checkout of the scenario table ends exactly as it does without duplicates:
 * same status, reason, stock, payment and business events. The inboxes absorb the copies.
 */
describe.each(SAGA_MODES)("every message delivered twice (%s)", (mode) => {
  const table = scenarios();
  let clean: Outcome[];
  let doubled: Outcome[];
  let duplicatesSeen = 0;

  beforeAll(async () => {
    clean = await runAll(mode, table);
    doubled = await runAll(mode, table, { CHAOS_DUPLICATE_DELIVERY: "1" }, async (h) => {
      duplicatesSeen = h.counter("saga_messages_consumed_total", { outcome: "duplicate" });
    });
  }, 300_000);

  it("really delivered duplicates", () => {
    // each message reached its consumers at least twice; every copy after the first is a duplicate
    expect(duplicatesSeen).toBeGreaterThan(table.length * 4);
  });

  it("gives every checkout the same outcome as without duplicates", () => {
    for (let i = 0; i < table.length; i++) {
      expect(doubled[i], `scenario ${i}: ${JSON.stringify(table[i])}`).toEqual(clean[i]);
    }
  });
});
