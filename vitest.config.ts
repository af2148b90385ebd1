import { defineConfig } from "vitest/config";

/**
 * The test files that use no broker: every service in the test's own process or in one child
 * process on the in-memory transport. They run beside the broker-restart tests, after the
 * rest. A file not listed here runs before those restarts, so a new test is never hit by one.
 */
const BROKER_FREE = [
  "batcher",
  "bench-options",
  "bench",
  "checkout-concurrency",
  "checkout.behaviour",
  "consumer-batching",
  "database-cpu",
  "deadlines",
  "embedded-database",
  "event-follower",
  "event-store.concurrency",
  "event-store.contract",
  "gateway-property",
  "gateway",
  "hostile-input",
  "in-process-channels",
  "metrics",
  "no-overselling",
  "operations",
  "pglite-stream",
  "read-model.contract",
  "read-model.wiring",
  "redelivery",
  "saga-differential",
  "saga-parity",
  "startup-refusals",
].map((name) => `test/${name}.test.ts`);

export default defineConfig({
  test: {
    // whole systems start in these tests (PGlite, brokers, one process per service): give them
    // room, and run files three at a time: most of their time they wait (deadlines, redelivery,
    // restarts), and two at a time a CI run took 18 minutes on a slow 2-vCPU machine
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: "forks",
    globalSetup: ["test/support/build.global-setup.ts"],
    maxWorkers: 3,
    projects: [
      {
        // first: everything that may use NATS or RabbitMQ
        extends: true,
        test: { name: "checkout", include: ["test/**/*.test.ts"], exclude: ["test/broker-restart.disruptive.test.ts", ...BROKER_FREE], sequence: { groupOrder: 0 } },
      },
      {
        // then, side by side: the tests that use no broker ...
        extends: true,
        test: { name: "in-process", include: BROKER_FREE, sequence: { groupOrder: 1 } },
      },
      {
        // ... and the one file that restarts the machine's brokers, its tests one after the other,
        // while no other test uses a broker: only with DISRUPTIVE_TESTS=1 (it skips, saying so,
        // otherwise). Projects that run side by side share one worker limit, so a second such
        // file would run beside it: keep every broker restart in this file.
        extends: true,
        test: { name: "disruptive", include: ["test/broker-restart.disruptive.test.ts"], sequence: { groupOrder: 1 } },
      },
    ],
  },
});
