import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { ServiceBroker } from "moleculer";
import { loadConfig, type Transport } from "../services/shared/config.js";
import { channelsMiddleware, transporterOptions } from "../services/messaging/transport.js";
import { openDatabase } from "../services/database/database.js";
import { freshPostgresDatabase } from "./fresh-database.js";
import { removeNamespace } from "./broker-cleanup.js";
import { cleanUpOnLeaving } from "./teardown.js";

/**
 * The floor: what one step of the path costs at the least on this machine, measured in the
 * same run as the cells. A request/reply hop is one Moleculer call answered at once; a channel
 * hop is one durable-channel message from send to handler; a commit is BEGIN, one INSERT,
 * COMMIT; a statement is one round trip of a trivial prepared statement on the same connection
 * (`SELECT $1::int`), the least any statement of a hop costs. Each is the median of sequential
 * round trips, so no queue inflates it.
 */

export interface TransportFloor {
  request_reply_ms: number;
  channel_hop_ms: number;
}

const SAMPLES = 300;
const WARMUP = 30;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[s.length >> 1] * 1000) / 1000;
};

async function timeIt(n: number, fn: () => Promise<void>): Promise<number> {
  for (let i = 0; i < WARMUP; i++) await fn();
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn();
    xs.push(performance.now() - t);
  }
  return median(xs);
}

/** Over memory both ends share one broker, as the single-process system's services do. */
export async function measureTransportFloor(transport: Transport, url?: string): Promise<TransportFloor> {
  const namespace = `f${randomBytes(4).toString("hex")}`;
  const config = loadConfig({ TRANSPORTER: transport === "memory" ? "memory" : url, NAMESPACE: namespace });
  const make = (id: string) =>
    new ServiceBroker({
      namespace,
      nodeID: `${namespace}-${id}`,
      transporter: transporterOptions(config),
      logger: false,
      middlewares: [channelsMiddleware(config)],
      // Moleculer's own handlers would stop the broker on SIGINT or SIGTERM and exit with 0,
      // before the bench's teardown removes the namespace; the bench handles its signals
      skipProcessEventRegistration: true,
    });
  const caller = make("caller");
  const callee = transport === "memory" ? caller : make("callee");
  const release = cleanUpOnLeaving(async () => {
    await caller.stop().catch(() => undefined);
    if (caller !== callee) await callee.stop().catch(() => undefined);
    if (url && transport !== "memory") await removeNamespace(url, namespace).catch(() => undefined);
  });
  let arrived: (() => void) | undefined;
  const channel = `${namespace}.floor`;
  callee.createService({
    name: "floor",
    actions: { echo: (ctx: { params: unknown }) => ctx.params },
    channels: { [channel]: { group: "floor", handler: async () => arrived?.() } },
  } as never);
  try {
    await callee.start();
    if (caller !== callee) await caller.start();
    await caller.waitForServices(["floor"], 30_000);
    const request_reply_ms = await timeIt(SAMPLES, async () => {
      await caller.call("floor.echo", { n: 1 });
    });
    const send = (caller as unknown as { sendToChannel(name: string, payload: unknown): Promise<void> }).sendToChannel.bind(caller);
    // the subscription needs a moment to be in place on a real broker
    await new Promise((r) => setTimeout(r, 500));
    const channel_hop_ms = await timeIt(Math.round(SAMPLES / 2), async () => {
      const got = new Promise<void>((r) => (arrived = r));
      await send(channel, { n: 1 });
      await Promise.race([got, new Promise((_, rej) => setTimeout(() => rej(new Error("channel message not delivered in 10 s")), 10_000))]);
    });
    return { request_reply_ms, channel_hop_ms };
  } finally {
    await release();
  }
}

export interface DatabaseFloor {
  commit_ms: number;
  statement_ms: number;
}

/** One commit and one statement on a fresh database of the kind the cells use (PGlite in process, or the server). */
export async function measureDatabaseFloor(adminDatabaseUrl?: string): Promise<DatabaseFloor> {
  const fresh = adminDatabaseUrl ? freshPostgresDatabase(adminDatabaseUrl, "saga_bench_floor") : undefined;
  const dir = fresh ? undefined : fs.mkdtempSync(path.join(os.tmpdir(), "saga-bench-floor-"));
  const remove = cleanUpOnLeaving(async () => {
    await fresh?.drop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });
  try {
    await fresh?.create();
    const db = await openDatabase(fresh ? { databaseUrl: fresh.url, poolSize: 1 } : { pgliteDir: dir });
    try {
      await db.pool.query("CREATE TABLE IF NOT EXISTS public.floor (id SERIAL PRIMARY KEY, at TIMESTAMPTZ NOT NULL DEFAULT now())");
      const client = await db.pool.connect();
      try {
        const commit_ms = await timeIt(SAMPLES, async () => {
          await client.query("BEGIN");
          await client.query("INSERT INTO public.floor DEFAULT VALUES");
          await client.query("COMMIT");
        });
        // with a parameter, so it goes out as a prepared statement, as the system's statements do
        const statement_ms = await timeIt(SAMPLES, async () => {
          await client.query("SELECT $1::int AS n", [1]);
        });
        return { commit_ms, statement_ms };
      } finally {
        client.release();
      }
    } finally {
      await db.close();
    }
  } finally {
    await remove();
  }
}
