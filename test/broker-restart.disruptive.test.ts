import { execSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { SAGA_MODES } from "../services/shared/config.js";
import type { OrderAccepted } from "../services/orders/orders.service.js";
import { CheckoutHarness } from "./support/checkout-harness.js";
import { auditCheckouts } from "./support/audit.js";
import { AMQP_URL, BROKERS, clusterAvailable, NATS_URL } from "./support/infrastructure.js";

/**
 * A broker restart in the middle of a run loses no order. This file restarts the machine's
 * RabbitMQ and NATS, so it runs only when asked (DISRUPTIVE_TESTS=1, as .ci/run sets it), and
 * then alone, after every other test file (see vitest.config.ts). How to stop and start each
 * broker is configuration: RABBITMQ_STOP_CMD, RABBITMQ_START_CMD, NATS_STOP_CMD, NATS_START_CMD
 * (shell commands; the defaults suit a Debian machine with the brokers installed as packages).
 */
const OPTED_IN = process.env.DISRUPTIVE_TESTS === "1";
if (!OPTED_IN) {
  console.warn("[skip] broker-restart: these tests stop and start the machine's RabbitMQ and NATS; set DISRUPTIVE_TESTS=1 to run them");
}

const CONTROL = {
  amqp: {
    stop: process.env.RABBITMQ_STOP_CMD ?? "rabbitmqctl stop_app",
    start: process.env.RABBITMQ_START_CMD ?? "rabbitmqctl start_app",
  },
  nats: {
    // the NATS server that listens on the test URL's port, and nothing else
    stop: process.env.NATS_STOP_CMD ?? `pkill -TERM -o -f "[n]ats-server .*-p ${new URL(NATS_URL).port}"`,
    start:
      process.env.NATS_START_CMD ??
      `start-stop-daemon --start --oknodo --background --exec "$(command -v nats-server)" -- -a 127.0.0.1 -p ${new URL(NATS_URL).port} -js -sd /var/lib/nats-server -l /var/log/nats-server.log`,
  },
};

const CHECKOUTS = 100;
const PRODUCTS = [
  { id: 9501, price: 15, stock: 80 },
  { id: 9502, price: 22, stock: 80 },
];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function portOpen(url: string): boolean {
  const { hostname, port } = new URL(url);
  try {
    execSync(`timeout 2 bash -c 'exec 3<>/dev/tcp/${hostname}/${port}'`, { stdio: "ignore" });
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

async function restart(kind: "amqp" | "nats"): Promise<void> {
  const url = kind === "amqp" ? AMQP_URL : NATS_URL;
  const name = kind === "amqp" ? "RabbitMQ" : "NATS";
  execSync(CONTROL[kind].stop, { stdio: "ignore", shell: "/bin/sh" });
  await waitFor(() => !portOpen(url), `${name} stopping`);
  await sleep(1_000);
  execSync(CONTROL[kind].start, { stdio: "ignore", shell: "/bin/sh" });
  await waitFor(() => portOpen(url), `${name} starting`);
}

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
  const up = OPTED_IN && (await clusterAvailable(kind));
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
        await restart(kind);
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
