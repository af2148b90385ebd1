import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { startProcess } from "../services/cluster.js";
import { removeNamespace } from "../bench/broker-cleanup.js";
import { clusterAvailable, freshPostgresDatabase, NATS_URL } from "./support/infrastructure.js";
import { freePort } from "./support/spawned-system.js";

/**
 * A gateway process starting on its own over NATS (as in a deployment of one process per service)
 * answers every request during its start with 503 "starting" or with the gateway's answer, never
 * with a 500. It took requests over in its `created` hook, before the broker had started it, and
 * Moleculer's context tracker failed every call in that window (hundreds of 500s per start).
 */

const ready = await clusterAvailable("nats");

describe("the gateway process during its start", () => {
  it.skipIf(!ready)("answers 503 or its own answer to every request, never 500", async () => {
    const db = await freshPostgresDatabase();
    const namespace = `t${randomBytes(4).toString("hex")}`;
    const port = await freePort();
    const lines: string[] = [];
    const child = startProcess(
      { ...process.env, SERVICES: "gateway", TRANSPORTER: NATS_URL, DATABASE_URL: db.url, NAMESPACE: namespace, PORT: String(port), LOG_LEVEL: "warn", NODE_ID: `${namespace}-gateway` },
      (line) => lines.push(line),
    );
    const codes = new Map<number, number>();
    try {
      // four requests at a time from before the port is bound until the gateway has answered for a while
      let answered = 0;
      const deadline = Date.now() + 60_000;
      while (answered < 200 && Date.now() < deadline && child.exitCode === null) {
        await Promise.all(
          [0, 1, 2, 3].map(() =>
            fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(5_000) }).then(
              async (r) => {
                await r.text();
                codes.set(r.status, (codes.get(r.status) ?? 0) + 1);
                if (r.status !== 503) answered++;
              },
              () => new Promise((r) => setTimeout(r, 2)),
            ),
          ),
        );
      }
      const seen = JSON.stringify(Object.fromEntries(codes));
      expect(child.exitCode, lines.slice(-20).join("\n")).toBeNull();
      expect(answered, seen).toBeGreaterThanOrEqual(200);
      expect(codes.get(500) ?? 0, `${seen}\n${lines.filter((l) => l.includes("ERROR")).slice(0, 3).join("\n")}`).toBe(0);
    } finally {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await exited;
      }
      await db.drop();
      await removeNamespace(NATS_URL, namespace).catch(() => undefined);
    }
  }, 120_000);
});
