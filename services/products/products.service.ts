import type { ServiceSchema } from "moleculer";
import { NotFound } from "../shared/errors.js";
import type { ServiceDeps } from "../shared/service-deps.js";

export interface Product {
  id: number;
  name: string;
  price: number;
  currency: string;
}

const SELECT = "SELECT id, name, price::float8 AS price, currency FROM products.products";

export function productsService(deps: ServiceDeps): ServiceSchema {
  const { pool } = deps.db;
  return {
    name: "products",
    actions: {
      list: {
        async handler(): Promise<Product[]> {
          return (await pool.query(`${SELECT} ORDER BY id`)).rows;
        },
      },
      get: {
        params: { id: { type: "number", convert: true, integer: true, positive: true } },
        async handler(ctx): Promise<Product> {
          const { id } = ctx.params as { id: number };
          const { rows } = await pool.query(`${SELECT} WHERE id = $1`, [id]);
          if (rows.length === 0) throw new NotFound(`product ${id} does not exist`);
          return rows[0];
        },
      },
      /** The products among `ids` that exist; the caller reports the missing ones. */
      many: {
        params: { ids: { type: "array", items: "number" } },
        async handler(ctx): Promise<Product[]> {
          const { ids } = ctx.params as { ids: number[] };
          return (await pool.query(`${SELECT} WHERE id = ANY($1::int[]) ORDER BY id`, [ids])).rows;
        },
      },
    },
  };
}
