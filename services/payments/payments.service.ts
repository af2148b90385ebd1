import type { ServiceSchema } from "moleculer";
import { setTimeout as sleep } from "node:timers/promises";
import { emit } from "../shared/catalogue.js";
import { oneRowEach, type ParticipantHandlers } from "../shared/participant.js";
import type { ServiceDeps } from "../shared/service-deps.js";
import { decideCharge } from "./payments.domain.js";
import type { FaultConfig } from "../shared/config.js";

/**
 * One payment row per order (its primary key) is what makes a second charge impossible: a
 * repeated ProcessPayment finds the row and does nothing. A refund before any charge leaves a
 * `voided` row, so a charge that arrives late is refused too.
 */
export function paymentHandlers(faults: FaultConfig): ParticipantHandlers<"payments"> {
  return {
    ProcessPayment: {
      // the simulated provider's round trip, outside the transaction
      prepare: async () => {
        if (faults.paymentLatencyMs > 0) await sleep(faults.paymentLatencyMs);
      },
      // the decision is the same for every copy of the command; the row decides whether this
      // copy makes it: an order that has one (captured, failed, or voided by an earlier refund)
      // is left as it is
      handleAll: (tx, commands) =>
        oneRowEach(tx, commands, {
          table: "payments.payments",
          keyColumns: "order_id",
          key: (row) => row.order_id as string,
          decide: (c) => decideCharge(c.data, faults),
          row: (cmd, outcome) => ({
            order_id: cmd.order_id,
            payment_id: outcome.kind === "failed" ? null : outcome.payment_id,
            customer_id: cmd.customer_id,
            amount: cmd.amount,
            currency: cmd.currency,
            status: outcome.kind === "failed" ? "failed" : "captured",
            transaction_id: outcome.kind === "failed" ? null : outcome.transaction_id,
            error_code: outcome.kind === "failed" ? outcome.error_code : null,
          }),
          events: (cmd, outcome) =>
            outcome.kind === "failed"
              ? [emit("PaymentFailed", { order_id: cmd.order_id, amount: cmd.amount, reason: outcome.reason, error_code: outcome.error_code })]
              : [
                  emit("PaymentProcessed", {
                    order_id: cmd.order_id,
                    payment_id: outcome.payment_id,
                    transaction_id: outcome.transaction_id,
                    amount: cmd.amount,
                    currency: cmd.currency,
                  }),
                ],
        }),
    },
    RefundPayment: {
      async handle(cmd, { tx }) {
        const { rows } = await tx.query(
          "SELECT payment_id, amount, status FROM payments.payments WHERE order_id = $1 FOR UPDATE",
          [cmd.order_id],
        );
        const payment = rows[0] as { payment_id: string | null; amount: string; status: string } | undefined;
        if (!payment) {
          await tx.query(
            `INSERT INTO payments.payments (order_id, amount, currency, status) VALUES ($1, 0, 'CAD', 'voided')`,
            [cmd.order_id],
          );
          return [emit("PaymentRefunded", { order_id: cmd.order_id, payment_id: null, amount: 0, reason: cmd.reason })];
        }
        if (payment.status !== "captured") {
          return [emit("PaymentRefunded", { order_id: cmd.order_id, payment_id: payment.payment_id, amount: 0, reason: cmd.reason })];
        }
        await tx.query("UPDATE payments.payments SET status = 'refunded', updated_at = now() WHERE order_id = $1", [
          cmd.order_id,
        ]);
        return [
          emit("PaymentRefunded", {
            order_id: cmd.order_id,
            payment_id: payment.payment_id,
            amount: Number(payment.amount),
            reason: cmd.reason,
          }),
        ];
      },
    },
  };
}

export function paymentsService(deps: ServiceDeps): ServiceSchema {
  const { pool } = deps.db;
  return {
    name: "payments",
    mixins: [deps.drive("payments", paymentHandlers(deps.config.faults)) as ServiceSchema],
    actions: {
      get: {
        params: { order_id: "string" },
        async handler(ctx) {
          const { rows } = await pool.query(
            "SELECT order_id, payment_id, amount::float8 AS amount, currency, status, transaction_id, error_code FROM payments.payments WHERE order_id = $1",
            [(ctx.params as { order_id: string }).order_id],
          );
          return rows[0] ?? null;
        },
      },
    },
  };
}
