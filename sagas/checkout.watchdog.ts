import type { AnyEnvelope, DataOf } from "../services/shared/catalogue.js";
import type { Claim } from "../services/messaging/consume.js";
import { reactionConsumer, reactionsTo } from "./checkout.reactions.js";
import { checkoutSteps, outcomeOf } from "./checkout.steps.js";

type Undoable = DataOf<"CheckoutTimedOut">["undo_from"];

/**
 * The choreography's deadline rule (pure): given a late checkout's events, the step whose
 * participant must start undoing it, or null when the checkout must be left alone (already
 * ended, already compensating, or past the shipment, after which nothing is undone: the same
 * rule the orchestrator follows).
 */
export function stepToUndo(events: readonly AnyEnvelope[]): Undoable | null {
  const types = new Set(events.map((e) => e.event_type));
  if (events.some((e) => outcomeOf(e.event_type)) || types.has("CheckoutTimedOut")) return null;
  if (checkoutSteps.some((s) => s.failed && types.has(s.failed))) return null; // its chain is running
  let inFlight = 0;
  for (const [i, step] of checkoutSteps.entries()) {
    if (events.some((e) => step.completedBy(e))) inFlight = i + 1;
  }
  const step = checkoutSteps[inFlight];
  return step && step.compensation ? (step.name as Undoable) : null;
}

/**
 * Every reaction a checkout's events call for (pure): for each stored event, each consumer that
 * acts on it (its reaction's condition holds), so that the watchdog can find the ones whose
 * inbox lacks the message: a message lost on its way (a relay that does not run, a broker that
 * dropped it).
 */
export function owedReactions(events: readonly AnyEnvelope[]): { event: AnyEnvelope; owed: Claim }[] {
  return events.flatMap((event) =>
    reactionsTo(event).map((r) => ({ event, owed: { consumer: reactionConsumer(r), message_id: event.event_id } })),
  );
}
