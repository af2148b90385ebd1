import { describe, expect, it } from "vitest";
import { replay } from "../services/event-store/aggregate-replay.js";
import { envelopeFactory } from "../services/messaging/envelope-factory.js";
import { emit, type AnyEmit, type AnyEnvelope } from "../services/shared/catalogue.js";
import { orderInitiated } from "./support/messages.js";

const envelopes = envelopeFactory({ systemId: "00000000-0000-4000-8000-000000000000", sagaMode: "choreographed" });

/** One aggregate's stream: the messages in order, numbered from 1 as the event store numbers them. */
const stream = (...emits: AnyEmit[]): AnyEnvelope[] =>
  emits.map((e, i) => ({ ...envelopes.create(e, { correlation_id: "checkout_1", service_name: "test" }), version: i + 1 }) as AnyEnvelope);

describe("aggregate replay", () => {
  it("rebuilds an order from its events", () => {
    const state = replay(
      stream(
        orderInitiated("order_1"),
        emit("OrderCancelled", { order_id: "order_1", reason: "payment_failed" }),
      ),
    );
    expect(state).toMatchObject({ order_id: "order_1", customer_id: 456, status: "cancelled", cancellation_reason: "payment_failed", version: 2 });
  });

  it("lists the orchestrator's commands on a checkout's sagas aggregate, in the order they were sent", () => {
    const state = replay(
      stream(
        emit("ReserveStock", { order_id: "order_1", items: [{ product_id: 101, quantity: 1 }] }),
        emit("ReleaseStock", { order_id: "order_1", reason: "payment_failed" }),
      ),
    );
    expect(state.commands).toEqual([
      { command: "ReserveStock", order_id: "order_1", items: [{ product_id: 101, quantity: 1 }] },
      { command: "ReleaseStock", order_id: "order_1", reason: "payment_failed" },
    ]);
    expect(state.version).toBe(2);
  });

  it("records a checkout's timeout on its sagas aggregate as a timeout, not as a command", () => {
    const [timedOut] = stream(emit("CheckoutTimedOut", { order_id: "order_1", undo_from: "charge_payment" }));
    const state = replay([timedOut!]);
    expect(state).toEqual({ order_id: "order_1", timed_out: { undo_from: "charge_payment", at: timedOut!.timestamp }, version: 1 });
  });
});
