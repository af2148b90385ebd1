import { execSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { SAGA_MODES, type SagaMode } from "../../services/shared/config.js";
import type { OrderAccepted } from "../../services/orders/orders.service.js";
import { CheckoutHarness } from "./checkout-harness.js";
import { auditCheckouts } from "./audit.js";
import { AMQP_URL, clusterAvailable, NATS_URL } from "./infrastructure.js";

/**
 * A broker restart in the middle of a run loses no order. The test restarts one of the
 * machine's brokers, so it runs only when asked (DISRUPTIVE_TESTS=1, as .ci/run sets it), and
 * then after every other test file (see vitest.config.ts): one file per broker,
 * `test/*-restart.disruptive.test.ts`, the two side by side, each system on the broker that its
 * file restarts and on nothing the other file touches. How to stop and start each broker is
 * configuration: RABBITMQ_STOP_CMD, RABBITMQ_START_CMD, NATS_STOP_CMD, NATS_START_CMD (shell
 * commands; the defaults suit a Debian machine with the brokers installed as packages).
 */
const OPTED_IN = process.env.DISRUPTIVE_TESTS === "1";

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

/** One saga style's system, with the orders it accepted while the broker went away. */
interface Run {
  mode: SagaMode;
  h: CheckoutHarness;
  accepted: OrderAccepted[];
  placing?: Promise<void>;
}

/** The restart test for one broker: both saga styles' systems on it, through one restart. */
export async function describeBrokerRestart(kind: "amqp" | "nats"): Promise<void> {
  const url = kind === "amqp" ? AMQP_URL : NATS_URL;
  const broker = kind === "amqp" ? "RabbitMQ" : "NATS";
  if (!OPTED_IN) {
    console.warn(`[skip] ${broker} restart: this test stops and starts the machine's ${broker}; set DISRUPTIVE_TESTS=1 to run it`);
  }
  const up = OPTED_IN && (await clusterAvailable(kind));
  describe(`${kind} restart during a run`, () => {
    // Both saga styles run side by side, each its own system in its own namespace, through one
    // restart of the broker: the same outage for both, and one restart instead of two.
    it.skipIf(!up)(`loses no order of ${CHECKOUTS} per saga style when ${broker} restarts mid-run`, async () => {
      const runs: Run[] = [];
      try {
        for (const mode of SAGA_MODES) {
          const h = await CheckoutHarness.startCluster({ mode, transporter: url, env: { PAYMENT_LATENCY_MS: "300", SAGA_STEP_TIMEOUT_MS: "5000", LOG_LEVEL: process.env.RESTART_LOG_LEVEL ?? "warn" } });
          runs.push({ mode, h, accepted: [] });
          await h.seedProducts(PRODUCTS);
        }
        for (const run of runs) {
          run.placing = (async () => {
            for (let i = 0; i < CHECKOUTS; i++) {
              run.accepted.push(await placeUntilAccepted(run.h, i));
              if (i % 10 === 9) await sleep(100);
            }
          })();
        }
        await sleep(800);
        const pending = await Promise.all(runs.map((r) => r.h.pool.query("SELECT count(*)::int AS n FROM orders.orders WHERE status = 'pending'")));
        await restart(kind);
        for (const run of runs) {
          await run.placing;
          for (const a of run.accepted) await run.h.settle(a);
        }
        for (const [i, run] of runs.entries()) {
          expect(pending[i].rows[0].n, `${run.mode}: checkouts in flight when the broker went down`).toBeGreaterThan(0);
          expect(new Set(run.accepted.map((a) => a.order_id)).size, run.mode).toBe(CHECKOUTS);
          await auditCheckouts(
            run.h.pool,
            run.accepted.map((a) => a.order_id),
            PRODUCTS,
          );
        }
      } catch (err) {
        for (const run of runs) {
          console.error(`${run.mode}: service logs in ${run.h.logDir}`);
          // where it stopped: the relay behind the head means nothing more was published
          const relay = await run.h.pool
            .query(
              `SELECT (SELECT position FROM event_store.checkpoints WHERE name = 'relay') AS relay,
                      (SELECT max(position) FROM event_store.events) AS head,
                      (SELECT json_agg(json_build_object('consumer', consumer, 'n', n)) FROM
                         (SELECT consumer, count(*) AS n FROM messaging.inbox GROUP BY 1 ORDER BY 1) i) AS inbox`,
            )
            .catch((e: unknown) => ({ rows: [String(e)] }));
          console.error(`${run.mode}: ${JSON.stringify(relay.rows[0])}`);
        }
        throw err;
      } finally {
        await Promise.all(runs.map((r) => r.h.stop()));
      }
    }, 400_000);
  });
}
