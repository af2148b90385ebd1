import { isCommandType } from "../../services/shared/catalogue.js";
import type { SagaMode } from "../../services/shared/config.js";
import { CheckoutHarness } from "./checkout-harness.js";

/** A seeded table of checkout scenarios, and a runner that records each one's business outcome. */

export const PRODUCTS = [9201, 9202, 9203, 9204, 9205].map((id, i) => ({ id, price: 10 + 7.5 * i, stock: 8 }));
export const SCENARIOS = 56;
// rate-based failures on top of the deterministic triggers; seeded, so both runs meet the same ones
export const FAULTS = { PAYMENT_FAILURE_RATE: "0.15", SHIPPING_FAILURE_RATE: "0.1", FAULT_SEED: "differential" };

/** A small seeded generator (mulberry32), so the scenario table is the same on every run. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Scenario {
  items: { product_id: number; quantity: number }[];
  card_token: string;
  postal_code: string;
}

export function scenarios(): Scenario[] {
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

export interface Outcome {
  status: string;
  reason: string | null;
  stock: { available: number; reserved: number }[];
  payment: { status: string; amount: number } | null;
  events: string[];
  commands: number;
}

/** `inspect` sees the system after the last checkout, before it stops. */
export async function runAll(
  mode: SagaMode,
  table: Scenario[],
  env: Record<string, string> = {},
  inspect?: (h: CheckoutHarness) => Promise<void>,
): Promise<Outcome[]> {
  const h = await CheckoutHarness.start({ mode, env: { ...FAULTS, ...env } });
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
    await inspect?.(h);
    return outcomes;
  } finally {
    await h.stop();
  }
}

