import { createHash } from "node:crypto";
import type { DataOf } from "../shared/catalogue.js";
import type { FaultConfig } from "../shared/config.js";

/** Test-mode card tokens, after the habits of payment providers. */
export const TEST_CARDS = {
  ok: "tok_visa",
  declined: "tok_chargeDeclined",
} as const;

export type ChargeOutcome =
  | { kind: "processed"; payment_id: string; transaction_id: string }
  | { kind: "failed"; reason: string; error_code: string };

/**
 * A deterministic draw in [0, 1) from the fault seed and a key, so a benchmark run (and the
 * same order in either saga style) meets the same injected failures every time.
 */
export function draw(seed: string, key: string): number {
  const h = createHash("sha256").update(`${seed}:${key}`).digest();
  return h.readUInt32BE(0) / 2 ** 32;
}

/** The simulated provider's decision: pure, from the command and the fault settings. */
export function decideCharge(cmd: DataOf<"ProcessPayment">, faults: FaultConfig): ChargeOutcome {
  if (cmd.card_token === TEST_CARDS.declined) {
    return { kind: "failed", reason: "insufficient_funds", error_code: "DECLINED_001" };
  }
  if (faults.paymentFailureRate > 0 && draw(faults.seed, `payment:${cmd.order_id}`) < faults.paymentFailureRate) {
    return { kind: "failed", reason: "insufficient_funds", error_code: "DECLINED_001" };
  }
  const digest = createHash("sha256").update(`charge:${cmd.order_id}`).digest("hex");
  return { kind: "processed", payment_id: `pay_${digest.slice(0, 16)}`, transaction_id: `txn_${digest.slice(16, 32)}` };
}
