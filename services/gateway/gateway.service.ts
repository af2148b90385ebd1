import type { Context, Service, ServiceSchema } from "moleculer";
import ApiGateway from "moleculer-web";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { ServiceDeps } from "../shared/service-deps.js";
import { ALL_SERVICES, SAGA_MODES } from "../shared/config.js";
import type { CreateOrderParams, OrderAccepted } from "../orders/orders.service.js";
import { SETTLED_EVENT, type Settled } from "../projections/projections.service.js";
import type { OrderView } from "../projections/order-projection.js";
import { problemFrom, sendProblem } from "./problem.js";
import { renderPrometheus } from "../../observability/metrics.js";
import { inCurrentTrace } from "../../observability/tracing.js";

/** `Prefer: wait=N` is honoured up to this many seconds. */
const MAX_WAIT_S = 60;
const POLL_MS = 250;

type Req = IncomingMessage & { $ctx?: Context; $route?: unknown; originalUrl?: string; url: string };

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
  return m ? Math.min(Number(m[1]), MAX_WAIT_S) : undefined;
}

/**
 * The REST gateway: the seed's routes, problem+json errors, API keys, a rate limit,
 * idempotency keys and `Prefer: wait=N` (answer when the saga ends, within N seconds).
 */
export function gatewayService(deps: ServiceDeps): ServiceSchema {
  const { config } = deps;
  const waiters = new Map<string, Set<(s: Settled) => void>>();

  function settled(orderId: string, ms: number, svc: Service): Promise<OrderView | null> {
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
      // woken by a broadcast, the check still belongs to this request's trace
      const onSettled = inCurrentTrace(() => void check());
      const set = waiters.get(orderId) ?? new Set();
      set.add(onSettled);
      waiters.set(orderId, set);
      // the broadcast wakes us at once; the poll covers a broadcast lost between processes
      const poll = setInterval(check, POLL_MS);
      const timer = setTimeout(() => finish(null), ms);
      void check();
    });
  }

  const onError = function (this: Service, req: Req, res: ServerResponse, err: Error & { code?: number }) {
    const problem = problemFrom(err, req.originalUrl ?? req.url);
    if (problem.status >= 500) this.logger.error(`${req.method} ${req.url}: ${err.stack ?? err}`);
    const headers: Record<string, string> = {};
    if (problem.status === 429) headers["Retry-After"] = "60";
    if (problem.status === 401) headers["WWW-Authenticate"] = 'ApiKey realm="saga-bench"';
    sendProblem(req, res, problem, headers);
  };

  const route = (path: string, aliases: Record<string, string>, extra: Record<string, unknown> = {}) => ({
    path,
    aliases,
    mappingPolicy: "restrict",
    mergeParams: false,
    authentication: config.apiKeys.length > 0,
    bodyParsers: { json: { strict: false, limit: config.bodyLimit }, urlencoded: false },
    ...(config.rateLimitPerMinute > 0
      ? { rateLimit: { window: 60_000, limit: config.rateLimitPerMinute, headers: true, key: (req: Req) => req.socket.remoteAddress } }
      : {}),
    onBeforeCall(ctx: Context<unknown, RequestMeta>, _route: unknown, req: Req) {
      const h = req.headers;
      ctx.meta.idempotencyKey = typeof h["idempotency-key"] === "string" ? h["idempotency-key"] : undefined;
      ctx.meta.waitSeconds = parsePreferWait(typeof h.prefer === "string" ? h.prefer : undefined);
      ctx.meta.sourceIp = req.socket.remoteAddress;
      ctx.meta.userAgent = typeof h["user-agent"] === "string" ? h["user-agent"] : undefined;
    },
    onError,
    ...extra,
  });

  type P = { params: Record<string, string>; body: unknown; query: Record<string, string> };

  return {
    name: "gateway",
    mixins: [ApiGateway as unknown as ServiceSchema],
    settings: {
      port: config.port,
      ip: config.host,
      log4XXResponses: false,
      logRequest: "debug",
      logResponse: "debug",
      onError,
      routes: [
        route("/", {
          "POST /cqrs/commands/orders": "gateway.placeOrder",
          "GET /cqrs/queries/orders/:order_id": "gateway.order",
          "GET /cqrs/queries/users/:user_id/orders": "gateway.ordersOfUser",
          "GET /cqrs/queries/statistics/orders": "projections.statistics",
          "GET /event-store/api/v1/events": "gateway.events",
          "GET /event-store/api/v1/events/type/:event_type": "gateway.eventsOfType",
          "GET /event-store/api/v1/events/correlation/:correlation_id": "gateway.eventsOfCorrelation",
          "GET /event-store/api/v1/replay/aggregate/:aggregate_type/:aggregate_id": "gateway.replay",
          "GET /sagas/:correlation_id": "gateway.saga",
          "GET /api/v1/products": "products.list",
          "GET /api/v1/products/:id": "gateway.product",
          "GET /api/v1/inventory/:product_id": "gateway.inventory",
          "GET /api/v1/users/:id": "gateway.user",
          "POST /api/v1/carts": "gateway.createCart",
          "GET /api/v1/carts/:cart_id": "gateway.cart",
          "POST /api/v1/carts/:cart_id/items": "gateway.addToCart",
          "DELETE /api/v1/carts/:cart_id/items/:product_id": "gateway.removeFromCart",
          "POST /api/v1/carts/:cart_id/checkout": "gateway.checkoutCart",
          "GET /admin/dead-letters": "event-store.deadLetters",
          "POST /admin/dead-letters/:id/replay": "gateway.replayDeadLetter",
          "POST /admin/projections/rebuild": "projections.rebuild",
        }),
        // health and metrics stay open: orchestration platforms and Prometheus probe without keys
        route("/health", { "GET /": "gateway.health" }, { authentication: false, rateLimit: undefined }),
        route("/metrics", { "GET /": "gateway.metrics" }, { authentication: false, rateLimit: undefined }),
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
    methods: {
      async authenticate(ctx: Context, _route: unknown, req: Req) {
        const h = req.headers;
        const bearer = typeof h.authorization === "string" ? h.authorization.replace(/^Bearer\s+/i, "") : undefined;
        const key = (typeof h["x-api-key"] === "string" ? h["x-api-key"] : undefined) ?? bearer;
        if (key && config.apiKeys.includes(key)) return { key: `${key.slice(0, 4)}…` };
        const err = new Error(key ? "the API key is not valid" : "an API key is required: send it as X-API-Key or Authorization: Bearer") as Error & {
          code: number;
        };
        err.code = 401;
        throw err;
      },
    },
    started(this: Service) {
      if (config.apiKeys.length === 0) {
        this.logger.warn(`no API_KEYS configured: the gateway listens on ${config.host} only`);
      }
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
    const view = await settled(accepted.order_id, wait * 1000, svc);
    ctx.meta.$responseHeaders = headers;
    if (!view) {
      ctx.meta.$statusCode = 202;
      return accepted;
    }
    ctx.meta.$statusCode = 200;
    return { ...accepted, status: view.status, cancellation_reason: view.cancellation_reason, order: view };
  }
}
