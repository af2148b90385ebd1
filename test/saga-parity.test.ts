import { describe, expect, it } from "vitest";
import { emit, newMessage, type AnyEmit, type AnyEnvelope, type DataOf, type CommandType } from "../services/shared/catalogue.js";
import { checkoutSteps, initiation, type StepName } from "../sagas/checkout.steps.js";
import { checkoutReactions, reactionsTo } from "../sagas/checkout.reactions.js";
import { decide, type CheckoutSaga, type SagaInput } from "../sagas/checkout.saga.js";
import { owedReactions, stepToUndo } from "../sagas/checkout.watchdog.js";
import { orderInitiated } from "./support/messages.js";

/**
 * Parity of the two styles, without infrastructure: the orchestrator's step table (through its
 * pure `decide`) and the choreography's reaction table (through `reactionsTo` and each
 * reaction's `commandFor`, which the participants' driver runs) are both run against the same
 * model of the participants, and must send the same commands in the same order: the same forward
 * steps, and on each failure the same compensations, newest step first, the order cancelled
 * last. Only the broker is modelled: it hands every event to the reactions that follow its type.
 * `saga-differential.test.ts` runs both styles on real systems.
 */

const ORDER: DataOf<"OrderInitiated"> = orderInitiated("order_1", 101, 100).data;
const CORRELATION = "checkout_parity";

type Failure = "none" | "reserve_stock" | "charge_payment" | "schedule_shipment";

/**
 * What each participant answers, in a world where `failing` is the step that fails, and
 * `hanging` the step whose participant never answers (until the deadline passes).
 */
function participants(failing: Failure, hanging: Failure = "none") {
  const id = ORDER.order_id;
  const stalled = hanging === "none" ? undefined : checkoutSteps.find((s) => s.name === hanging)!.invoke;
  return (command: CommandType, data: Record<string, unknown>): AnyEmit[] => {
    const reason = data.reason as DataOf<"OrderCancelled">["reason"];
    if (command === stalled) return [];
    switch (command) {
      case "ReserveStock":
        return failing === "reserve_stock"
          ? [emit("StockUnavailable", { order_id: id, product_id: 101, requested: 1, available: 0 })]
          : [emit("StockReserved", { order_id: id, product_id: 101, quantity: 1, line: 1, lines: 1 })];
      case "ProcessPayment":
        return failing === "charge_payment"
          ? [emit("PaymentFailed", { order_id: id, amount: 100, reason: "insufficient_funds", error_code: "DECLINED_001" })]
          : [emit("PaymentProcessed", { order_id: id, payment_id: "pay_1", transaction_id: "txn_1", amount: 100, currency: "CAD" })];
      case "ScheduleShipment":
        return failing === "schedule_shipment"
          ? [emit("ShipmentFailed", { order_id: id, reason: "address_undeliverable" })]
          : [emit("ShipmentScheduled", { order_id: id, shipment_id: "shp_1", carrier: "Canada Post", estimated_delivery: "2026-12-01" })];
      case "ConfirmOrder":
        return [emit("OrderConfirmed", { order_id: id, shipment_id: "shp_1", estimated_delivery: "2026-12-01" })];
      case "SendNotification":
        return [emit("NotificationSent", { order_id: id, channel: "email", recipient: "customer@example.com", template: "order_confirmed" })];
      case "ReleaseStock":
        return [emit("StockReleased", { order_id: id, lines: [{ product_id: 101, quantity: 1 }], reason })];
      case "RefundPayment":
        return [emit("PaymentRefunded", { order_id: id, payment_id: "pay_1", amount: 100, reason })];
      case "CancelShipment":
        return [emit("ShipmentCancelled", { order_id: id, shipment_id: "shp_1", reason })];
      case "CancelOrder":
        return [emit("OrderCancelled", { order_id: id, reason })];
    }
  };
}

const envelope = (e: AnyEmit): AnyEnvelope =>
  ({ ...newMessage(e, { correlation_id: CORRELATION, service_name: "test" }), version: 1 }) as AnyEnvelope;

type Sent = { command: CommandType; reason?: string };

function runOrchestrated(failing: Failure, hanging: Failure = "none"): Sent[] {
  const answer = participants(failing, hanging);
  const sent: Sent[] = [];
  let state: CheckoutSaga | null = null;
  const queue: SagaInput[] = [envelope(emit("OrderInitiated", ORDER))];
  let deadlinePassed = false;
  while (queue.length || (hanging !== "none" && !deadlinePassed)) {
    if (!queue.length) {
      deadlinePassed = true;
      queue.push({ event_type: "SagaDeadlinePassed", timestamp: new Date().toISOString() });
    }
    const d = decide(state, queue.shift()!);
    if (!d) continue;
    state = d.state;
    for (const c of d.commands) {
      sent.push({ command: c.type as CommandType, reason: (c.data as { reason?: string }).reason });
      queue.push(...answer(c.type as CommandType, c.data as Record<string, unknown>).map(envelope));
    }
  }
  return sent;
}

async function runChoreographed(failing: Failure, hanging: Failure = "none"): Promise<Sent[]> {
  const answer = participants(failing, hanging);
  const sent: Sent[] = [];
  const log: AnyEnvelope[] = [];
  const queue: AnyEnvelope[] = [envelope(emit("OrderInitiated", ORDER))];
  let deadlinePassed = false;
  while (queue.length || (hanging !== "none" && !deadlinePassed)) {
    if (!queue.length) {
      // everything has settled but the hanging step: the watchdog's turn
      deadlinePassed = true;
      const undo_from = stepToUndo(log);
      if (undo_from) queue.push(envelope(emit("CheckoutTimedOut", { order_id: ORDER.order_id, undo_from })));
      continue;
    }
    const event = queue.shift()!;
    log.push(event);
    // the broker hands each event to every reaction subscribed to its type; each decides as the driver does
    for (const r of reactionsTo(event)) {
      const data = (await r.commandFor(event, async () => ORDER)) as Record<string, unknown>;
      sent.push({ command: r.run, reason: data.reason as string | undefined });
      queue.push(...answer(r.run, data).map(envelope));
    }
  }
  return sent;
}

const forward = (upTo: number): Sent[] => checkoutSteps.slice(0, upTo).map((s) => ({ command: s.invoke, reason: undefined }));

describe("parity of the step table and the reaction table", () => {
  it("both run the same forward steps when nothing fails", async () => {
    const expected = forward(checkoutSteps.length);
    expect(runOrchestrated("none")).toEqual(expected);
    expect(await runChoreographed("none")).toEqual(expected);
  });

  const failures: { step: StepName; reason: string }[] = checkoutSteps
    .filter((s) => s.failed)
    .map((s) => ({ step: s.name, reason: s.reason! }));

  it.each(failures)("both compensate a failure of $step the same way, newest step first", async ({ step, reason }) => {
    const index = checkoutSteps.findIndex((s) => s.name === step);
    // owed: the compensations of the steps before the failing one, in reverse, then the order
    const owed = checkoutSteps
      .slice(0, index)
      .filter((s) => s.compensation)
      .reverse()
      .map((s) => ({ command: s.compensation!.command, reason }));
    const expected = [...forward(index + 1), ...owed, { command: initiation.compensation.command, reason }];

    expect(runOrchestrated(step as Failure)).toEqual(expected);
    expect(await runChoreographed(step as Failure)).toEqual(expected);
  });

  const undoable = checkoutSteps.filter((s) => s.compensation).map((s) => ({ step: s.name }));

  it.each(undoable)("both undo a checkout whose deadline passes during $step, that step included", async ({ step }) => {
    const index = checkoutSteps.findIndex((s) => s.name === step);
    const owed = checkoutSteps
      .slice(0, index + 1)
      .filter((s) => s.compensation)
      .reverse()
      .map((s) => ({ command: s.compensation!.command, reason: "timeout" }));
    const expected = [...forward(index + 1), ...owed, { command: initiation.compensation.command, reason: "timeout" }];

    expect(runOrchestrated("none", step as Failure)).toEqual(expected);
    expect(await runChoreographed("none", step as Failure)).toEqual(expected);
  });

  it("every failure event and every compensation-done event has exactly one reaction", () => {
    const triggers = [
      ...checkoutSteps.flatMap((s) => (s.failed ? [s.failed] : [])),
      ...checkoutSteps.flatMap((s) => (s.compensation ? [s.compensation.done] : [])),
    ];
    for (const t of triggers) {
      expect(checkoutReactions.filter((r) => r.on === t), t).toHaveLength(1);
    }
  });

  it("the choreography uses exactly the commands the step table names", () => {
    const fromSteps = new Set<CommandType>([
      ...checkoutSteps.flatMap((s) => [s.invoke, ...(s.compensation ? [s.compensation.command] : [])]),
      initiation.compensation.command,
    ]);
    expect(new Set(checkoutReactions.map((r) => r.run))).toEqual(fromSteps);
  });
});

describe("orchestrator decisions (given / when / then)", () => {
  const start = () => decide(null, envelope(emit("OrderInitiated", ORDER)))!;
  const reserved = emit("StockReserved", { order_id: "order_1", product_id: 101, quantity: 1, line: 1, lines: 1 });
  const paid = emit("PaymentProcessed", { order_id: "order_1", payment_id: "p", transaction_id: "t", amount: 1, currency: "CAD" });
  const shipped = emit("ShipmentScheduled", { order_id: "order_1", shipment_id: "shp_9", carrier: "c", estimated_delivery: "2026-12-03" });
  const confirmed = emit("OrderConfirmed", { order_id: "order_1", shipment_id: "shp_9", estimated_delivery: "2026-12-03" });
  const deadline: SagaInput = { event_type: "SagaDeadlinePassed", timestamp: new Date().toISOString() };
  /** Given: the saga after its start and these replies, each of which it takes. */
  const after = (...replies: AnyEmit[]): CheckoutSaga => replies.reduce((s, e) => decide(s, envelope(e))!.state, start().state);

  it("starts by reserving stock", () => {
    const d = start();
    expect(d.state.status).toBe("running");
    expect(d.commands.map((c) => c.type)).toEqual(["ReserveStock"]);
  });

  it("ignores a second OrderInitiated for the same checkout", () => {
    expect(decide(start().state, envelope(emit("OrderInitiated", ORDER)))).toBeNull();
  });

  it("waits for the last StockReserved of a multi-line order", () => {
    const s = start().state;
    const part = envelope(emit("StockReserved", { order_id: "order_1", product_id: 1, quantity: 1, line: 1, lines: 2 }));
    const last = envelope(emit("StockReserved", { order_id: "order_1", product_id: 2, quantity: 1, line: 2, lines: 2 }));
    expect(decide(s, part)).toBeNull();
    expect(decide(s, last)!.commands.map((c) => c.type)).toEqual(["ProcessPayment"]);
  });

  it("ignores a late reply of a step it is no longer waiting for", () => {
    expect(decide(after(), envelope(paid))).toBeNull();
  });

  it("a reply of another type does not complete the step in flight", () => {
    expect(decide(after(), envelope(shipped))).toBeNull();
  });

  it("on its deadline, undoes the step in flight too, then cancels with reason timeout", () => {
    const d = decide(after(reserved), deadline)!;
    expect(d.state.status).toBe("compensating");
    expect(d.state.pending_compensations).toEqual(["charge_payment", "reserve_stock", "initiate"]);
    expect(d.commands).toEqual([{ type: "RefundPayment", data: { order_id: "order_1", reason: "timeout" }, aggregate_id: undefined }]);
  });

  it("builds the confirmation from the shipment the saga kept", () => {
    const d = decide(after(reserved, paid), envelope(shipped))!;
    expect(d.commands).toEqual([emit("ConfirmOrder", { order_id: "order_1", shipment_id: "shp_9", estimated_delivery: "2026-12-03" })]);
  });

  it("lets the confirmation finish when the deadline passes while it is in flight (the pivot is never undone)", () => {
    const s = after(reserved, paid, shipped);
    expect(s).toMatchObject({ status: "running", step: "confirm" });
    expect(decide(s, deadline)).toBeNull();
    const d = decide(s, envelope(confirmed))!;
    expect(d.state).toMatchObject({ status: "confirmed", step: "notify", completed: ["reserve_stock", "charge_payment", "schedule_shipment", "confirm"] });
    expect(d.commands.map((c) => c.type)).toEqual(["SendNotification"]);
  });

  it("lets a confirmed order stand when the deadline passes during the notification", () => {
    const s = after(reserved, paid, shipped, confirmed);
    expect(s.status).toBe("confirmed");
    expect(decide(s, deadline)).toBeNull();
  });
});

/**
 * The reactions a choreographed checkout's stored events call for: what the watchdog sends again
 * when a consumer's inbox lacks it, for the checkouts it can no longer time out.
 */
describe("the reactions a checkout's events call for", () => {
  const id = ORDER.order_id;
  const initiated = envelope(emit("OrderInitiated", ORDER));
  const reserved = envelope(emit("StockReserved", { order_id: id, product_id: 101, quantity: 1, line: 1, lines: 1 }));
  const paid = envelope(emit("PaymentProcessed", { order_id: id, payment_id: "pay_1", transaction_id: "txn_1", amount: 100, currency: "CAD" }));
  const shipped = envelope(emit("ShipmentScheduled", { order_id: id, shipment_id: "shp_1", carrier: "Canada Post", estimated_delivery: "2026-12-01" }));
  const owed = (events: AnyEnvelope[]) => owedReactions(events).map(({ event, owed }) => `${event.event_type} ${event.event_id} → ${owed.consumer} ${owed.message_id}`);
  const to = (e: AnyEnvelope, consumer: string) => `${e.event_type} ${e.event_id} → ${consumer} ${e.event_id}`;

  it("past the shipment, where nothing is undone, the confirmation is owed to the orders service", () => {
    const events = [initiated, reserved, paid, shipped];
    expect(stepToUndo(events)).toBeNull();
    expect(owed(events)).toEqual([
      to(initiated, "warehouse:OrderInitiated->ReserveStock"),
      to(reserved, "payments:StockReserved->ProcessPayment"),
      to(paid, "shipping:PaymentProcessed->ScheduleShipment"),
      to(shipped, "orders:ShipmentScheduled->ConfirmOrder"),
    ]);
  });

  it("a timeout is owed to the participant of the step it undoes, and the chain's events to the one before it", () => {
    const timedOut = envelope(emit("CheckoutTimedOut", { order_id: id, undo_from: "charge_payment" }));
    const refunded = envelope(emit("PaymentRefunded", { order_id: id, payment_id: "pay_1", amount: 100, reason: "timeout" }));
    const events = [initiated, reserved, timedOut, refunded];
    expect(stepToUndo(events)).toBeNull();
    expect(owed(events).slice(2)).toEqual([
      to(timedOut, "payments:CheckoutTimedOut->RefundPayment"),
      to(refunded, "warehouse:PaymentRefunded->ReleaseStock"),
    ]);
  });

  it("a reaction acts only on its own event type, and builds its command from that event", async () => {
    const payment = checkoutReactions.find((r) => r.on === "StockReserved")!;
    expect(payment.applies(reserved)).toBe(true);
    expect(payment.applies(paid)).toBe(false);
    await expect(payment.commandFor(paid, async () => ORDER)).rejects.toThrow(/StockReserved was given PaymentProcessed/);
    expect(reactionsTo(shipped).map((r) => r.run)).toEqual(["ConfirmOrder"]);
  });

  it("an event whose reaction's condition does not hold is owed to no one", () => {
    // a reservation that fell short releases its own lines, and StockUnavailable cancels that order
    const released = envelope(emit("StockReleased", { order_id: id, lines: [{ product_id: 101, quantity: 1 }], reason: "stock_unavailable" }));
    const partly = envelope(emit("StockReserved", { order_id: id, product_id: 101, quantity: 1, line: 1, lines: 2 }));
    expect(owed([released, partly])).toEqual([]);
  });
});
