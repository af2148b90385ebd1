import http from "node:http";
import { performance } from "node:perf_hooks";
import * as hdr from "hdr-histogram-js";
import autocannon from "autocannon";
import { MAX_PREFER_WAIT_S } from "../services/gateway/gateway.routes.js";
import { orderBody, type Scenario } from "./bench-scenarios.js";

/**
 * Load on POST /cqrs/commands/orders with `Prefer: wait=N`: the answer comes when the saga has
 * ended, so a request's latency is the saga's, request to terminal state. Open loop: request i
 * is due at start + i/rate whatever happened before, and its latency counts from that due time,
 * so a slow system cannot slow the load down and hide its queue (no coordinated omission).
 */

/**
 * How long the gateway holds an answer (`Prefer: wait`); a saga still running after it is
 * polled until it ends, so a slow saga does not hold a connection for long.
 */
export const WAIT_SECONDS = 5;

/**
 * A closed loop's client waits for its checkout's end, as long as the gateway holds an answer,
 * so that N clients keep N checkouts in flight: with the open loop's 5 s, a checkout slower than
 * that came back pending and its client sent the next while it still ran (2048 clients in one
 * process: a p50 of 6.8 s, and more checkouts in flight than clients).
 */
export const CLOSED_LOOP_WAIT_SECONDS = MAX_PREFER_WAIT_S;

/**
 * Places checkout `key` and returns the gateway's answer. A 504, or a connection reset before
 * any answer (a keep-alive socket the server closed as it was reused), leaves the checkout
 * unknown: asking again with the same Idempotency-Key (and no wait) returns the order it started,
 * or starts it if it never was.
 */
async function place(t: Target, body: object, key: string, deadline: number): Promise<Answer> {
  let prefer: Record<string, string> = { prefer: `wait=${WAIT_SECONDS}` };
  for (;;) {
    try {
      const a = await request(t, "POST", "/cqrs/commands/orders", body, { ...prefer, "idempotency-key": key });
      if (a.status !== 504 || Date.now() >= deadline) return a;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (!(code === "ECONNRESET" || code === "EPIPE") || Date.now() >= deadline) throw err;
    }
    prefer = {};
    await sleep(500);
  }
}

export interface Target {
  baseUrl: string;
  apiKey?: string;
}

export interface Outcome {
  order_id: string;
  correlation_id: string;
  status: "confirmed" | "cancelled" | "pending";
  /** Wall-clock ms when the request was due and when its terminal state was seen. */
  due_at: number;
  done_at: number;
  latency_ms: number;
}

export interface LoadResult {
  histogram: hdr.Histogram;
  outcomes: Outcome[];
  /** Requests refused or failed (status ≥ 400, network errors), by reason. */
  errors: Record<string, number>;
  duration_s: number;
  /** The index after the last request sent: where a run after this one starts, so none repeats a request. */
  next_index: number;
}

export function newHistogram(): hdr.Histogram {
  // microseconds, up to an hour, 3 significant digits
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 });
}

export interface Progress {
  done: number;
  histogram: hdr.Histogram;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });

function headers(t: Target, extra: Record<string, string> = {}): Record<string, string> {
  return { "content-type": "application/json", ...(t.apiKey ? { "x-api-key": t.apiKey } : {}), ...extra };
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

function request(t: Target, method: string, pathname: string, body?: object, extra?: Record<string, string>): Promise<Answer> {
  const url = new URL(pathname, t.baseUrl);
  const payload = body ? JSON.stringify(body) : undefined;
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent, headers: headers(t, extra) }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        let parsed: Record<string, unknown> = {};
        try {
          parsed = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        } catch {
          // a non-JSON body: the status says enough
        }
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
    });
    req.on("error", reject);
    if (payload) req.end(payload);
    else req.end();
  });
}

export async function getJson<T>(t: Target, pathname: string): Promise<{ status: number; body: T }> {
  const a = await request(t, "GET", pathname);
  return { status: a.status, body: a.body as T };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls an order still running after the wait until it ends or `deadline` passes. */
async function settle(t: Target, orderId: string, deadline: number): Promise<"confirmed" | "cancelled" | "pending"> {
  while (Date.now() < deadline) {
    const { status, body } = await getJson<{ status?: string }>(t, `/cqrs/queries/orders/${orderId}`).catch(() => ({ status: 0, body: {} as { status?: string } }));
    if (status === 200 && (body.status === "confirmed" || body.status === "cancelled")) return body.status;
    await sleep(200);
  }
  return "pending";
}

export interface OpenLoopOptions {
  target: Target;
  scenario: Scenario;
  rate: number;
  durationS: number;
  /** Index of the first request (so warm-up and measured run never repeat a request). */
  firstIndex: number;
  /** Makes the requests' idempotency keys unique to this run. */
  runId: string;
  /** How long after the last due time to wait for answers. */
  drainS: number;
  onProgress?: (p: Progress) => void;
}

export async function openLoop(o: OpenLoopOptions): Promise<LoadResult> {
  const histogram = newHistogram();
  const outcomes: Outcome[] = [];
  const errors: Record<string, number> = {};
  const total = Math.max(1, Math.round(o.rate * o.durationS));
  const startPerf = performance.now();
  const startWall = Date.now();
  const inflight: Promise<void>[] = [];
  const deadline = startWall + (o.durationS + o.drainS) * 1000;

  const fire = (i: number) => {
    const dueOffset = (i * 1000) / o.rate;
    const duePerf = startPerf + dueOffset;
    const dueWall = startWall + dueOffset;
    const run = async () => {
      try {
        const a = await place(o.target, orderBody(o.scenario, o.firstIndex + i), `${o.runId}-${o.firstIndex + i}`, deadline);
        if (a.status >= 400 || !a.body.order_id) {
          const key = `HTTP ${a.status}${typeof a.body.detail === "string" ? `: ${a.body.detail.slice(0, 80)}` : ""}`;
          errors[key] = (errors[key] ?? 0) + 1;
          return;
        }
        let status = a.body.status as Outcome["status"];
        if (status !== "confirmed" && status !== "cancelled") status = await settle(o.target, String(a.body.order_id), deadline);
        const latency = performance.now() - duePerf;
        if (status !== "pending") histogram.recordValue(Math.max(1, Math.round(latency * 1000)));
        outcomes.push({
          order_id: String(a.body.order_id),
          correlation_id: String(a.body.correlation_id),
          status,
          due_at: dueWall,
          done_at: Date.now(),
          latency_ms: latency,
        });
        o.onProgress?.({ done: outcomes.length, histogram });
      } catch (err) {
        const key = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        errors[key] = (errors[key] ?? 0) + 1;
      }
    };
    inflight.push(run());
  };

  // a coarse timer fires every request that has come due; each keeps its own due time
  let next = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      while (next < total && startPerf + (next * 1000) / o.rate <= now) fire(next++);
      if (next >= total) return resolve();
      setTimeout(tick, Math.min(5, Math.max(0, startPerf + (next * 1000) / o.rate - now)));
    };
    tick();
  });
  await Promise.all(inflight);
  return { histogram, outcomes, errors, duration_s: o.durationS, next_index: o.firstIndex + total };
}

export interface SaturationOptions {
  target: Target;
  scenario: Scenario;
  durationS: number;
  connections: number;
  firstIndex: number;
  onProgress?: (p: Progress) => void;
}

/**
 * Closed loop: `connections` clients each send the next checkout as soon as the last one ended,
 * for `durationS`: the most this system finishes per second (which the bench counts from the
 * event store, not from these answers: `completedRates`).
 */
export async function saturate(o: SaturationOptions): Promise<LoadResult> {
  const histogram = newHistogram();
  const outcomes: Outcome[] = [];
  const errors: Record<string, number> = {};
  let index = o.firstIndex;
  let finish!: (r: autocannon.Result) => void;
  let fail!: (e: Error) => void;
  const finished = new Promise<autocannon.Result>((res, rej) => ((finish = res), (fail = rej)));
  const instance = autocannon({
    url: `${o.target.baseUrl}/cqrs/commands/orders`,
    connections: o.connections,
    duration: o.durationS,
    timeout: CLOSED_LOOP_WAIT_SECONDS + 5,
    method: "POST",
    headers: headers(o.target, { prefer: `wait=${CLOSED_LOOP_WAIT_SECONDS}` }),
    // a 504 (the gateway's wait outlived its request timeout) is counted as an error here: a
    // closed loop has no way to ask again for the same checkout
    requests: [
      {
        setupRequest: (req) => ({ ...req, body: JSON.stringify(orderBody(o.scenario, index++)) }),
        onResponse: (status, body) => {
          if (status >= 400) {
            errors[`HTTP ${status}`] = (errors[`HTTP ${status}`] ?? 0) + 1;
            return;
          }
          try {
            const b = JSON.parse(body) as { order_id: string; correlation_id: string; status: Outcome["status"] };
            outcomes.push({ order_id: b.order_id, correlation_id: b.correlation_id, status: b.status, due_at: 0, done_at: Date.now(), latency_ms: 0 });
          } catch {
            errors["unreadable answer"] = (errors["unreadable answer"] ?? 0) + 1;
          }
        },
      },
    ],
  }, (err, r) => (err ? fail(err as Error) : finish(r)));
  instance.on("response", (_client: unknown, _status: number, _bytes: number, responseTime: number) => {
    histogram.recordValue(Math.max(1, Math.round(responseTime * 1000)));
    o.onProgress?.({ done: histogram.totalCount, histogram });
  });
  const result = await finished;
  // the answers still running at the end are settled (and audited) like any other
  for (const x of outcomes) if (x.status === "pending") x.status = await settle(o.target, x.order_id, Date.now() + 30_000);
  return { histogram, outcomes, errors, duration_s: result.duration, next_index: index };
}
