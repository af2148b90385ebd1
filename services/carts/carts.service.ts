import type { Context, ServiceSchema } from "moleculer";
import { z } from "zod";
import { withTransaction } from "../shared/database.js";
import { Conflict, NotFound, UnprocessableEntity } from "../shared/errors.js";
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
  status: "open" | "checked_out";
  order_id: string | null;
}

const id = z.union([z.number(), z.string().regex(/^\d+$/).transform(Number)]).pipe(z.number().int().positive());
const newCart = z.object({ user_id: id });
const addItem = z.object({ product_id: id, quantity: z.number().int().positive().max(10_000) });
const checkout = z.object({
  card_token: z.string().min(1).max(64).optional(),
  shipping_address: z.object({ street: z.string().min(1), city: z.string().min(1), postal_code: z.string().min(1) }).optional(),
});

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
    const { rows } = await pool.query("SELECT cart_id, user_id, items, status, order_id FROM carts.carts WHERE cart_id = $1", [cartId]);
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
            throw err?.code === 404 ? new UnprocessableEntity(`user_id: user ${user_id} does not exist`, [{ field: "user_id", message: "does not exist" }]) : err;
          });
          const { rows } = await pool.query(
            `INSERT INTO carts.carts (cart_id, user_id) VALUES ('cart_' || nextval('carts.cart_seq'), $1)
             RETURNING cart_id, user_id, items, status, order_id`,
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
            throw err?.code === 404 ? new UnprocessableEntity(`product_id: product ${line.product_id} does not exist`, [{ field: "product_id", message: "does not exist" }]) : err;
          });
          return withTransaction(pool, async (tx) => {
            const { rows } = await tx.query("SELECT items, status FROM carts.carts WHERE cart_id = $1 FOR UPDATE", [ctx.params.cart_id]);
            if (!rows.length) throw new NotFound(`cart ${ctx.params.cart_id} does not exist`);
            if (rows[0].status !== "open") throw new Conflict(`cart ${ctx.params.cart_id} is already checked out`);
            const items: CartLine[] = rows[0].items;
            const existing = items.find((l) => l.product_id === line.product_id);
            if (existing) existing.quantity += line.quantity;
            else items.push(line);
            const updated = await tx.query(
              "UPDATE carts.carts SET items = $2 WHERE cart_id = $1 RETURNING cart_id, user_id, items, status, order_id",
              [ctx.params.cart_id, JSON.stringify(items)],
            );
            return updated.rows[0];
          });
        },
      },
      removeItem: {
        params: { cart_id: "string", product_id: { type: "number", convert: true } },
        async handler(ctx: Context<{ cart_id: string; product_id: number }>): Promise<Cart> {
          const cart = await load(ctx.params.cart_id);
          if (cart.status !== "open") throw new Conflict(`cart ${cart.cart_id} is already checked out`);
          const items = cart.items.filter((l) => l.product_id !== ctx.params.product_id);
          const { rows } = await pool.query(
            "UPDATE carts.carts SET items = $2 WHERE cart_id = $1 RETURNING cart_id, user_id, items, status, order_id",
            [cart.cart_id, JSON.stringify(items)],
          );
          return rows[0];
        },
      },
      /** Turns the cart into an order; a cart checks out once. */
      checkout: {
        async handler(ctx: Context<{ cart_id: string; body: unknown } & Omit<CreateOrderParams, "body">>): Promise<OrderAccepted> {
          const extra = parse(checkout, ctx.params.body);
          const cart = await load(ctx.params.cart_id);
          if (cart.status !== "open") throw new Conflict(`cart ${cart.cart_id} was already checked out as ${cart.order_id}`);
          if (cart.items.length === 0) throw new UnprocessableEntity("the cart is empty", [{ field: "items", message: "is empty" }]);
          const accepted = await ctx.call<OrderAccepted, CreateOrderParams>("orders.create", {
            body: { user_id: cart.user_id, items: cart.items, cart_id: cart.cart_id, ...extra },
            idempotency_key: ctx.params.idempotency_key ?? `cart:${cart.cart_id}`,
            source_ip: ctx.params.source_ip,
            user_agent: ctx.params.user_agent,
          });
          await pool.query("UPDATE carts.carts SET status = 'checked_out', order_id = $2 WHERE cart_id = $1", [cart.cart_id, accepted.order_id]);
          return accepted;
        },
      },
    },
  };
}
