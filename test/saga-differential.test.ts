import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isCommandType } from "../services/shared/catalogue.js";
import type { SagaMode } from "../services/shared/config.js";
import { CheckoutHarness } from "./support/checkout-harness.js";

/**
 * Differential test: one table of generated scenarios runs through both styles, each on a fresh
 * system, one checkout after the other. The business outcome of every checkout (status, reason,
 * stock of every product, payment) and its business events must be identical; only the
 * coordination traffic (the orchestrator's commands) differs.
 */

const PRODUCTS = [9201, 9202, 9203, 9204, 9205].map((id, i) => ({ id, price: 10 + 7.5 * i, stock: 8 }));
const SCENARIOS = 56;
// rate-based failures on top of the deterministic triggers; seeded, so both runs meet the same ones
const FAULTS = { PAYMENT_FAILURE_RATE: "0.15", SHIPPING_FAILURE_RATE: "0.1", FAULT_SEED: "differential" };

/** A small seeded generator (mulberry32), so the scenario table is the same on every run. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Scenario {
  items: { product_id: number; quantity: number }[];
  card_token: string;
  postal_code: string;
}

function scenarios(): Scenario[] {
  const next = random(20261125);
  return Array.from({ length: SCENARIOS }, () => {
    const lines = 1 + Math.floor(next() * 3);
    const ids = [...PRODUCTS].sort(() => next() - 0.5).slice(0, lines).map((p) => p.id);
    return {
      items: ids.map((product_id) => ({ product_id, quantity: 1 + Math.floor(next() * 4) })),
      card_token: next() < 0.15 ? "tok_chargeDeclined" : "tok_visa",
      postal_code: next() < 0.12 ? "00000" : "M5H 1A1",
    };
  });
}

interface Outcome {
  status: string;
  reason: string | null;
  stock: { available: number; reserved: number }[];
  payment: { status: string; amount: number } | null;
  events: string[];
  commands: number;
}

async function runAll(mode: SagaMode, table: Scenario[]): Promise<Outcome[]> {
  const h = await CheckoutHarness.start({ mode, env: FAULTS });
  try {
    await h.seedProducts(PRODUCTS);
    const outcomes: Outcome[] = [];
    for (const s of table) {
      const { accepted, view } = await h.checkout({
        user_id: 457,
        items: s.items,
        card_token: s.card_token,
        shipping_address: { street: "45 Rue Sainte-Catherine", city: "Montreal", postal_code: s.postal_code },
      });
      const events = await h.events(accepted.correlation_id);
      outcomes.push({
        status: view.status,
        reason: view.cancellation_reason,
        stock: await Promise.all(PRODUCTS.map((p) => h.stock(p.id))),
        payment: await h.payment(accepted.order_id),
        events: events.filter((e) => !isCommandType(e.event_type)).map((e) => e.event_type),
        commands: events.filter((e) => isCommandType(e.event_type)).length,
      });
    }
    return outcomes;
  } finally {
    await h.stop();
  }
}

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
