import { createHash } from "node:crypto";
import type { DataOf } from "../shared/catalogue.js";
import type { FaultConfig } from "../shared/config.js";
import { draw } from "../payments/payments.domain.js";

/** The postal code the simulated carrier cannot deliver to. */
export const UNDELIVERABLE_POSTAL_CODE = "00000";
const TRANSIT_DAYS = 3;

export type ShipmentOutcome =
  | { kind: "scheduled"; shipment_id: string; carrier: string; estimated_delivery: string }
  | { kind: "failed"; reason: string };

export function decideShipment(cmd: DataOf<"ScheduleShipment">, faults: FaultConfig, now: Date): ShipmentOutcome {
  if (cmd.shipping_address.postal_code === UNDELIVERABLE_POSTAL_CODE) {
    return { kind: "failed", reason: "address_undeliverable" };
  }
  if (faults.shippingFailureRate > 0 && draw(faults.seed, `shipping:${cmd.order_id}`) < faults.shippingFailureRate) {
    return { kind: "failed", reason: "carrier_unavailable" };
  }
  const id = createHash("sha256").update(`shipment:${cmd.order_id}`).digest("hex").slice(0, 16);
  const eta = new Date(now.getTime() + TRANSIT_DAYS * 86_400_000).toISOString().slice(0, 10);
  return { kind: "scheduled", shipment_id: `shp_${id}`, carrier: "Canada Post", estimated_delivery: eta };
}
