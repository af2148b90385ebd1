import {
  emit,
  isMessage,
  type AnyEmit,
  type AnyEnvelope,
  type CancellationReason,
  type CommandType,
  type DataOf,
  type EventType,
} from "../services/shared/catalogue.js";
import {
  allLinesReserved,
  confirmationFor,
  notificationFor,
  paymentFor,
  reserveStockFor,
  shipmentFor,
} from "./checkout.commands.js";

/**
 * The orchestrated checkout, as a table of steps. Each step invokes one participant, waits for
 * its success or failure reply, and names the compensation that undoes it. A compensation is
 * owed only once its step has succeeded; on a failure the owed ones run in reverse order, and
 * the order is cancelled last. The pivot is the step after which the order stands: the steps
 * after it are retried until done, never compensated.
 */

export type StepName = "reserve_stock" | "charge_payment" | "schedule_shipment" | "confirm" | "notify";

/** What the orchestrator knows of one checkout when it builds a command. */
export interface CheckoutFacts {
  order: DataOf<"OrderInitiated">;
  shipment?: DataOf<"ShipmentScheduled">;
}

export interface Compensation {
  readonly command: CommandType;
  /** The participant's answer that the compensation is done. */
  readonly done: EventType;
  /** The compensation's command for this checkout. */
  commandFor(facts: CheckoutFacts, reason: CancellationReason): AnyEmit;
}

export interface Step {
  readonly name: StepName;
  readonly invoke: CommandType;
  readonly succeeded: EventType;
  readonly failed?: EventType;
  readonly reason?: CancellationReason;
  readonly compensation?: Compensation;
  /** The step after which the order stands (there is one). */
  readonly pivot?: boolean;
  /** The command that invokes the step for this checkout. */
  commandFor(facts: CheckoutFacts): AnyEmit;
  /** Whether a message is the reply that completes the step (some come in parts: one StockReserved per line). */
  completedBy(reply: AnyEnvelope): boolean;
  /** The facts with what the completing reply adds for the steps after it. */
  learn(facts: CheckoutFacts, reply: AnyEnvelope): CheckoutFacts;
}

/** A compensation, typed: its command's data is what `build` returns. */
function compensation<C extends CommandType>(c: {
  command: C;
  done: EventType;
  build(facts: CheckoutFacts, reason: CancellationReason): DataOf<C>;
}): Compensation {
  return { command: c.command, done: c.done, commandFor: (facts, reason) => emit(c.command, c.build(facts, reason)) as AnyEmit };
}

/** A step, typed: its command is built for `invoke`, and its reply's data is `succeeded`'s. */
function step<C extends CommandType, S extends EventType>(s: {
  name: StepName;
  invoke: C;
  build(facts: CheckoutFacts): DataOf<C>;
  succeeded: S;
  completes?(reply: DataOf<S>): boolean;
  remember?(reply: DataOf<S>): Partial<CheckoutFacts>;
  failed?: EventType;
  reason?: CancellationReason;
  compensation?: Compensation;
  pivot?: true;
}): Step {
  const { build, completes, remember, ...table } = s;
  return {
    ...table,
    commandFor: (facts) => emit(s.invoke, build(facts)) as AnyEmit,
    completedBy: (reply) => isMessage(reply, s.succeeded) && (!completes || completes(reply.data)),
    learn: (facts, reply) => (remember && isMessage(reply, s.succeeded) ? { ...facts, ...remember(reply.data) } : facts),
  };
}

const releaseStock = compensation({
  command: "ReleaseStock",
  done: "StockReleased",
  build: (f, reason) => ({ order_id: f.order.order_id, reason }),
});
const refundPayment = compensation({
  command: "RefundPayment",
  done: "PaymentRefunded",
  build: (f, reason) => ({ order_id: f.order.order_id, reason }),
});
const cancelShipment = compensation({
  command: "CancelShipment",
  done: "ShipmentCancelled",
  build: (f, reason) => ({ order_id: f.order.order_id, reason }),
});

/** The saga starts on OrderInitiated; undoing the initiation is cancelling the order. */
export const initiation = {
  startedBy: "OrderInitiated",
  compensation: compensation({
    command: "CancelOrder",
    done: "OrderCancelled",
    build: (f, reason) => ({ order_id: f.order.order_id, reason }),
  }),
} as const satisfies { startedBy: EventType; compensation: Compensation };

export const checkoutSteps: readonly Step[] = [
  step({
    name: "reserve_stock",
    invoke: "ReserveStock",
    build: (f) => reserveStockFor(f.order),
    succeeded: "StockReserved",
    completes: allLinesReserved,
    failed: "StockUnavailable",
    reason: "stock_unavailable",
    compensation: releaseStock,
  }),
  step({
    name: "charge_payment",
    invoke: "ProcessPayment",
    build: (f) => paymentFor(f.order),
    succeeded: "PaymentProcessed",
    failed: "PaymentFailed",
    reason: "payment_failed",
    compensation: refundPayment,
  }),
  step({
    name: "schedule_shipment",
    invoke: "ScheduleShipment",
    build: (f) => shipmentFor(f.order),
    succeeded: "ShipmentScheduled",
    remember: (shipment) => ({ shipment }),
    failed: "ShipmentFailed",
    reason: "shipping_failed",
    // only a deadline can fail the checkout after this step
    compensation: cancelShipment,
  }),
  step({
    name: "confirm",
    invoke: "ConfirmOrder",
    build: (f) => {
      if (!f.shipment) throw new Error(`order ${f.order.order_id}: no shipment to confirm`);
      return confirmationFor(f.shipment);
    },
    succeeded: "OrderConfirmed",
    pivot: true,
  }),
  step({
    name: "notify",
    invoke: "SendNotification",
    build: (f) => notificationFor(f.order),
    succeeded: "NotificationSent",
  }),
];

const pivotIndex = checkoutSteps.findIndex((s) => s.pivot);
if (pivotIndex < 0 || checkoutSteps.filter((s) => s.pivot).length > 1) throw new Error("the step table needs exactly one pivot");

/** The steps up to and including the pivot: the path a checkout takes to its answer. */
export const stepsToPivot: readonly Step[] = checkoutSteps.slice(0, pivotIndex + 1);

/** The step of that name. */
export function stepNamed(name: StepName): Step {
  const s = checkoutSteps.find((x) => x.name === name);
  if (!s) throw new Error(`no step ${name}`);
  return s;
}

/** What a message is to the checkout: the step it belongs to (or the initiation), and its part in it. */
export interface StepRole {
  step: StepName | "initiate";
  role: "invoke" | "succeeded" | "failed" | "compensate" | "compensated";
}

const ROLES = new Map<string, StepRole>([
  [initiation.startedBy, { step: "initiate", role: "succeeded" }],
  [initiation.compensation.command, { step: "initiate", role: "compensate" }],
  [initiation.compensation.done, { step: "initiate", role: "compensated" }],
]);
for (const s of checkoutSteps) {
  const parts: [string | undefined, StepRole["role"]][] = [
    [s.invoke, "invoke"],
    [s.succeeded, "succeeded"],
    [s.failed, "failed"],
    [s.compensation?.command, "compensate"],
    [s.compensation?.done, "compensated"],
  ];
  for (const [type, role] of parts) if (type && !ROLES.has(type)) ROLES.set(type, { step: s.name, role });
}

/** The step a message belongs to and its part in it, read off the table; undefined for the others (a timeout, say). */
export const roleOf = (type: string): StepRole | undefined => ROLES.get(type);

/**
 * How a checkout ended, when this message ends it: the pivot's success confirms the order, the
 * initiation's undoing (the order's cancellation) cancels it; undefined for every other message.
 */
export function outcomeOf(type: string): "confirmed" | "cancelled" | undefined {
  if (type === checkoutSteps[pivotIndex].succeeded) return "confirmed";
  if (type === initiation.compensation.done) return "cancelled";
  return undefined;
}
