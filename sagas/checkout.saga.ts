import type { AnyEmit, AnyEnvelope, CancellationReason, DataOf } from "../services/shared/catalogue.js";
import { checkoutSteps, initiation, stepNamed, type CheckoutFacts, type Compensation, type StepName } from "./checkout.steps.js";

/**
 * The orchestrator's coordination logic as a pure function over the step table: given the saga's
 * state and one incoming message, the next state and the commands to send. No I/O, so it is
 * tested as given/when/then; the saga-orchestrator service persists the state and records the
 * commands in one transaction.
 */

/** A step to undo: one of the table's, or the initiation (cancelling the order, always last). */
type Undo = StepName | "initiate";

interface SagaFacts extends CheckoutFacts {
  correlation_id: string;
  /** The steps that have succeeded, in order. */
  completed: StepName[];
  /** The last step has succeeded too (the customer was told). */
  notified: boolean;
  started_at: string;
}

/** Waiting for the reply of `step`, on the way to the pivot. */
export interface RunningSaga extends SagaFacts {
  status: "running";
  step: StepName;
  pending_compensations: [];
}

/** Undoing `step`; the rest of `pending_compensations` (which starts with it) follows, newest step first. */
export interface CompensatingSaga extends SagaFacts {
  status: "compensating";
  step: Undo;
  pending_compensations: Undo[];
  reason: CancellationReason;
}

/** The pivot succeeded: the order stands, and `step` (after the pivot) is still to finish. */
export interface ConfirmedSaga extends SagaFacts {
  status: "confirmed";
  step: StepName;
  pending_compensations: [];
  ended_at: string;
}

export interface CancelledSaga extends SagaFacts {
  status: "cancelled";
  step: Undo;
  pending_compensations: [];
  reason: CancellationReason;
  ended_at: string;
}

/** One saga instance, as stored (`orchestrator.sagas.state`) and as the orchestrator's API shows it. */
export type CheckoutSaga = RunningSaga | CompensatingSaga | ConfirmedSaga | CancelledSaga;

export type SagaInput = AnyEnvelope | { event_type: "SagaDeadlinePassed"; timestamp: string };

export interface Decision {
  state: CheckoutSaga;
  commands: AnyEmit[];
}

const compensationOf = (step: Undo): Compensation =>
  step === "initiate" ? initiation.compensation : stepNamed(step).compensation!;

/** Invokes the step at `index` (its command goes out; the saga waits for its reply). */
function invoke(state: RunningSaga | ConfirmedSaga, index: number): Decision {
  const step = checkoutSteps[index];
  return { state: { ...state, step: step.name }, commands: [step.commandFor(state)] };
}

/** Starts compensating: every completed step that has a compensation, newest first, then the order. */
function compensate(state: RunningSaga, reason: CancellationReason, alsoUndo: StepName[] = []): Decision {
  const owed = [...state.completed, ...alsoUndo].filter((name) => stepNamed(name).compensation).reverse();
  const queue: Undo[] = [...owed, "initiate"];
  const next: CompensatingSaga = { ...state, status: "compensating", reason, step: queue[0], pending_compensations: queue };
  return { state: next, commands: [compensationOf(queue[0]).commandFor(next, reason)] };
}

export function start(order: DataOf<"OrderInitiated">, correlation_id: string, at: string): Decision {
  const first = checkoutSteps[0].name;
  return invoke({ correlation_id, order, status: "running", step: first, completed: [], pending_compensations: [], notified: false, started_at: at }, 0);
}

/**
 * The step in flight has replied. Its success moves the saga to the next step (past the pivot,
 * the order stands); the last step's success finishes it. Its failure, before the pivot, starts
 * the compensation.
 */
function onReply(state: RunningSaga | ConfirmedSaga, reply: AnyEnvelope): Decision | null {
  const index = checkoutSteps.findIndex((s) => s.name === state.step);
  const step = checkoutSteps[index];
  if (step.completedBy(reply)) {
    const done = { ...state, ...step.learn(state, reply), completed: [...state.completed, step.name] };
    if (index + 1 === checkoutSteps.length) return { state: { ...done, notified: true }, commands: [] };
    if (done.status === "running" && step.pivot) {
      return invoke({ ...done, status: "confirmed", ended_at: reply.timestamp }, index + 1);
    }
    return invoke(done, index + 1);
  }
  if (state.status === "running" && step.failed === reply.event_type) return compensate(state, step.reason!);
  return null;
}

/**
 * The saga's deadline passed with the step in flight unanswered. That step may or may not have
 * happened, so it is undone too (compensations tolerate "never happened"); a step that cannot be
 * undone (the pivot) is left to finish, and the order stands if it does.
 */
function onDeadline(state: RunningSaga): Decision | null {
  if (!stepNamed(state.step).compensation) return null;
  return compensate(state, "timeout", [state.step]);
}

/** A compensation is done: the next one goes out, or, after the order's, the saga is cancelled. */
function onUndone(state: CompensatingSaga, answer: AnyEnvelope): Decision | null {
  const [current, ...rest] = state.pending_compensations;
  if (!current || answer.event_type !== compensationOf(current).done) return null;
  if (rest.length === 0) {
    return { state: { ...state, status: "cancelled", pending_compensations: [], ended_at: answer.timestamp }, commands: [] };
  }
  const next: CompensatingSaga = { ...state, step: rest[0], pending_compensations: rest };
  return { state: next, commands: [compensationOf(rest[0]).commandFor(next, state.reason)] };
}

/** Returns null when the message changes nothing (a duplicate, a part of a reply, a late answer). */
export function decide(state: CheckoutSaga | null, input: SagaInput): Decision | null {
  if (input.event_type === initiation.startedBy) {
    return state ? null : start(input.data, input.correlation_id, input.timestamp);
  }
  if (!state) return null;
  const deadline = input.event_type === "SagaDeadlinePassed";
  switch (state.status) {
    case "running":
      return deadline ? onDeadline(state) : onReply(state, input);
    case "confirmed":
      return deadline ? null : onReply(state, input);
    case "compensating":
      return deadline ? null : onUndone(state, input);
    case "cancelled":
      return null;
    default:
      return state satisfies never;
  }
}
