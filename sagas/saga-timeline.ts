import { isCommandType, isMessage, type AnyEnvelope } from "../services/shared/catalogue.js";
import { checkoutSteps, outcomeOf, roleOf } from "./checkout.steps.js";

type StepStatus = "not_started" | "in_progress" | "succeeded" | "failed" | "compensating" | "compensated";

/**
 * A saga's story told from the event store alone, the same way for both styles: every message
 * of the checkout in order, which step it belongs to, and where each step ended up.
 */
export function sagaTimeline(events: readonly (AnyEnvelope & { position?: number })[]) {
  const first = events[0];
  const steps: Record<string, StepStatus> = Object.fromEntries(checkoutSteps.map((s) => [s.name, "not_started"]));
  let status = "running";
  let reason: string | null = null;
  for (const e of events) {
    const where = roleOf(e.event_type);
    const outcome = outcomeOf(e.event_type);
    if (outcome) status = outcome;
    if (isMessage(e, "OrderCancelled")) reason = e.data.reason;
    if (!where || where.step === "initiate") continue;
    const current = steps[where.step];
    if (where.role === "invoke" && current === "not_started") steps[where.step] = "in_progress";
    if (where.role === "succeeded" && current !== "compensated") steps[where.step] = "succeeded";
    if (where.role === "failed") {
      steps[where.step] = "failed";
      if (status === "running") status = "compensating";
    }
    if (where.role === "compensate") steps[where.step] = "compensating";
    if (where.role === "compensated") steps[where.step] = "compensated";
  }
  const last = events[events.length - 1];
  return {
    correlation_id: first.correlation_id,
    order_id: (first.data as { order_id?: string }).order_id ?? null,
    saga_mode: first.metadata.saga_mode ?? null,
    status,
    cancellation_reason: reason,
    steps,
    started_at: first.timestamp,
    last_event_at: last.timestamp,
    timeline: events.map((e) => ({
      position: e.position,
      kind: isCommandType(e.event_type) ? "command" : "event",
      type: e.event_type,
      step: roleOf(e.event_type)?.step ?? null,
      service: e.service_name,
      timestamp: e.timestamp,
      data: e.data,
    })),
  };
}
