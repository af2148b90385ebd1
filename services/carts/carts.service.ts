import type { Context, ServiceSchema } from "moleculer";
import { z } from "zod";
import { withTransaction } from "../database/database.js";
import { Conflict, isNotFound, NotFound, UnprocessableEntity } from "../shared/errors.js";
import { cardToken, dbId, MAX_QUANTITY, quantity, shippingAddress } from "../shared/request-fields.js";
import type { ServiceDeps } from "../shared/service-deps.js";
import type { CreateOrderParams, OrderAccepted } from "../orders/orders.service.js";

interface CartLine {
  product_id: number;
  quantity: number;
}
interface Cart {
  cart_id: string;
  user_id: number;
  items: CartLine[];
  /** `checking_out`: one checkout has claimed the cart and is creating its order. */
  status: "open" | "checking_out" | "checked_out";
  order_id: string | null;
}

const CART_COLUMNS = "cart_id, user_id, items, status, order_id";

const newCart = z.object({ user_id: dbId });
const addItem = z.object({ product_id: dbId, quantity });
const checkout = z.object({ card_token: cardToken.optional(), shipping_address: shippingAddress.optional() });

function parse<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body ?? {});
  if (r.success) return r.data;
  const issues = r.error.issues.map((i) => ({ field: i.path.join(".") || "(body)", message: i.message }));
  throw new UnprocessableEntity(issues.map((i) => `${i.field}: ${i.message}`).join("; "), issues);
}

/** The shopping cart in front of the checkout: lines collected, then turned into one order. */
export function cartsService(deps: ServiceDeps): ServiceSchema {
  const { pool } = deps.db;

  async function load(cartId: string): Promise<Cart> {
    const { rows } = await pool.query(`SELECT ${CART_COLUMNS} FROM carts.carts WHERE cart_id = $1`, [cartId]);
    if (!rows.length) throw new NotFound(`cart ${cartId} does not exist`);
    return rows[0];
  }

  return {
    name: "carts",
    actions: {
      create: {
        async handler(ctx: Context<{ body: unknown }>): Promise<Cart> {
          const { user_id } = parse(newCart, ctx.params.body);
          await ctx.call("users.get", { id: user_id }).catch((err) => {
            throw isNotFound(err) ? new UnprocessableEntity(`user_id: user ${user_id} does not exist`, [{ field: "user_id", message: "does not exist" }]) : err;
          });
          const { rows } = await pool.query(
            `INSERT INTO carts.carts (cart_id, user_id) VALUES ('cart_' || nextval('carts.cart_seq'), $1)
             RETURNING ${CART_COLUMNS}`,
            [user_id],
          );
          return rows[0];
        },
      },
      get: {
        params: { cart_id: "string" },
        handler: (ctx: Context<{ cart_id: string }>) => load(ctx.params.cart_id),
      },
      addItem: {
        async handler(ctx: Context<{ cart_id: string; body: unknown }>): Promise<Cart> {
          const line = parse(addItem, ctx.params.body);
          await ctx.call("products.get", { id: line.product_id }).catch((err) => {
            throw isNotFound(err) ? new UnprocessableEntity(`product_id: product ${line.product_id} does not exist`, [{ field: "product_id", message: "does not exist" }]) : err;
          });
          return withTransaction(pool, async (tx) => {
            const { rows } = await tx.query("SELECT items, status FROM carts.carts WHERE cart_id = $1 FOR UPDATE", [ctx.params.cart_id]);
            if (!rows.length) throw new NotFound(`cart ${ctx.params.cart_id} does not exist`);
            if (rows[0].status !== "open") throw new Conflict(`cart ${ctx.params.cart_id} is already checked out`);
            const items: CartLine[] = rows[0].items;
            const existing = items.find((l) => l.product_id === line.product_id);
            if (existing) existing.quantity += line.quantity;
            else items.push(line);
            if ((existing ?? line).quantity > MAX_QUANTITY) {
              throw new UnprocessableEntity(`quantity: the cart would hold more than ${MAX_QUANTITY} of product ${line.product_id}`, [
                { field: "quantity", message: `the cart would hold more than ${MAX_QUANTITY} of this product` },
              ]);
            }
            const updated = await tx.query(
              `UPDATE carts.carts SET items = $2 WHERE cart_id = $1 RETURNING ${CART_COLUMNS}`,
              [ctx.params.cart_id, JSON.stringify(items)],
            );
            return updated.rows[0];
          });
        },
      },
      removeItem: {
        params: { cart_id: "string", product_id: { type: "number", convert: true, integer: true, positive: true } },
        async handler(ctx: Context<{ cart_id: string; product_id: number }>): Promise<Cart> {
          const { rows } = await pool.query(
            `UPDATE carts.carts SET items = COALESCE((SELECT jsonb_agg(l) FROM jsonb_array_elements(items) l
                                                       WHERE (l->>'product_id')::int <> $2), '[]')
              WHERE cart_id = $1 AND status = 'open' RETURNING ${CART_COLUMNS}`,
            [ctx.params.cart_id, ctx.params.product_id],
          );
          if (rows.length) return rows[0];
          const cart = await load(ctx.params.cart_id);
          throw new Conflict(`cart ${cart.cart_id} is already checked out`);
        },
      },
      /**
       * Turns the cart into an order; a cart checks out once. The cart is claimed by a
       * conditional update before the order is created, so of concurrent checkouts exactly one
       * goes on; and the order's idempotency key is the cart's, so even a checkout retried after
       * a failure in between can only find the same order again, never make a second.
       */
      checkout: {
        async handler(ctx: Context<{ cart_id: string; body: unknown } & Omit<CreateOrderParams, "body">>): Promise<OrderAccepted & { replayed?: boolean }> {
          const extra = parse(checkout, ctx.params.body);
          const { cart_id, idempotency_key } = ctx.params;
          const claimed = await pool.query(
            `UPDATE carts.carts SET status = 'checking_out', checkout_key = $2
              WHERE cart_id = $1 AND status = 'open' AND jsonb_array_length(items) > 0 RETURNING ${CART_COLUMNS}`,
            [cart_id, idempotency_key ?? null],
          );
          const order = (cart: Cart) =>
            ctx.call<OrderAccepted & { replayed?: boolean }, CreateOrderParams>("orders.create", {
              body: { user_id: cart.user_id, items: cart.items, cart_id: cart.cart_id, ...extra },
              idempotency_key: `cart:${cart.cart_id}`,
              source_ip: ctx.params.source_ip,
              user_agent: ctx.params.user_agent,
            });
          if (!claimed.rows.length) {
            const { rows } = await pool.query(`SELECT ${CART_COLUMNS}, checkout_key FROM carts.carts WHERE cart_id = $1`, [cart_id]);
            const cart: (Cart & { checkout_key: string | null }) | undefined = rows[0];
            if (!cart) throw new NotFound(`cart ${cart_id} does not exist`);
            if (cart.status === "open") throw new UnprocessableEntity("the cart is empty", [{ field: "items", message: "is empty" }]);
            const sameRequest = idempotency_key !== undefined && idempotency_key === cart.checkout_key;
            if (cart.status === "checked_out" && sameRequest) return { ...(await order(cart)), replayed: true };
            if (cart.status === "checking_out") throw new Conflict(`a checkout of cart ${cart_id} is in progress; retry shortly`);
            throw new Conflict(`cart ${cart_id} was already checked out as ${cart.order_id}`);
          }
          const cart: Cart = claimed.rows[0];
          let accepted: OrderAccepted;
          try {
            accepted = await order(cart);
          } catch (err) {
            // nothing was ordered (or, after a timeout, the order exists under the cart's key and a
            // retry finds it): the cart can be checked out again
            await pool.query("UPDATE carts.carts SET status = 'open', checkout_key = NULL WHERE cart_id = $1 AND status = 'checking_out'", [cart_id]);
            throw err;
          }
          await pool.query("UPDATE carts.carts SET status = 'checked_out', order_id = $2 WHERE cart_id = $1", [cart_id, accepted.order_id]);
          return accepted;
        },
      },
    },
  };
}
