/**
 * The failure mixes a cell runs. Rate-based faults are the system's own fault injection
 * (PAYMENT_FAILURE_RATE, SHIPPING_FAILURE_RATE, seeded by FAULT_SEED, so both styles see the same
 * orders fail); a short stock comes from the request mix (a line above the product's stock).
 * The request for index i is the same in every cell, so both styles get the same load.
 */

export const SCENARIOS = ["happy", "payment-10", "payment-50", "shipping-10", "out-of-stock", "mixed"] as const;
export type Scenario = (typeof SCENARIOS)[number];

/** Products every scenario orders from: stocked far beyond any run. */
export const PLENTY_PRODUCTS = [101, 102, 103, 104];
export const PLENTY_STOCK = 10_000_000;
/** The product the out-of-stock lines ask too much of (its stock is never touched otherwise). */
export const SHORT_PRODUCT = 105;
export const SHORT_STOCK = 5_000;
const SHORT_QUANTITY = 6_000;
const USERS = [456, 457, 458];

interface ScenarioSpec {
  env: Record<string, string>;
  /** Every n-th request (1-based) asks for more than the short product's stock; 0: never. */
  shortEvery: number;
  /** Whether faults come from the system's configuration (a --target deployment cannot be set). */
  needsSystemFaults: boolean;
}

const SPECS: Record<Scenario, ScenarioSpec> = {
  happy: { env: {}, shortEvery: 0, needsSystemFaults: false },
  "payment-10": { env: { PAYMENT_FAILURE_RATE: "0.1" }, shortEvery: 0, needsSystemFaults: true },
  "payment-50": { env: { PAYMENT_FAILURE_RATE: "0.5" }, shortEvery: 0, needsSystemFaults: true },
  "shipping-10": { env: { SHIPPING_FAILURE_RATE: "0.1" }, shortEvery: 0, needsSystemFaults: true },
  "out-of-stock": { env: {}, shortEvery: 4, needsSystemFaults: false },
  mixed: { env: { PAYMENT_FAILURE_RATE: "0.1", SHIPPING_FAILURE_RATE: "0.05" }, shortEvery: 10, needsSystemFaults: true },
};

export function scenarioEnv(s: Scenario, seed: string): Record<string, string> {
  return { FAULT_SEED: seed, PAYMENT_FAILURE_RATE: "0", SHIPPING_FAILURE_RATE: "0", ...SPECS[s].env };
}

export function needsSystemFaults(s: Scenario): boolean {
  return SPECS[s].needsSystemFaults;
}

export interface OrderBody {
  user_id: number;
  items: { product_id: number; quantity: number }[];
}

/** The i-th checkout of a scenario (i counts from 0). */
export function orderBody(s: Scenario, i: number): OrderBody {
  const line = { product_id: PLENTY_PRODUCTS[i % PLENTY_PRODUCTS.length], quantity: 1 + (i % 2) };
  const every = SPECS[s].shortEvery;
  const short = every > 0 && (i + 1) % every === 0;
  // a two-line order whose second line is short: the first is reserved, then released
  return {
    user_id: USERS[i % USERS.length],
    items: short ? [line, { product_id: SHORT_PRODUCT, quantity: SHORT_QUANTITY }] : [line],
  };
}

/** The seeded stock every cell starts from. */
export const SEEDED_STOCK = [
  ...PLENTY_PRODUCTS.map((product_id) => ({ product_id, stock: PLENTY_STOCK })),
  { product_id: SHORT_PRODUCT, stock: SHORT_STOCK },
];
