import type { Context, Service, ServiceSchema } from "moleculer";
import ApiGateway from "moleculer-web";
import type { RequestListener, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { ServiceDeps } from "../shared/service-deps.js";
import { ALL_SERVICES, SAGA_MODES } from "../shared/config.js";
import type { CreateOrderParams, OrderAccepted } from "../orders/orders.service.js";
import { SETTLED_EVENT, type Settled } from "../projections/projections.service.js";
import type { OrderView } from "../projections/order-projection.js";
import { problemFrom, sendProblem } from "./problem.js";
import { MAX_PREFER_WAIT_S, ROUTES, type RouteSpec } from "./gateway.routes.js";
import { headAsGet, requestGuard, type GuardedRequest } from "./request-guard.js";
import { renderPrometheus } from "../../observability/metrics.js";
import { answerStarting } from "./gateway-port.js";

/** moleculer-web without its own listen and close: the gateway does those (openGatewayPort, stopListening). */
const { started: _listen, stopped: _close, ...webWithoutListen } = ApiGateway as unknown as ServiceSchema;

/** A `Prefer: wait` request looks at the read model this often: only a broadcast lost between processes leaves it to this. */
const POLL_MS = 1_000;
/** How long requests in progress (a `Prefer: wait` among them) may take to finish at shutdown. */
const STOP_GRACE_MS = 5_000;

type Req = GuardedRequest & { $ctx?: Context; $route?: unknown; url: string };

interface RequestMeta {
  idempotencyKey?: string;
  waitSeconds?: number;
  sourceIp?: string;
  userAgent?: string;
  $statusCode?: number;
  $responseHeaders?: Record<string, string>;
}

export function parsePreferWait(header: string | undefined): number | undefined {
  const m = header?.match(/(?:^|[,;\s])wait\s*=\s*"?(\d+)"?/i);
  return m ? Math.min(Number(m[1]), MAX_PREFER_WAIT_S) : undefined;
}

/**
 * The REST gateway: the seed's routes, problem+json errors, API keys, a rate limit,
 * idempotency keys and `Prefer: wait=N` (answer when the saga ends, within N seconds).
 */
export function gatewayService(deps: ServiceDeps, server: Server): ServiceSchema {
  const { config } = deps;
  const waiters = new Map<string, Set<(view: Settled) => void>>();

  /**
   * The order's view once its saga has ended, or null after `ms`. `replayed`: an idempotent replay,
   * whose order may have ended before we listened, so the read model is looked at right away.
   */
  function settled(orderId: string, ms: number, svc: Service, replayed: boolean): Promise<OrderView | null> {
    return new Promise((resolve) => {
      let done = false;
      const finish = (view: OrderView | null) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        clearInterval(poll);
        waiters.get(orderId)?.delete(onSettled);
        resolve(view);
      };
      const check = () =>
        svc.broker
          .call<OrderView, { order_id: string }>("projections.order", { order_id: orderId })
          .then((v) => (v.status !== "pending" ? finish(v) : undefined))
          .catch(() => undefined);
      // the broadcast carries the view just written: the answer, with no read of the read model
      const onSettled = (view: Settled) => finish(view);
      const set = waiters.get(orderId) ?? new Set();
      set.add(onSettled);
      waiters.set(orderId, set);
      // the broadcast answers at once; the first check finds a replayed order settled before we
      // listened (a new one cannot be: its saga has only just begun), the poll a broadcast lost
      // between processes
      const poll = setInterval(check, POLL_MS);
      const timer = setTimeout(() => finish(null), ms);
      if (replayed) void check();
    });
  }

  const onError = function (this: Service, req: Req, res: ServerResponse, err: Error & { code?: number; data?: { headers?: Record<string, string> } }) {
    const problem = problemFrom(err, (req.originalUrl ?? req.url).split("?")[0]);
    if (problem.status >= 500) this.logger.error(`${req.method} ${req.url}: ${err.stack ?? err}`);
    const headers: Record<string, string> = { ...(err.data?.headers ?? {}) };
    if (problem.status === 429) headers["Retry-After"] = "60";
    sendProblem(req, res, problem, headers);
  };

  const guarded = requestGuard({ apiKeys: config.apiKeys, bodyLimitBytes: config.bodyLimitBytes });
  const aliasesOf = (specs: readonly RouteSpec[], prefix = "") =>
    Object.fromEntries(specs.map((r) => [`${r.method} ${r.path.slice(prefix.length) || "/"}`, r.action]));

  const route = (path: string, aliases: Record<string, string>, extra: Record<string, unknown> = {}) => ({
    path,
    aliases,
    mappingPolicy: "restrict",
    mergeParams: false,
    // a `Prefer: wait` answer may take up to MAX_PREFER_WAIT_S: the broker's default request timeout
    // (10 s) would cut it short with a 504; the calls the actions make keep that default
    callOptions: { timeout: (MAX_PREFER_WAIT_S + 5) * 1000 },
    // the request guard reads and checks the body, after the API key: no body parser of moleculer-web's
    bodyParsers: false,
    use: [guarded],
    ...(config.rateLimitPerMinute > 0
      ? { rateLimit: { window: 60_000, limit: config.rateLimitPerMinute, headers: true, key: (req: Req) => req.socket.remoteAddress } }
      : {}),
    onBeforeCall(ctx: Context<unknown, RequestMeta>, _route: unknown, req: Req & { $params: Partial<P> }) {
      const input = req.$input!;
      // hand the actions the checked values, not moleculer-web's own reading of the URL
      Object.assign(req.$params, { params: input.params, query: input.query, body: input.body });
      ctx.meta.idempotencyKey = input.idempotencyKey;
      ctx.meta.waitSeconds = parsePreferWait(typeof req.headers.prefer === "string" ? req.headers.prefer : undefined);
      ctx.meta.sourceIp = req.socket.remoteAddress;
      ctx.meta.userAgent = input.userAgent;
    },
    onError,
    ...extra,
  });

  type P = { params: Record<string, unknown>; body: unknown; query: Record<string, unknown> };

  return {
    name: "gateway",
    mixins: [webWithoutListen],
    settings: {
      // the port is bound by openGatewayPort, not by moleculer-web
      server: false,
      log4XXResponses: false,
      logRequest: "debug",
      logResponse: "debug",
      onError,
      routes: [
        route("/", aliasesOf(ROUTES.filter((r) => !r.open))),
        // health and metrics stay open (no key, no rate limit): orchestration platforms and Prometheus probe them
        ...ROUTES.filter((r) => r.open).map((r) => route(r.path, aliasesOf([r], r.path), { rateLimit: undefined })),
      ],
    },
    events: {
      [SETTLED_EVENT](ctx: Context<Settled>) {
        for (const wake of waiters.get(ctx.params.order_id) ?? []) wake(ctx.params);
      },
    },
    actions: {
      placeOrder: {
        async handler(this: Service, ctx: Context<P, RequestMeta>) {
          const accepted = await ctx.call<OrderAccepted & { replayed?: boolean }, CreateOrderParams>("orders.create", {
            body: ctx.params.body,
            idempotency_key: ctx.meta.idempotencyKey,
            source_ip: ctx.meta.sourceIp,
            user_agent: ctx.meta.userAgent,
          });
          return answer(this, ctx, accepted);
        },
      },
      checkoutCart: {
        async handler(this: Service, ctx: Context<P, RequestMeta>) {
          const accepted = await ctx.call<OrderAccepted & { replayed?: boolean }, object>("carts.checkout", {
            cart_id: ctx.params.params.cart_id,
            body: ctx.params.body,
            idempotency_key: ctx.meta.idempotencyKey,
            source_ip: ctx.meta.sourceIp,
            user_agent: ctx.meta.userAgent,
          });
          return answer(this, ctx, accepted);
        },
      },
      order: { handler: (ctx: Context<P>) => ctx.call("projections.order", ctx.params.params) },
      ordersOfUser: {
        handler: (ctx: Context<P>) => ctx.call("projections.ordersOfUser", { ...ctx.params.query, ...ctx.params.params }),
      },
      events: { handler: (ctx: Context<P>) => ctx.call("event-store.list", ctx.params.query) },
      eventsOfType: {
        handler: (ctx: Context<P>) => ctx.call("event-store.byType", { ...ctx.params.query, ...ctx.params.params }),
      },
      eventsOfCorrelation: { handler: (ctx: Context<P>) => ctx.call("event-store.byCorrelation", ctx.params.params) },
      replay: { handler: (ctx: Context<P>) => ctx.call("event-store.replayAggregate", ctx.params.params) },
      saga: { handler: (ctx: Context<P>) => ctx.call("projections.saga", ctx.params.params) },
      product: { handler: (ctx: Context<P>) => ctx.call("products.get", ctx.params.params) },
      inventory: { handler: (ctx: Context<P>) => ctx.call("warehouse.inventory", ctx.params.params) },
      user: { handler: (ctx: Context<P>) => ctx.call("users.get", ctx.params.params) },
      createCart: {
        async handler(ctx: Context<P, RequestMeta>) {
          const cart = await ctx.call<{ cart_id: string }, object>("carts.create", { body: ctx.params.body });
          ctx.meta.$statusCode = 201;
          ctx.meta.$responseHeaders = { Location: `/api/v1/carts/${cart.cart_id}` };
          return cart;
        },
      },
      cart: { handler: (ctx: Context<P>) => ctx.call("carts.get", ctx.params.params) },
      addToCart: {
        handler: (ctx: Context<P>) => ctx.call("carts.addItem", { cart_id: ctx.params.params.cart_id, body: ctx.params.body }),
      },
      removeFromCart: { handler: (ctx: Context<P>) => ctx.call("carts.removeItem", ctx.params.params) },
      replayDeadLetter: { handler: (ctx: Context<P>) => ctx.call("event-store.replayDeadLetter", ctx.params.params) },
      /** Every node's saga metrics, and two cluster-wide gauges, in Prometheus text format. */
      metrics: {
        async handler(this: Service, ctx: Context<unknown, RequestMeta & { $responseType?: string }>) {
          const nodes = (this.broker.registry as unknown as { getNodeList(o: object): { id: string }[] }).getNodeList({ onlyAvailable: true, withServices: false });
          const snapshots = await Promise.all(
            nodes.map(async ({ id }) => ({
              nodeID: id,
              metrics: await ctx.call<never[], object>("$node.metrics", { includes: "saga_*" }, { nodeID: id }).catch(() => []),
            })),
          );
          // cluster-wide gauges from the database; left out (not zero) when their service is away
          const pending = await ctx.call<Record<string, number>>("projections.inFlight").catch(() => undefined);
          const dead = await ctx.call<number>("event-store.deadLetterCount").catch(() => undefined);
          const inFlight = pending && { ...Object.fromEntries(SAGA_MODES.map((m) => [m, 0])), ...pending };
          const gauges = [
            ...(inFlight === undefined
              ? []
              : [
                  {
                    type: "gauge",
                    name: "saga_in_flight",
                    description: "Checkouts accepted and not yet ended, by saga mode",
                    values: Object.entries(inFlight).map(([mode, value]) => ({ labels: { mode }, value })),
                  },
                ]),
            ...(dead === undefined
              ? []
              : [{ type: "gauge", name: "saga_dead_letters", description: "Dead letters not replayed", values: [{ labels: {}, value: dead }] }]),
          ];
          ctx.meta.$responseType = "text/plain; version=0.0.4; charset=utf-8";
          return renderPrometheus(snapshots, gauges);
        },
      },
      health: {
        async handler(this: Service) {
          const services = [...new Set(this.broker.registry.getServiceList({ onlyAvailable: true }).map((s: { name: string }) => s.name))]
            .filter((n) => !n.startsWith("$"))
            .sort();
          let database = "ok";
          await deps.db.pool.query("SELECT 1").catch((err: Error) => (database = err.message));
          const other = config.sagaMode === "orchestrated" ? "saga-watchdog" : "saga-orchestrator";
          const missing = ALL_SERVICES.filter((s) => s !== other && !services.includes(s));
          const ok = database === "ok" && missing.length === 0;
          return { status: ok ? "ok" : "degraded", saga_mode: config.sagaMode, transport: config.transport, database, services, missing };
        },
      },
    },
    created(this: Service) {
      // moleculer-web serves requests on the port bound by openGatewayPort
      (this as unknown as { server: Server }).server = server;
    },
    started(this: Service) {
      // Taken over once the service has started, not when it is created: until the broker starts
      // it (after the transporter has connected), Moleculer's context tracker has no list for
      // its calls, and every request failed with a TypeError (500) in that window.
      server.off("request", answerStarting);
      const handle = (this as unknown as { httpHandler: RequestListener }).httpHandler;
      server.on("request", (req, res) => handle(headAsGet(req), res));
      const { address, port } = server.address() as AddressInfo;
      const where = config.apiKeys.length > 0 ? "API keys required" : "no API_KEYS: open to anyone who can reach this address";
      this.logger.info(`listening on http://${address.includes(":") ? `[${address}]` : address}:${port} (${where})`);
    },
    methods: {
      /** Closes the port; requests in progress get their answer (up to a bound), idle connections close. */
      async stopListening() {
        if (!server.listening) return;
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        const bound = setTimeout(() => server.closeAllConnections(), STOP_GRACE_MS);
        await closed;
        clearTimeout(bound);
      },
    },
    async stopped(this: Service) {
      await (this as unknown as { stopListening(): Promise<void> }).stopListening();
    },
  };

  async function answer(svc: Service, ctx: Context<P, RequestMeta>, accepted: OrderAccepted & { replayed?: boolean }) {
    const headers: Record<string, string> = { Location: accepted.links.self };
    if (accepted.replayed) headers["Idempotent-Replayed"] = "true";
    const wait = ctx.meta.waitSeconds;
    if (wait === undefined) {
      ctx.meta.$statusCode = 202;
      ctx.meta.$responseHeaders = headers;
      return accepted;
    }
    headers["Preference-Applied"] = `wait=${wait}`;
    const view = await settled(accepted.order_id, wait * 1000, svc, accepted.replayed === true);
    ctx.meta.$responseHeaders = headers;
    if (!view) {
      ctx.meta.$statusCode = 202;
      return accepted;
    }
    ctx.meta.$statusCode = 200;
    return { ...accepted, status: view.status, cancellation_reason: view.cancellation_reason, order: view };
  }
}
