import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runAll, scenarios, type Outcome } from "./support/scenarios.js";

/**
 * Differential test: one table of generated scenarios runs through both styles, each on a fresh
 * system, one checkout after the other. The business outcome of every checkout (status, reason,
 * stock of every product, payment) and its business events must be identical; only the
 * coordination traffic (the orchestrator's commands) differs.
 */

describe("differential: both styles, same scenarios, same business outcomes", () => {
  const table = scenarios();
  let orchestrated: Outcome[];
  let choreographed: Outcome[];

  beforeAll(async () => {
    orchestrated = await runAll("orchestrated", table);
    choreographed = await runAll("choreographed", table);
  }, 300_000);
  afterAll(() => undefined);

  it("the scenario table covers every outcome", () => {
    const kinds = new Set(orchestrated.map((o) => o.reason ?? o.status));
    expect(kinds).toEqual(new Set(["confirmed", "stock_unavailable", "payment_failed", "shipping_failed"]));
  });

  it("gives every checkout the same status, reason, stock, payment and business events", () => {
    const strip = (o: Outcome) => ({ status: o.status, reason: o.reason, stock: o.stock, payment: o.payment, events: o.events });
    for (let i = 0; i < table.length; i++) {
      expect(strip(choreographed[i]), `scenario ${i}: ${JSON.stringify(table[i])}`).toEqual(strip(orchestrated[i]));
    }
  });

  it("differs only in coordination: the orchestrator sends commands, the choreography none", () => {
    expect(orchestrated.every((o) => o.commands > 0)).toBe(true);
    expect(choreographed.every((o) => o.commands === 0)).toBe(true);
  });
});
