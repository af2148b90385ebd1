import type { ServiceSchema } from "moleculer";
import { emit } from "../shared/catalogue.js";
import type { FaultConfig } from "../shared/config.js";
import { oneRowEach, type ParticipantHandlers } from "../shared/participant.js";
import type { ServiceDeps } from "../shared/service-deps.js";
import { decideShipment } from "./shipping.domain.js";

export function shippingHandlers(faults: FaultConfig): ParticipantHandlers<"shipping"> {
  return {
    ScheduleShipment: {
      // one shipment row per order: a copy of the command, or one after a cancellation, finds it
      handleAll: (tx, commands) => {
        const now = new Date();
        return oneRowEach(tx, commands, {
          table: "shipping.shipments",
          keyColumns: "order_id",
          key: (row) => row.order_id as string,
          decide: (c) => decideShipment(c.data, faults, now),
          row: (cmd, outcome) => ({
            order_id: cmd.order_id,
            shipment_id: outcome.kind === "failed" ? null : outcome.shipment_id,
            status: outcome.kind === "failed" ? "failed" : "scheduled",
            carrier: outcome.kind === "failed" ? null : outcome.carrier,
            estimated_delivery: outcome.kind === "failed" ? null : outcome.estimated_delivery,
            postal_code: cmd.shipping_address.postal_code,
          }),
          events: (cmd, outcome) =>
            outcome.kind === "failed"
              ? [emit("ShipmentFailed", { order_id: cmd.order_id, reason: outcome.reason })]
              : [
                  emit("ShipmentScheduled", {
                    order_id: cmd.order_id,
                    shipment_id: outcome.shipment_id,
                    carrier: outcome.carrier,
                    estimated_delivery: outcome.estimated_delivery,
                  }),
                ],
        });
      },
    },
    CancelShipment: {
      async handle(cmd, { tx }) {
        const { rows } = await tx.query(
          "SELECT shipment_id, status FROM shipping.shipments WHERE order_id = $1 FOR UPDATE",
          [cmd.order_id],
        );
        const shipment = rows[0] as { shipment_id: string | null; status: string } | undefined;
        if (!shipment) {
          // cancelled before it was scheduled: a late ScheduleShipment must find this row
          await tx.query("INSERT INTO shipping.shipments (order_id, status) VALUES ($1, 'cancelled')", [cmd.order_id]);
        } else if (shipment.status === "scheduled") {
          await tx.query("UPDATE shipping.shipments SET status = 'cancelled', updated_at = now() WHERE order_id = $1", [
            cmd.order_id,
          ]);
        }
        return [emit("ShipmentCancelled", { order_id: cmd.order_id, shipment_id: shipment?.shipment_id ?? null, reason: cmd.reason })];
      },
    },
  };
}

export function shippingService(deps: ServiceDeps): ServiceSchema {
  const { pool } = deps.db;
  return {
    name: "shipping",
    mixins: [deps.drive("shipping", shippingHandlers(deps.config.faults)) as ServiceSchema],
    actions: {
      get: {
        params: { order_id: "string" },
        async handler(ctx) {
          const { rows } = await pool.query("SELECT * FROM shipping.shipments WHERE order_id = $1", [
            (ctx.params as { order_id: string }).order_id,
          ]);
          return rows[0] ?? null;
        },
      },
    },
  };
}
