import type { ServiceSchema } from "moleculer";
import { coalescedReads } from "../shared/batcher.js";
import { NotFound } from "../shared/errors.js";
import type { ServiceDeps } from "../shared/service-deps.js";

export interface User {
  id: number;
  name: string;
  email: string;
  phone: string | null;
  address: { street: string; city: string; postal_code: string };
}

export function usersService(deps: ServiceDeps): ServiceSchema {
  const { pool } = deps.db;
  // every checkout looks its customer up two or three times (order, projection, notification)
  const byIds = coalescedReads(async (ids: readonly number[]) => {
    const { rows } = await pool.query("SELECT * FROM users.users WHERE id = ANY($1::int[])", [ids]);
    return new Map(
      rows.map((r): [number, User] => [
        r.id,
        { id: r.id, name: r.name, email: r.email, phone: r.phone, address: { street: r.street, city: r.city, postal_code: r.postal_code } },
      ]),
    );
  });
  return {
    name: "users",
    actions: {
      get: {
        params: { id: { type: "number", convert: true, integer: true, positive: true } },
        async handler(ctx): Promise<User> {
          const { id } = ctx.params as { id: number };
          const user = (await byIds([id])).get(id);
          if (!user) throw new NotFound(`user ${id} does not exist`);
          return user;
        },
      },
    },
  };
}
