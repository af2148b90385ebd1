import type { ServiceSchema } from "moleculer";
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
  return {
    name: "users",
    actions: {
      get: {
        params: { id: { type: "number", convert: true, integer: true, positive: true } },
        async handler(ctx): Promise<User> {
          const { id } = ctx.params as { id: number };
          const { rows } = await pool.query("SELECT * FROM users.users WHERE id = $1", [id]);
          if (rows.length === 0) throw new NotFound(`user ${id} does not exist`);
          const r = rows[0];
          return {
            id: r.id,
            name: r.name,
            email: r.email,
            phone: r.phone,
            address: { street: r.street, city: r.city, postal_code: r.postal_code },
          };
        },
      },
    },
  };
}
