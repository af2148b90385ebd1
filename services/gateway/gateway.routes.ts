import { z } from "zod";
import { dbId } from "../shared/request-fields.js";

/**
 * Every route of the REST API, once: its method and path, the action behind it, what each path
 * and query parameter may hold, and whether it takes a JSON body. The gateway's aliases and its
 * request guard (request-guard.ts) are both built from this table, so a route cannot be served
 * without its input being checked.
 */

export type BodyRule = "json" | "optional-json" | "none";

export interface RouteSpec {
  method: "GET" | "POST" | "DELETE";
  path: string;
  action: string;
  params?: Record<string, z.ZodType<unknown>>;
  query?: Record<string, z.ZodType<unknown>>;
  body?: BodyRule;
  /** Reachable without an API key (probes, Prometheus). */
  open?: boolean;
}

/** A token-like path segment: letters, digits and `_ . : -`, bounded. */
const token = (what: string, max = 128) =>
  z.string().regex(new RegExp(`^[A-Za-z0-9_.:-]{1,${max}}$`), `must be ${what} (letters, digits, _ . : -, at most ${max})`);

const orderId = z.string().regex(/^(order_)?[1-9]\d{0,17}$/, "must look like order_123 or 123");
const cartId = z.string().regex(/^cart_[1-9]\d{0,17}$/, "must look like cart_123");
const correlationId = token("a correlation id like checkout_3f2a…");
const digits = (max: number) =>
  z
    .string()
    .regex(/^\d{1,16}$/, "must be a whole number of 0 or more, in digits")
    .transform(Number)
    .pipe(z.number().max(max, `must be at most ${max}`));
const page = { limit: digits(1000).pipe(z.number().min(1, "must be at least 1")), after: digits(Number.MAX_SAFE_INTEGER) };

/** `Prefer: wait=N` is honoured up to this many seconds (a client that waits for a checkout's end waits no longer). */
export const MAX_PREFER_WAIT_S = 60;

export const ROUTES: readonly RouteSpec[] = [
  { method: "POST", path: "/cqrs/commands/orders", action: "gateway.placeOrder", body: "json" },
  { method: "GET", path: "/cqrs/queries/orders/:order_id", action: "gateway.order", params: { order_id: orderId } },
  { method: "GET", path: "/cqrs/queries/users/:user_id/orders", action: "gateway.ordersOfUser", params: { user_id: dbId }, query: { limit: digits(500) } },
  { method: "GET", path: "/cqrs/queries/statistics/orders", action: "projections.statistics" },
  { method: "GET", path: "/event-store/api/v1/events", action: "gateway.events", query: page },
  { method: "GET", path: "/event-store/api/v1/events/type/:event_type", action: "gateway.eventsOfType", params: { event_type: token("a message type", 64) }, query: page },
  { method: "GET", path: "/event-store/api/v1/events/correlation/:correlation_id", action: "gateway.eventsOfCorrelation", params: { correlation_id: correlationId } },
  {
    method: "GET",
    path: "/event-store/api/v1/replay/aggregate/:aggregate_type/:aggregate_id",
    action: "gateway.replay",
    params: { aggregate_type: token("an aggregate type", 32), aggregate_id: token("an aggregate id") },
  },
  { method: "GET", path: "/sagas/:correlation_id", action: "gateway.saga", params: { correlation_id: correlationId } },
  { method: "GET", path: "/api/v1/products", action: "products.list" },
  { method: "GET", path: "/api/v1/products/:id", action: "gateway.product", params: { id: dbId } },
  { method: "GET", path: "/api/v1/inventory/:product_id", action: "gateway.inventory", params: { product_id: dbId } },
  { method: "GET", path: "/api/v1/users/:id", action: "gateway.user", params: { id: dbId } },
  { method: "POST", path: "/api/v1/carts", action: "gateway.createCart", body: "json" },
  { method: "GET", path: "/api/v1/carts/:cart_id", action: "gateway.cart", params: { cart_id: cartId } },
  { method: "POST", path: "/api/v1/carts/:cart_id/items", action: "gateway.addToCart", params: { cart_id: cartId }, body: "json" },
  { method: "DELETE", path: "/api/v1/carts/:cart_id/items/:product_id", action: "gateway.removeFromCart", params: { cart_id: cartId, product_id: dbId } },
  { method: "POST", path: "/api/v1/carts/:cart_id/checkout", action: "gateway.checkoutCart", params: { cart_id: cartId }, body: "optional-json" },
  { method: "GET", path: "/admin/dead-letters", action: "event-store.deadLetters" },
  { method: "POST", path: "/admin/dead-letters/:id/replay", action: "gateway.replayDeadLetter", params: { id: digits(Number.MAX_SAFE_INTEGER) } },
  { method: "POST", path: "/admin/projections/rebuild", action: "projections.rebuild" },
  { method: "GET", path: "/health", action: "gateway.health", open: true },
  { method: "GET", path: "/metrics", action: "gateway.metrics", open: true },
];

export interface MatchedRoute {
  spec: RouteSpec;
  /** Path parameters as sent (percent-decoded), not yet checked. */
  raw: Record<string, string>;
}

const segmentsOf = (p: string) => p.split("/").filter(Boolean);

/**
 * The routes whose path matches `url` (any method). A segment that is not valid
 * percent-encoding is an error of the request, not a non-match.
 */
export function matchPath(url: string): MatchedRoute[] {
  const parts = segmentsOf(url);
  const found: MatchedRoute[] = [];
  for (const spec of ROUTES) {
    const pattern = segmentsOf(spec.path);
    if (pattern.length !== parts.length) continue;
    const raw: Record<string, string> = {};
    let ok = true;
    for (let i = 0; i < pattern.length && ok; i++) {
      if (pattern[i].startsWith(":")) raw[pattern[i].slice(1)] = parts[i];
      else ok = pattern[i] === parts[i];
    }
    if (ok) found.push({ spec, raw });
  }
  return found;
}
