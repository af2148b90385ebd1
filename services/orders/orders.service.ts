import type { Context, ServiceSchema } from "moleculer";
import { createHash, randomBytes } from "node:crypto";
import { z } from "zod";
import { emit, type AnyNewMessage, type DataOf } from "../shared/catalogue.js";
import { Batcher, BatchFailed } from "../shared/batcher.js";
import { inCheckout, inCurrentTrace } from "../../observability/tracing.js";
import { withTransaction, type Queryable } from "../database/database.js";
import { isNotFound, UnprocessableEntity, type FieldIssue } from "../shared/errors.js";
import { canonicalJson, cardToken, dbId, MAX_QUANTITY, orderLines, quantity, shippingAddress } from "../shared/request-fields.js";
import { firstOfEach, type ParticipantHandlers } from "../shared/participant.js";
import type { ServiceDeps } from "../shared/service-deps.js";
import { MAX_BATCH } from "../messaging/consume.js";
import { committed } from "../event-store/commit-signal.js";
import type { Product } from "../products/products.service.js";
import type { User } from "../users/users.service.js";

const MAX_LINES = 50;

/** A checkout request as the gateway receives it: one product, or a list of lines. */
export const orderRequest = z
  .object({
    user_id: dbId,
    product_id: dbId.optional(),
    quantity: quantity.optional(),
    items: z
      .array(z.object({ product_id: dbId, quantity }))
      .min(1, "must list at least one product")
      .max(MAX_LINES, `must list at most ${MAX_LINES} products`)
      .optional(),
    card_token: cardToken.optional(),
    shipping_address: shippingAddress.optional(),
    cart_id: z.string().regex(/^cart_\d{1,18}$/, "must look like cart_123").optional(),
  })
  .superRefine((req, ctx) => {
    if (req.items && (req.product_id !== undefined || req.quantity !== undefined)) {
      ctx.addIssue({ code: "custom", path: ["items"], message: "give either items or product_id with quantity, not both" });
    } else if (!req.items) {
      if (req.product_id === undefined) ctx.addIssue({ code: "custom", path: ["product_id"], message: "is required (or give items)" });
      if (req.quantity === undefined) ctx.addIssue({ code: "custom", path: ["quantity"], message: "is required" });
    }
    for (const line of orderLines(req.items ?? [])) {
      if (line.quantity > MAX_QUANTITY) {
        ctx.addIssue({
          code: "custom",
          path: ["items"],
          message: `product ${line.product_id} is listed for ${line.quantity} in all, more than ${MAX_QUANTITY}`,
        });
      }
    }
  });
export type OrderRequest = z.input<typeof orderRequest>;

export interface OrderAccepted {
  order_id: string;
  correlation_id: string;
  status: "pending";
  links: { self: string; saga: string; events: string };
}

export interface CreateOrderParams {
  body: unknown;
  idempotency_key?: string;
  source_ip?: string;
  user_agent?: string;
}

function issuesOf(error: z.ZodError): FieldIssue[] {
  return error.issues.map((i) => ({ field: i.path.join(".") || "(body)", message: i.message }));
}

/** Of the request as understood (unknown fields dropped, keys sorted), not of its bytes. */
function fingerprint(req: z.output<typeof orderRequest>): string {
  return createHash("sha256").update(canonicalJson(req)).digest("hex");
}

export const orderHandlers: ParticipantHandlers<"orders"> = {
  ConfirmOrder: {
    async handleAll(tx, commands) {
      const first = firstOfEach(commands, (c) => c.data.order_id);
      const { rows } = await tx.query(
        "UPDATE orders.orders SET status = 'confirmed', updated_at = now() WHERE order_id = ANY($1::text[]) AND status = 'pending' RETURNING order_id",
        [[...new Set(commands.map((c) => c.data.order_id))]],
      );
      const confirmed = new Set(rows.map((r) => r.order_id as string));
      return commands.map((c, i) => (first.has(i) && confirmed.has(c.data.order_id) ? [emit("OrderConfirmed", c.data)] : []));
    },
  },
  CancelOrder: {
    async handle(cmd, { tx }) {
      const { rowCount } = await tx.query(
        `UPDATE orders.orders SET status = 'cancelled', cancellation_reason = $2, updated_at = now()
          WHERE order_id = $1 AND status = 'pending'`,
        [cmd.order_id, cmd.reason],
      );
      return rowCount ? [emit("OrderCancelled", { order_id: cmd.order_id, reason: cmd.reason })] : [];
    },
  },
};

/** One checkout on its way into the orders table and the event store. */
interface Placement {
  key?: string;
  /** The request's fingerprint, stored with its key. */
  print: string;
  correlation_id: string;
  customer_id: number;
  total: number;
  currency: string;
  /** Its answer and its OrderInitiated, once its order id is drawn. */
  build(order_id: string): { accepted: OrderAccepted; message: AnyNewMessage };
}

/** What a placement answers: the accepted order (or the first answer of its key), or an error. */
type PlacementOutcome = { answer: OrderAccepted & { replayed?: boolean } } | { error: unknown };

/**
 * Orders still pending that were placed more than `ms` ago, oldest first: what the
 * choreography's watchdog looks at. The orders service owns its table; this is the one query
 * other modules make of it.
 */
export async function pendingOrders(db: Queryable, ms: number, limit = 100): Promise<{ order_id: string; correlation_id: string }[]> {
  const { rows } = await db.query(
    `SELECT order_id, correlation_id FROM orders.orders
      WHERE status = 'pending' AND created_at < now() - make_interval(secs => $1::float8 / 1000)
      ORDER BY created_at LIMIT $2`,
    [ms, limit],
  );
  return rows as { order_id: string; correlation_id: string }[];
}

export function ordersService(deps: ServiceDeps): ServiceSchema {
  const { pool } = deps.db;
  const { store, envelopes } = deps;

  async function resolve(ctx: Context, req: z.output<typeof orderRequest>) {
    const wanted = new Map(
      orderLines(req.items ?? [{ product_id: req.product_id!, quantity: req.quantity! }]).map((l) => [l.product_id, l.quantity]),
    );
    const [user, products] = await Promise.all([
      ctx.call<User, { id: number }>("users.get", { id: req.user_id }).catch((err) => {
        if (isNotFound(err)) return null;
        throw err;
      }),
      ctx.call<Product[], { ids: number[] }>("products.many", { ids: [...wanted.keys()] }),
    ]);
    const issues: FieldIssue[] = [];
    if (!user) issues.push({ field: "user_id", message: `user ${req.user_id} does not exist` });
    const byId = new Map(products.map((p) => [p.id, p]));
    for (const pid of wanted.keys()) {
      if (!byId.has(pid)) issues.push({ field: req.items ? "items" : "product_id", message: `product ${pid} does not exist` });
    }
    const currencies = new Set(products.map((p) => p.currency));
    if (currencies.size > 1) issues.push({ field: "items", message: "all products of one order must share a currency" });
    if (issues.length > 0 || !user) {
      throw new UnprocessableEntity(issues.map((i) => `${i.field}: ${i.message}`).join("; "), issues);
    }
    const items = [...wanted].map(([pid, qty]) => {
      const p = byId.get(pid)!;
      return { product_id: pid, product_name: p.name, quantity: qty, unit_price: p.price };
    });
    const total = Math.round(items.reduce((sum, l) => sum + l.quantity * l.unit_price * 100, 0)) / 100;
    return { user, items, total, currency: products[0].currency };
  }

  /**
   * Places the checkouts of a batch in one transaction: their order ids in one statement, their
   * idempotency keys claimed in one, their orders and OrderInitiated events written in one each.
   * A key is claimed before any work: a concurrent request with the same key (in this batch, or
   * in another transaction) finds it taken and gets the first answer, and nothing of its own is
   * written. Each placement gets its own outcome: one whose key was used with another body is
   * refused without failing the others.
   */
  async function placeBatch(batch: readonly Placement[]): Promise<PlacementOutcome[]> {
    const outcomes = await withTransaction(pool, async (tx) => {
      const seq = await tx.query("SELECT nextval('orders.order_seq') AS n FROM generate_series(1, $1::int)", [batch.length]);
      const built = batch.map((p, i) => p.build(`order_${seq.rows[i].n}`));
      const stored = built.map((b, i) => ({ ...b.accepted, fingerprint: batch[i]!.print }));
      const outcomes: (PlacementOutcome | undefined)[] = batch.map(() => undefined);
      const keyed = batch.flatMap((p, i) => (p.key ? [i] : []));
      if (keyed.length > 0) {
        const claim = await tx.query(
          `INSERT INTO orders.idempotency_keys (key, order_id, response)
           SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[]) ON CONFLICT (key) DO NOTHING RETURNING key`,
          [keyed.map((i) => batch[i]!.key), keyed.map((i) => built[i]!.accepted.order_id), keyed.map((i) => JSON.stringify(stored[i]))],
        );
        const claimed = new Set(claim.rows.map((r) => r.key as string));
        // the first answer of every key: claimed now (by the first of this batch to give it), or before
        const first = new Map<string, OrderAccepted & { fingerprint: string }>();
        const taken: number[] = [];
        for (const i of keyed) {
          const key = batch[i]!.key!;
          if (claimed.delete(key)) first.set(key, stored[i]!);
          else taken.push(i);
        }
        const earlier = [...new Set(taken.map((i) => batch[i]!.key!))].filter((k) => !first.has(k));
        if (earlier.length > 0) {
          const { rows } = await tx.query("SELECT key, response FROM orders.idempotency_keys WHERE key = ANY($1::text[])", [earlier]);
          for (const r of rows) first.set(r.key as string, r.response);
        }
        for (const i of taken) {
          try {
            outcomes[i] = { answer: replay(first.get(batch[i]!.key!)!, batch[i]!.print) };
          } catch (error) {
            outcomes[i] = { error };
          }
        }
      }
      const fresh = batch.flatMap((_, i) => (outcomes[i] ? [] : [i]));
      if (fresh.length > 0) {
        await tx.query(
          `INSERT INTO orders.orders (order_id, correlation_id, customer_id, status, total_amount, currency)
           SELECT o, c, u, 'pending', t, cur FROM unnest($1::text[], $2::text[], $3::int[], $4::numeric[], $5::text[]) AS x(o, c, u, t, cur)`,
          [
            fresh.map((i) => built[i]!.accepted.order_id),
            fresh.map((i) => batch[i]!.correlation_id),
            fresh.map((i) => batch[i]!.customer_id),
            fresh.map((i) => batch[i]!.total),
            fresh.map((i) => batch[i]!.currency),
          ],
        );
        await store.append(
          tx,
          fresh.map((i) => built[i]!.message),
        );
        for (const i of fresh) outcomes[i] = { answer: built[i]!.accepted };
      }
      return outcomes as PlacementOutcome[];
    });
    committed();
    return outcomes;
  }
  // the checkouts that arrive while a placement's transaction runs go together into the next one
  const placements = new Batcher(placeBatch, MAX_BATCH);

  return {
    name: "orders",
    mixins: [deps.drive("orders", orderHandlers) as ServiceSchema],
    actions: {
      /**
       * Validates a checkout request and records OrderInitiated; the saga takes it from there.
       * Nothing is written unless the request is valid. With an idempotency key, a repeated
       * request gets the first answer back instead of a second checkout.
       */
      create: {
        async handler(ctx: Context<CreateOrderParams>): Promise<OrderAccepted & { replayed?: boolean }> {
          const { body, idempotency_key } = ctx.params;
          const parsed = orderRequest.safeParse(body);
          if (!parsed.success) {
            const issues = issuesOf(parsed.error);
            throw new UnprocessableEntity(issues.map((i) => `${i.field}: ${i.message}`).join("; "), issues);
          }
          const req = parsed.data;
          const print = fingerprint(req);
          if (idempotency_key) {
            const previous = await pool.query("SELECT response FROM orders.idempotency_keys WHERE key = $1", [idempotency_key]);
            if (previous.rowCount) return replay(previous.rows[0].response, print);
          }
          const correlation_id = `checkout_${randomBytes(8).toString("hex")}`;
          // the lookups in other services are already part of this checkout's trace
          const { user, items, total, currency } = await inCheckout(correlation_id, ctx.meta as { correlation_id?: string }, () => resolve(ctx, req));

          const placement: Placement = {
            key: idempotency_key,
            print,
            customer_id: user.id,
            correlation_id,
            total,
            currency,
            // the answer and OrderInitiated are made in this request's trace, whichever request's
            // turn runs the batch
            build: inCurrentTrace((order_id: string) => {
              const accepted: OrderAccepted = {
                order_id,
                correlation_id,
                status: "pending",
                links: {
                  self: `/cqrs/queries/orders/${order_id}`,
                  saga: `/sagas/${correlation_id}`,
                  events: `/event-store/api/v1/events/correlation/${correlation_id}`,
                },
              };
              const data: DataOf<"OrderInitiated"> = {
                order_id,
                customer_id: user.id,
                cart_id: req.cart_id ?? null,
                total_amount: total,
                currency,
                items,
                shipping_address: req.shipping_address ?? user.address,
                card_token: req.card_token ?? "tok_visa",
                customer: { name: user.name, email: user.email, phone: user.phone },
              };
              const message = envelopes.create(
                { type: "OrderInitiated", data },
                {
                  correlation_id,
                  service_name: "orders",
                  metadata: {
                    ...(ctx.params.source_ip ? { source_ip: ctx.params.source_ip } : {}),
                    ...(ctx.params.user_agent ? { user_agent: ctx.params.user_agent } : {}),
                  },
                },
              );
              return { accepted, message };
            }),
          };
          const placed = await placements.submit(placement).catch((err) => {
            if (err instanceof BatchFailed) return placeBatch([placement]).then((o) => o[0]!);
            throw err;
          });
          if ("error" in placed) throw placed.error;
          return placed.answer;
        },
      },
    },
  };
}

function replay(stored: OrderAccepted & { fingerprint: string }, print: string): OrderAccepted & { replayed: boolean } {
  if (stored.fingerprint !== print) {
    throw new UnprocessableEntity("this Idempotency-Key was already used with a different request body", [
      { field: "Idempotency-Key", message: "reused with a different body" },
    ]);
  }
  const { fingerprint: _, ...answer } = stored;
  return { ...answer, replayed: true };
}
