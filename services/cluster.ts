import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { hostname } from "node:os";
import { ConfigError, loadConfig, type ServiceName } from "./shared/config.js";

/**
 * `npm run start:cluster`: one process per service on this machine, each running the same
 * build with `SERVICES=<name>`. Every log line is prefixed with its service's name. Nothing is
 * restarted: a process that dies stays dead (crash tests rely on that), and Ctrl-C stops all.
 */

const self = fileURLToPath(import.meta.url);
// Compiled (dist/, `npm run start:cluster`): plain node. From the sources (the tests): the build
// the test run made first (test/support/build.global-setup.ts sets SPAWN_COMPILED), which starts
// with half the CPU of tsx as a loader; tsx only when there is none.
const compiled = self.endsWith(".js");
const fromDist = compiled || process.env.SPAWN_COMPILED === "1";
const dist = compiled ? path.dirname(path.dirname(self)) : path.join(path.dirname(path.dirname(self)), "dist");
const main = fromDist ? path.join(dist, "services", "main.js") : path.join(path.dirname(self), "main.ts");
// the OpenTelemetry SDK loads before the services, so pg and http are instrumented (OTEL_* configure it)
const otelSdk = fromDist ? path.join(dist, "observability", "otel-sdk.js") : path.join(path.dirname(self), "..", "observability", "otel-sdk.ts");
/**
 * V8's heap in one service's process. A dozen processes share the machine, and each keeps little
 * alive (about 25 MB after a major collection), so each holds its heap close to that:
 * - `--max-semi-space-size=8`: the young generation stays at 8 MB per semi-space, where Node's
 *   default lets it grow to 16 MB under a high allocation rate;
 * - `--heap-growing-percent=50`: the old generation grows to 1.5 times what the last major
 *   collection left alive before the next one, where V8 lets it grow up to four times;
 * - `--v8-pool-size=1`: one V8 helper thread (concurrent marking, compilation) instead of four.
 * Under 128 clients for 30 s the largest process peaked at 144.6-203.1 MB with the first alone
 * (above 150 MB in nine runs of ten) and at 123.7-130.3 MB with the first two (eight runs), at
 * the same throughput (README: Design decisions, measured on the eighteenth machine). With one
 * helper thread each process held about 4 MB less and the largest 3-6 MB less (six pairs, p <=
 * 0.015 in every cell), at the same throughput (twenty-sixth machine). The Dockerfile's command
 * sets the same for each container.
 */
export const SERVICE_PROCESS_V8_FLAGS = ["--max-semi-space-size=8", "--heap-growing-percent=50", "--v8-pool-size=1"];
/**
 * Node's options for the process that runs every service (`npm start`, whose script in
 * package.json sets the same, and the bench's one-process cells): one V8 helper thread instead
 * of four. Under load that process's JavaScript thread, which every stage shares, waits runnable
 * for a core about a third of the time; with one helper the embedded orchestrated style
 * completed an eighth more sagas, and no other cell showed a change (README: Design decisions).
 */
export const SYSTEM_PROCESS_NODE_FLAGS = ["--v8-pool-size=1"];
const nodeArgs = fromDist ? ["--enable-source-maps", "--import", otelSdk, main] : ["--import", "tsx", "--import", otelSdk, main];

const COLORS = [31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96];

export interface ClusterProcess {
  service: ServiceName;
  child: ChildProcess;
}

/** Starts one process per service; `env` is passed to each (plus SERVICES and NODE_ID). */
export function startCluster(
  services: readonly ServiceName[],
  env: NodeJS.ProcessEnv,
  onLine: (service: ServiceName, line: string, stream: "out" | "err") => void,
): ClusterProcess[] {
  return services.map((service) => startService(service, env, onLine));
}

export function startService(
  service: ServiceName,
  env: NodeJS.ProcessEnv,
  onLine: (service: ServiceName, line: string, stream: "out" | "err") => void,
  /** Options for node itself (the bench's `--cpu-prof`). */
  execArgv: readonly string[] = [],
): ClusterProcess {
  // A stable node ID per service: over NATS the channel adapter binds each durable consumer's
  // delivery subject to the node ID, so a process restarted under a new ID would never again
  // receive that consumer's messages.
  const child = startProcess({ ...env, SERVICES: service, NODE_ID: `${env.NODE_ID_PREFIX ?? hostname()}-${service}` }, (line, stream) =>
    onLine(service, line, stream),
    [...SERVICE_PROCESS_V8_FLAGS, ...execArgv],
  );
  return { service, child };
}

/** One process of the system, as `npm start` runs it (SERVICES in `env` picks its services). */
export function startProcess(
  env: NodeJS.ProcessEnv,
  onLine: (line: string, stream: "out" | "err") => void,
  execArgv: readonly string[] = [],
): ChildProcess {
  // node itself runs the service (no wrapper process), so a signal sent to the child reaches
  // the service: `kill -9` in the crash tests is a real crash
  const child = spawn(process.execPath, [...execArgv, ...nodeArgs], { env, stdio: ["ignore", "pipe", "pipe"] });
  createInterface({ input: child.stdout! }).on("line", (l) => onLine(l, "out"));
  createInterface({ input: child.stderr! }).on("line", (l) => onLine(l, "err"));
  return child;
}

async function run(): Promise<void> {
  const config = loadConfig();
  if (config.transport === "memory") {
    throw new ConfigError("start:cluster needs a broker between the processes: set TRANSPORTER=nats://… or amqp://…");
  }
  if (!config.databaseUrl) {
    throw new ConfigError("start:cluster needs a PostgreSQL server the processes share: set DATABASE_URL (embedded PGlite serves one process)");
  }
  // the coordinator of the other style would be a process with nothing to run
  const services = config.services.filter((s) => s !== (config.sagaMode === "orchestrated" ? "saga-watchdog" : "saga-orchestrator"));
  const width = Math.max(...services.map((s) => s.length));
  const colour = (i: number, s: string) => (process.stdout.isTTY ? `\x1b[${COLORS[i % COLORS.length]}m${s}\x1b[0m` : s);
  const index = new Map(services.map((s, i) => [s, i]));
  const procs = startCluster(services, process.env, (service, line, stream) => {
    const out = `${colour(index.get(service)!, service.padEnd(width))} | ${line}\n`;
    (stream === "err" ? process.stderr : process.stdout).write(out);
  });
  let alive = procs.length;
  for (const { service, child } of procs) {
    child.on("exit", (code, signal) => {
      alive--;
      process.stderr.write(`${service.padEnd(width)} | exited (${signal ?? `code ${code}`}); not restarted\n`);
      if (alive === 0) process.exit(0);
    });
  }
  const stop = (signal: NodeJS.Signals) => {
    process.stderr.write(`cluster: ${signal}, stopping ${alive} process(es)\n`);
    for (const { child } of procs) if (child.exitCode === null) child.kill("SIGTERM");
    setTimeout(() => {
      for (const { child } of procs) if (child.exitCode === null) child.kill("SIGKILL");
      process.exit(1);
    }, 10_000).unref();
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  run().catch((err) => {
    console.error(err instanceof ConfigError ? `saga-bench: ${err.message}` : err);
    process.exit(1);
  });
}
