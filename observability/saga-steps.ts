import { roleOf } from "../sagas/checkout.steps.js";

/** The step each message belongs to, read off the step table (no second list of steps). */
export const stepOf = (type: string): string | undefined => roleOf(type)?.step;

/** Events that record a compensation done, by the step they undo. */
export const compensatedStep = (type: string): string | undefined => {
  const r = roleOf(type);
  return r?.role === "compensated" ? r.step : undefined;
};
