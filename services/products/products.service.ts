import type { ServiceSchema } from "moleculer";
import { coalescedReads } from "../shared/batcher.js";
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
  // every checkout looks its products up once
  const byIds = coalescedReads(async (ids: readonly number[]) => {
    const { rows } = await pool.query(`${SELECT} WHERE id = ANY($1::int[])`, [ids]);
    return new Map(rows.map((p: Product): [number, Product] => [p.id, p]));
  });
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
          const product = (await byIds([id])).get(id);
          if (!product) throw new NotFound(`product ${id} does not exist`);
          return product;
        },
      },
      /** The products among `ids` that exist; the caller reports the missing ones. */
      many: {
        params: { ids: { type: "array", items: "number" } },
        async handler(ctx): Promise<Product[]> {
          const { ids } = ctx.params as { ids: number[] };
          const found = await byIds(ids);
          return [...new Set(ids)].sort((a, b) => a - b).flatMap((id) => found.get(id) ?? []);
        },
      },
    },
  };
}
