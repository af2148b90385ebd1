import { defineConfig } from "vitest/config";

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
        extends: true,
        test: { name: "checkout", include: ["test/**/*.test.ts"], exclude: ["test/**/*.disruptive.test.ts"], sequence: { groupOrder: 0 } },
      },
      {
        // these restart the machine's brokers: only with DISRUPTIVE_TESTS=1 (they skip, saying so,
        // otherwise), and then after everything else; one file per broker, side by side, each
        // restarting only the broker its own systems run on
        extends: true,
        test: { name: "disruptive", include: ["test/**/*.disruptive.test.ts"], sequence: { groupOrder: 1 } },
      },
    ],
  },
});
