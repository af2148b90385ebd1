import { execFileSync, execSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { SAGA_MODES } from "../services/shared/config.js";
import type { OrderAccepted } from "../services/orders/orders.service.js";
import { CheckoutHarness } from "./support/checkout-harness.js";
import { auditCheckouts } from "./support/audit.js";
import { BROKERS, clusterAvailable } from "./support/infrastructure.js";

/**
 * A broker restart in the middle of a run loses no order. This file restarts the machine's
 * RabbitMQ and NATS, so it runs alone, after every other test file (see vitest.config.ts).
 */

const CHECKOUTS = 100;
const PRODUCTS = [
  { id: 9501, price: 15, stock: 80 },
  { id: 9502, price: 22, stock: 80 },
];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function portOpen(port: number): boolean {
  try {
    execSync(`timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/${port}'`, { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

async function waitFor(check: () => boolean, what: string, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${ms} ms`);
    await sleep(250);
  }
}

const restart = {
  async amqp(): Promise<void> {
    execFileSync("rabbitmqctl", ["stop_app"], { stdio: "ignore" });
    await waitFor(() => !portOpen(5672), "RabbitMQ stopping");
    await sleep(1_000);
    execFileSync("rabbitmqctl", ["start_app"], { stdio: "ignore" });
    await waitFor(() => portOpen(5672), "RabbitMQ starting");
  },
  async nats(): Promise<void> {
    const pid = execSync("pgrep -f '^/usr/sbin/nats-server .*-p 4222'").toString().trim().split("\n")[0];
    process.kill(Number(pid), "SIGTERM");
    await waitFor(() => !portOpen(4222), "NATS stopping");
    await sleep(1_000);
    execSync(
      "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log",
    );
    await waitFor(() => portOpen(4222), "NATS starting");
  },
};

/** A client that retries with the same Idempotency-Key until the order is accepted. */
async function placeUntilAccepted(h: CheckoutHarness, i: number): Promise<OrderAccepted> {
  const body = {
    user_id: 456,
    product_id: PRODUCTS[i % 2].id,
    quantity: 1,
    card_token: i % 6 === 0 ? "tok_chargeDeclined" : "tok_visa",
  };
  const deadline = Date.now() + 90_000;
  for (;;) {
    try {
      return await h.placeOrder(body, `restart-${h.config.namespace}-${i}`);
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(500);
    }
  }
}

for (const { kind, url } of BROKERS) {
  const up = await clusterAvailable(kind);
  describe.each(SAGA_MODES)(`${kind} restart during a run (%s)`, (mode) => {
    it.skipIf(!up)(`loses no order of ${CHECKOUTS} when ${kind === "amqp" ? "RabbitMQ" : "NATS"} restarts mid-run`, async () => {
      const h = await CheckoutHarness.startCluster({ mode, transporter: url, env: { PAYMENT_LATENCY_MS: "300", SAGA_STEP_TIMEOUT_MS: "5000", LOG_LEVEL: process.env.RESTART_LOG_LEVEL ?? "warn" } });
      try {
        await h.seedProducts(PRODUCTS);
        const accepted: OrderAccepted[] = [];
        const placing = (async () => {
          for (let i = 0; i < CHECKOUTS; i++) {
            accepted.push(await placeUntilAccepted(h, i));
            if (i % 10 === 9) await sleep(100);
          }
        })();
        await sleep(800);
        const pending = await h.pool.query("SELECT count(*)::int AS n FROM orders.orders WHERE status = 'pending'");
        await restart[kind]();
        await placing;
        for (const a of accepted) await h.settle(a);
        expect(pending.rows[0].n, "checkouts in flight when the broker went down").toBeGreaterThan(0);
        expect(new Set(accepted.map((a) => a.order_id)).size).toBe(CHECKOUTS);
        await auditCheckouts(
          h.pool,
          accepted.map((a) => a.order_id),
          PRODUCTS,
        );
      } catch (err) {
        console.error(`service logs in ${h.logDir}`);
        throw err;
      } finally {
        await h.stop();
      }
    }, 300_000);
  });
}
