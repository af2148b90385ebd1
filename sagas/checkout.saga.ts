import { emit, type AnyEmit, type AnyEnvelope, type CancellationReason, type DataOf } from "../services/shared/catalogue.js";
import { checkoutSteps, initiation, type CheckoutFacts, type Compensation, type StepName } from "./checkout.steps.js";

/**
 * The orchestrator's coordination logic as a pure function over the step table: given the saga's
 * state and one incoming message, the next state and the commands to send. No I/O, so it is
 * tested as given/when/then; the saga-orchestrator service persists the state and records the
 * commands in one transaction.
 */

export type SagaStatus = "running" | "compensating" | "confirmed" | "cancelled";

export interface CheckoutSaga extends CheckoutFacts {
  correlation_id: string;
  status: SagaStatus;
  /** The step in progress (forward), or the step being compensated. */
  step: StepName | "initiate";
  completed: StepName[];
  /** Compensations still to run, next first; the cancellation of the order is always last. */
  pending_compensations: (StepName | "initiate")[];
  reason?: CancellationReason;
  notified: boolean;
  started_at: string;
  ended_at?: string;
}

export type SagaInput = AnyEnvelope | { event_type: "SagaDeadlinePassed"; timestamp: string };

export interface Decision {
  state: CheckoutSaga;
  commands: AnyEmit[];
}

const compensationOf = (step: StepName | "initiate"): Compensation =>
  step === "initiate" ? initiation.compensation : checkoutSteps.find((s) => s.name === step)!.compensation!;

const commandFor = (c: Compensation, state: CheckoutSaga, reason: CancellationReason): AnyEmit =>
  emit(c.command, c.build(state, reason)) as AnyEmit;

function invoke(state: CheckoutSaga, index: number): Decision {
  const step = checkoutSteps[index];
  return {
    state: { ...state, step: step.name },
    commands: [emit(step.invoke, step.build(state)) as AnyEmit],
  };
}

/** Starts compensating: every completed step that has a compensation, newest first, then the order. */
function compensate(state: CheckoutSaga, reason: CancellationReason, alsoUndo: StepName[] = []): Decision {
  const owed = [...state.completed, ...alsoUndo]
    .filter((name) => checkoutSteps.find((s) => s.name === name)?.compensation)
    .reverse();
  const queue: (StepName | "initiate")[] = [...owed, "initiate"];
  const next: CheckoutSaga = { ...state, status: "compensating", reason, step: queue[0], pending_compensations: queue };
  return { state: next, commands: [commandFor(compensationOf(queue[0]), next, reason)] };
}

export function start(order: DataOf<"OrderInitiated">, correlation_id: string, at: string): Decision {
  const state: CheckoutSaga = {
    correlation_id,
    order,
    status: "running",
    step: "initiate",
    completed: [],
    pending_compensations: [],
    notified: false,
    started_at: at,
  };
  return invoke(state, 0);
}

/** Returns null when the message changes nothing (a duplicate, a part of a reply, a late answer). */
export function decide(state: CheckoutSaga | null, input: SagaInput): Decision | null {
  if (input.event_type === initiation.startedBy) {
    if (state) return null;
    const e = input as AnyEnvelope & { event_type: "OrderInitiated" };
    return start(e.data, e.correlation_id, e.timestamp);
  }
  if (!state) return null;

  if (input.event_type === "SagaDeadlinePassed") {
    if (state.status !== "running") return null;
    const stepIndex = checkoutSteps.findIndex((s) => s.name === state.step);
    // past confirmation the order stands; only the notification is still going
    if (stepIndex < 0 || checkoutSteps[stepIndex].afterPivot || state.step === "confirm") return null;
    // the step in flight may or may not have happened: undo it too (compensations tolerate "never happened")
    return compensate(state, "timeout", [state.step as StepName]);
  }

  const event = input as AnyEnvelope;
  if (state.status === "compensating") {
    const current = state.pending_compensations[0];
    if (!current || event.event_type !== compensationOf(current).done) return null;
    const rest = state.pending_compensations.slice(1);
    if (rest.length === 0) {
      return {
        state: { ...state, status: "cancelled", pending_compensations: [], ended_at: event.timestamp },
        commands: [],
      };
    }
    const next: CheckoutSaga = { ...state, step: rest[0], pending_compensations: rest };
    return { state: next, commands: [commandFor(compensationOf(rest[0]), next, state.reason!)] };
  }

  const index = checkoutSteps.findIndex((s) => s.name === state.step);
  const step = checkoutSteps[index];
  if (!step) return null;

  if (event.event_type === step.succeeded) {
    if (step.completes && !step.completes(event.data as never)) return null;
    let next: CheckoutSaga = { ...state, completed: [...state.completed, step.name] };
    if (event.event_type === "ShipmentScheduled") next = { ...next, shipment: event.data };
    if (event.event_type === "OrderConfirmed") next = { ...next, status: "confirmed", ended_at: event.timestamp };
    if (event.event_type === "NotificationSent") return { state: { ...next, notified: true }, commands: [] };
    if (state.status === "confirmed") return null;
    return index + 1 < checkoutSteps.length ? invoke(next, index + 1) : { state: next, commands: [] };
  }
  if (step.failed && event.event_type === step.failed && state.status === "running") {
    return compensate(state, step.reason!);
  }
  return null;
}
