import { ConfigError, loadConfig } from "./shared/config.js";
import { DatabaseLockedError } from "./database/database.js";
import { GatewayListenError } from "./gateway/gateway-port.js";
import { createSystem } from "./system.js";

/** Errors that explain themselves: one line, no stack. */
const EXPLAINED = [ConfigError, DatabaseLockedError, GatewayListenError];

/** `npm start`: every service (or `SERVICES=a,b`) in this process. */
async function main(): Promise<void> {
  const config = loadConfig();
  const system = await createSystem(config);
  const log = system.broker.getLogger("main");
  log.info(
    `saga mode ${config.sagaMode}, transport ${config.transport}, database ${
      system.db.embedded ? `embedded PGlite (${config.pgliteDir ?? "in memory"})` : "PostgreSQL"
    }, services: ${system.services.join(", ")}`,
  );
  try {
    await system.start();
  } catch (err) {
    // leave nothing behind (the database lock, broker connections) before saying why
    await system.stop().catch(() => undefined);
    throw err;
  }

  // The channel adapters' error paths can reject with nobody listening while the broker is
  // going away (the AMQP adapter re-publishes a failed message on the channel that just closed).
  // Such a message was never acknowledged, so the broker delivers it again after the reconnect
  // and the consumer's inbox absorbs any copy: log it rather than let it end the process.
  process.on("unhandledRejection", (reason) => {
    log.error(`unhandled rejection (process kept running): ${reason instanceof Error ? reason.stack : String(reason)}`);
  });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`${signal}: shutting down`);
    const ok = await system.stop((step) => log.info(`shutdown: ${step}`)).then(
      () => true,
      (err: unknown) => {
        log.error(`shutdown: ${err instanceof Error ? err.message : String(err)}`);
        return false;
      },
    );
    process.exit(ok ? 0 : 1);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
}

main().catch((err) => {
  console.error(EXPLAINED.some((E) => err instanceof E) ? `saga-bench: ${err.message}` : err);
  process.exit(1);
});
