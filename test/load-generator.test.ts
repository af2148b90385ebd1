import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLOSED_LOOP_WAIT_SECONDS, saturate } from "../bench/load-generator.js";

/**
 * The closed loop against a stand-in for the gateway's order command (the load generator is what
 * is tested here: what it sends, and how many checkouts it keeps in flight).
 */

const SAGA_MS = 150;
let server: http.Server;
let baseUrl: string;
const prefers = new Set<string>();
let inFlight = 0;
let mostInFlight = 0;
let next = 0;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      prefers.add(String(req.headers.prefer));
      inFlight++;
      mostInFlight = Math.max(mostInFlight, inFlight);
      const id = ++next;
      // answers when the "saga" ends, as the gateway does within the wait asked for
      setTimeout(() => {
        inFlight--;
        res.writeHead(201, { "content-type": "application/json" });
        res.end(JSON.stringify({ order_id: String(id), correlation_id: `c${id}`, status: "confirmed" }));
      }, SAGA_MS);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

describe("the closed loop", () => {
  it("asks the gateway to hold each answer until its checkout ends, as long as it holds any, and keeps one checkout in flight per client", async () => {
    const r = await saturate({ target: { baseUrl }, scenario: "happy", durationS: 1, connections: 4, firstIndex: 0 });
    expect([...prefers]).toEqual([`wait=${CLOSED_LOOP_WAIT_SECONDS}`]);
    expect(CLOSED_LOOP_WAIT_SECONDS).toBe(60);
    expect(mostInFlight).toBeLessThanOrEqual(4);
    expect(r.outcomes.length).toBeGreaterThan(4);
    expect(r.errors).toEqual({});
  });
});
