import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { startProcess } from "../../services/cluster.js";
import { ALL_SERVICES, type SagaMode, type ServiceName } from "../../services/shared/config.js";
import { freshPostgresDatabase } from "./infrastructure.js";
import { removeNamespace } from "../../bench/broker-cleanup.js";

export interface SpawnedOptions {
  mode: SagaMode;
  /** "memory" runs every service in one process; nats://… or amqp://… one process per service. */
  transporter: string;
  env?: Record<string, string>;
  /** Share a broker namespace with another system (default: a fresh one). */
  namespace?: string;
  /** Extra settings of one process ("all" in memory mode, else the service's name). */
  envFor?: (process: string) => Record<string, string>;
}

/** A port free on 127.0.0.1 at the moment of asking. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

/**
 * A whole system as a user runs it: `node --import otel-sdk main` processes (one, or one per
 * service) on a fresh PostgreSQL database, reached only through its gateway's HTTP port.
 */
export class SpawnedSystem {
  private readonly children: { name: string; child: ChildProcess }[] = [];
  readonly logs: string[] = [];

  private constructor(
    readonly baseUrl: string,
    readonly pool: pg.Pool,
    readonly namespace: string,
    private readonly cleanup: () => Promise<void>,
  ) {}

  static async start(opts: SpawnedOptions): Promise<SpawnedSystem> {
    const fresh = await freshPostgresDatabase();
    const namespace = opts.namespace ?? `t${randomBytes(4).toString("hex")}`;
    const port = await freePort();
    const ownNamespace = !opts.namespace;
    const pool = new pg.Pool({ connectionString: fresh.url, max: 3 });
    // pg-pool's end() resolves once it has asked its connections to close, not when they have:
    // the forced DROP DATABASE after it can still terminate one (57P01), which lands here
    pool.on("error", () => undefined);
    const sys = new SpawnedSystem(`http://127.0.0.1:${port}`, pool, namespace, async () => {
      await pool.end();
      await fresh.drop();
      if (ownNamespace && opts.transporter !== "memory") {
        await removeNamespace(opts.transporter, namespace).catch((err) => console.warn(`broker clean-up of ${namespace}: ${err}`));
      }
    });
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      SAGA_MODE: opts.mode,
      TRANSPORTER: opts.transporter,
      DATABASE_URL: fresh.url,
      NAMESPACE: namespace,
      LOG_LEVEL: "warn",
      RELAY_POLL_MS: "200",
      PORT: String(port),
      OTEL_BSP_SCHEDULE_DELAY: "100",
      ...opts.env,
    };
    const logDir = path.join(os.tmpdir(), "saga-bench-logs", `${namespace}-${port}`);
    fs.mkdirSync(logDir, { recursive: true });
    const other = opts.mode === "orchestrated" ? "saga-watchdog" : "saga-orchestrator";
    const groups: string[] = opts.transporter === "memory" ? ["all"] : ALL_SERVICES.filter((s: ServiceName) => s !== other);
    for (const name of groups) {
      const file = fs.createWriteStream(path.join(logDir, `${name}.log`), { flags: "a" });
      const child = startProcess(
        { ...env, ...opts.envFor?.(name), SERVICES: name, NODE_ID: `${namespace}-${port}-${name}` },
        (line) => {
          file.write(`${line}\n`);
          sys.logs.push(`${name} | ${line}`);
          if (sys.logs.length > 500) sys.logs.shift();
        },
      );
      sys.children.push({ name, child });
    }
    try {
      await sys.ready(groups.length > 1 ? 600_000 : 120_000);
    } catch (err) {
      await sys.stop();
      throw err;
    }
    return sys;
  }

  /** Until the gateway answers and sees every service of its style. */
  private async ready(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    let last = "";
    while (Date.now() < deadline) {
      const dead = this.children.find((c) => c.child.exitCode !== null);
      if (dead) throw new Error(`${dead.name} exited (${dead.child.exitCode}):\n${this.logs.slice(-30).join("\n")}`);
      try {
        const r = await fetch(`${this.baseUrl}/health`, { signal: AbortSignal.timeout(5_000) });
        const body = (await r.json()) as { status: string; missing: string[] };
        if (body.status === "ok") return;
        last = JSON.stringify(body);
      } catch (err) {
        last = String(err);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`system not ready within ${ms} ms: ${last}\n${this.logs.slice(-30).join("\n")}`);
  }

  /** Places an order and waits until its saga has ended (the read model shows it). */
  async order(body: Record<string, unknown>): Promise<{ order_id: string; correlation_id: string; status: string }> {
    // Each process discovers the others on its own: the gateway's health can be ok while the
    // orders process does not see users yet (503, "try again shortly"). A client asks again,
    // with the same Idempotency-Key, a bounded number of times.
    const key = `spawned-${randomBytes(8).toString("hex")}`;
    let r: Response;
    for (let attempt = 1; ; attempt++) {
      r = await fetch(`${this.baseUrl}/cqrs/commands/orders`, {
        method: "POST",
        headers: { "content-type": "application/json", "idempotency-key": key },
        body: JSON.stringify(body),
      });
      if (r.status !== 503 || attempt === 40) break;
      await r.text();
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    if (r.status !== 202) throw new Error(`order answered ${r.status}: ${await r.text()}`);
    const accepted = (await r.json()) as { order_id: string; correlation_id: string };
    const deadline = Date.now() + 180_000;
    while (Date.now() < deadline) {
      const v = await fetch(`${this.baseUrl}/cqrs/queries/orders/${accepted.order_id}`);
      if (v.status === 200) {
        const view = (await v.json()) as { status: string };
        if (view.status !== "pending") return { ...accepted, status: view.status };
      }
      await new Promise((res) => setTimeout(res, 200));
    }
    throw new Error(`${accepted.order_id} did not end within 180 s\n${this.logs.slice(-30).join("\n")}`);
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.children
        .filter(({ child }) => child.exitCode === null && child.signalCode === null)
        .map(({ child }) => {
          const exited = new Promise((r) => child.once("exit", r));
          child.kill("SIGTERM");
          const force = setTimeout(() => child.kill("SIGKILL"), 10_000);
          return exited.finally(() => clearTimeout(force));
        }),
    );
    await this.cleanup();
  }
}
