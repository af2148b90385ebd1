import type { AnyEnvelope, DataOf } from "../services/shared/catalogue.js";
import { checkoutSteps } from "./checkout.steps.js";

type Undoable = DataOf<"CheckoutTimedOut">["undo_from"];

/**
 * The choreography's deadline rule (pure): given a late checkout's events, the step whose
 * participant must start undoing it, or null when the checkout must be left alone (already
 * ended, already compensating, or past the shipment, after which nothing is undone: the same
 * rule the orchestrator follows).
 */
export function stepToUndo(events: readonly AnyEnvelope[]): Undoable | null {
  const types = new Set(events.map((e) => e.event_type));
  if (types.has("OrderConfirmed") || types.has("OrderCancelled") || types.has("CheckoutTimedOut")) return null;
  if (checkoutSteps.some((s) => s.failed && types.has(s.failed))) return null; // its chain is running
  let inFlight = 0;
  for (const [i, step] of checkoutSteps.entries()) {
    const done = events.some(
      (e) => e.event_type === step.succeeded && (!step.completes || step.completes(e.data as never)),
    );
    if (done) inFlight = i + 1;
  }
  const step = checkoutSteps[inFlight];
  return step && step.compensation ? (step.name as Undoable) : null;
}
