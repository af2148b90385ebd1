import type { MessageType } from "../services/shared/catalogue.js";
import { checkoutSteps, initiation } from "../sagas/checkout.steps.js";

/** The step each message belongs to, read off the step table (no second list of steps). */
const STEP = new Map<string, string>([
  [initiation.startedBy, "initiate"],
  [initiation.compensation.command, "initiate"],
  [initiation.compensation.done, "initiate"],
]);
for (const s of checkoutSteps) {
  for (const t of [s.invoke, s.succeeded, s.failed, s.compensation?.command, s.compensation?.done]) if (t) STEP.set(t, s.name);
}

export const stepOf = (type: string): string | undefined => STEP.get(type);

/** Events that record a compensation done, by the step they undo. */
export const compensatedStep = (type: MessageType | string): string | undefined => {
  if (type === initiation.compensation.done) return "initiate";
  const s = checkoutSteps.find((x) => x.compensation?.done === type);
  return s?.name;
};
