import { describe, expect, it } from "vitest";
import { SAGA_MODES, type ServiceName } from "../services/shared/config.js";
import type { OrderAccepted } from "../services/orders/orders.service.js";
import { CheckoutHarness } from "./support/checkout-harness.js";
import { auditCheckouts } from "./support/audit.js";
import { BROKERS, clusterAvailable } from "./support/infrastructure.js";

/**
 * Crash tests: while 120 checkouts are in flight, `kill -9` the warehouse process, then the
 * payments process, then (orchestrated) the orchestrator, then the event store's (the relay),
 * restarting each. Afterwards every
 * order is confirmed or cancelled and the audit finds nothing lost, stuck or charged twice.
 */

const CHECKOUTS = 120;
const PRODUCTS = [
  { id: 9401, price: 20, stock: 150 },
  { id: 9402, price: 35, stock: 60 },
  { id: 9403, price: 12.5, stock: 40 },
];
const ENV = {
  // keep checkouts in flight long enough to be cut in the middle
  PAYMENT_LATENCY_MS: "150",
  SAGA_STEP_TIMEOUT_MS: "5000",
};

function order(i: number) {
  const a = PRODUCTS[i % 3];
  const b = PRODUCTS[(i + 1) % 3];
  return {
    user_id: [456, 457, 458][i % 3],
    items: i % 4 === 0 ? [{ product_id: a.id, quantity: 1 + (i % 2) }, { product_id: b.id, quantity: 1 }] : [{ product_id: a.id, quantity: 1 }],
    card_token: i % 7 === 0 ? "tok_chargeDeclined" : "tok_visa",
    shipping_address: { street: "1 Test Street", city: "Ottawa", postal_code: i % 11 === 0 ? "00000" : "K1A 0B1" },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function crashRun(h: CheckoutHarness, victims: ServiceName[]): Promise<void> {
  await h.seedProducts(PRODUCTS);
  const accepted: OrderAccepted[] = [];
  // orders arrive over a few seconds while the processes are killed and restarted
  const placing = (async () => {
    for (let i = 0; i < CHECKOUTS; i++) {
      accepted.push(await h.placeOrder(order(i)));
      if (i % 10 === 9) await sleep(100);
    }
  })();
  const inFlightAtCrash: number[] = [];
  for (const victim of victims) {
    await sleep(500);
    // cut the victim while checkouts are mid-saga: the first orders may not be in yet, so wait
    // (bounded) until one is pending; the check after the run fails if none ever was
    let pending = 0;
    for (let tries = 0; tries < 100; tries++) {
      pending = (await h.pool.query("SELECT count(*)::int AS n FROM orders.orders WHERE status = 'pending'")).rows[0].n;
      if (pending > 0) break;
      await sleep(100);
    }
    inFlightAtCrash.push(pending);
    await h.crash(victim);
    await sleep(700);
    await h.restart(victim);
  }
  await placing;
  // the crashes hit checkouts in the middle of their saga
  expect(inFlightAtCrash.every((n) => n > 0), `checkouts in flight at each crash: ${inFlightAtCrash}`).toBe(true);
  for (const a of accepted) await h.settle(a);
  await auditCheckouts(
    h.pool,
    accepted.map((a) => a.order_id),
    PRODUCTS,
  );
  const statuses = await h.pool.query("SELECT status, count(*)::int AS n FROM orders.orders GROUP BY 1");
  expect(statuses.rows.reduce((sum, r) => sum + r.n, 0)).toBe(CHECKOUTS);
}

for (const { kind, url } of BROKERS) {
  const up = await clusterAvailable(kind);
  describe.each(SAGA_MODES)(`crash recovery over ${kind} (%s)`, (mode) => {
    it.skipIf(!up)(`survives kill -9 of warehouse, payments, ${mode === "orchestrated" ? "orchestrator, " : ""}relay with ${CHECKOUTS} checkouts in flight`, async () => {
      const h = await CheckoutHarness.startCluster({ mode, transporter: url, env: ENV });
      try {
        // the event store's process runs the relay: its restart resumes from the checkpoint
        const victims: ServiceName[] = ["warehouse", "payments", ...(mode === "orchestrated" ? (["saga-orchestrator"] as const) : []), "event-store"];
        await crashRun(h, victims);
      } catch (err) {
        const dead = await h.pool.query("SELECT consumer, channel, error FROM messaging.dead_letters").catch(() => ({ rows: [] }));
        console.error("dead letters:", JSON.stringify(dead.rows.slice(0, 5), null, 1), "\nservice logs in", h.logDir);
        for (const [service, lines] of h.logs) {
          const notable = lines.filter((l) => /ERROR|WARN/.test(l) && !/Heartbeat|disconnected|amqplib|API_KEYS/.test(l));
          console.error(`--- ${service}\n${notable.slice(-12).join("\n")}`);
        }
        throw err;
      } finally {
        await h.stop();
      }
    }, 300_000);
  });
}
