import { checkoutSteps, initiation, stepsToPivot } from "../sagas/checkout.steps.js";
import type { Outcome } from "./load-generator.js";

/**
 * What the event store says about where a saga's time went. Orchestrated, each step is a
 * command the orchestrator stores and the participant's answer to it, so a step splits into
 * coordination (previous answer → command) and participant (command → answer); choreographed,
 * the participant reacts to the previous event directly and coordination is nil.
 */

export interface SagaEvent {
  position: number;
  event_type: string;
  correlation_id: string;
  /** ms since the epoch */
  timestamp: number;
  /** Transaction that wrote it (PostgreSQL xmin), when known. */
  xid?: string;
}

export interface StepSplit {
  coordination_ms: number;
  participant_ms: number;
}

export interface SagaAnalysis {
  /** Median duration of each step of the critical path of the confirmed sagas. */
  steps_ms: Record<string, number>;
  steps_split_ms: Record<string, StepSplit>;
  /** From the failure event to the last compensation, per cancelled saga. */
  compensation_ms: number[];
  /** Median count of messages stored (and relayed) up to and including the terminal event. */
  path_messages: number;
  /** Median count of writing transactions among them (when transaction ids are known). */
  path_commits: number | null;
  messages_per_saga: number;
  sagas_seen: number;
}

export const median = (xs: number[]): number => {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const round = (x: number) => Math.round(x * 100) / 100;

const PATH = stepsToPivot;
const FAILURES = new Set(checkoutSteps.map((s) => s.failed).filter(Boolean).concat(["CheckoutTimedOut"]) as string[]);
const COMPENSATED = new Set([...checkoutSteps.map((s) => s.compensation?.done).filter(Boolean), initiation.compensation.done] as string[]);
const TERMINAL = new Set(["OrderConfirmed", "OrderCancelled"]);

/**
 * The sagas that ended (their terminal event) within [fromMs, toMs), whichever request started
 * them: what the system completed in that window.
 */
export function sagasEndedBetween(events: readonly SagaEvent[], fromMs: number, toMs: number): { confirmed: number; cancelled: number } {
  const ended = { confirmed: 0, cancelled: 0 };
  for (const e of events) {
    if (e.timestamp < fromMs || e.timestamp >= toMs) continue;
    if (e.event_type === "OrderConfirmed") ended.confirmed++;
    else if (e.event_type === "OrderCancelled") ended.cancelled++;
  }
  return ended;
}

export function analyseSagas(events: SagaEvent[], outcomes: Outcome[]): SagaAnalysis {
  const byCorrelation = new Map<string, SagaEvent[]>();
  for (const e of events) {
    const list = byCorrelation.get(e.correlation_id) ?? [];
    list.push(e);
    byCorrelation.set(e.correlation_id, list);
  }
  const outcomeOf = new Map(outcomes.filter((o) => o.due_at > 0).map((o) => [o.correlation_id, o]));
  const segments = new Map<string, number[]>();
  const coordination = new Map<string, number[]>();
  const participant = new Map<string, number[]>();
  const push = (m: Map<string, number[]>, k: string, v: number) => m.set(k, [...(m.get(k) ?? []), v]);
  const compensation: number[] = [];
  const pathMessages: number[] = [];
  const pathCommits: number[] = [];
  let total = 0;

  for (const [cid, list] of byCorrelation) {
    list.sort((a, b) => a.position - b.position);
    total += list.length;
    const terminalAt = list.findIndex((e) => TERMINAL.has(e.event_type));
    if (terminalAt >= 0) {
      const path = list.slice(0, terminalAt + 1);
      pathMessages.push(path.length);
      if (path.every((e) => e.xid !== undefined)) pathCommits.push(new Set(path.map((e) => e.xid)).size);
    }
    const confirmed = list.some((e) => e.event_type === "OrderConfirmed");
    if (confirmed) {
      const initiated = list.find((e) => e.event_type === initiation.startedBy);
      if (!initiated) continue;
      const o = outcomeOf.get(cid);
      if (o) push(segments, "accept", initiated.timestamp - o.due_at);
      let prev = initiated;
      for (const step of PATH) {
        const answers = list.filter((e) => e.event_type === step.succeeded && e.position > prev.position);
        const answer = answers[answers.length - 1]; // the last line's reservation completes the step
        if (!answer) break;
        const command = list.find((e) => e.event_type === step.invoke && e.position > prev.position && e.position < answer.position);
        const c = command ? command.timestamp - prev.timestamp : 0;
        const p = answer.timestamp - (command ?? prev).timestamp;
        push(segments, step.name, answer.timestamp - prev.timestamp);
        push(coordination, step.name, c);
        push(participant, step.name, p);
        prev = answer;
      }
      if (o) push(segments, "answer", o.done_at - prev.timestamp);
    } else {
      const failure = list.find((e) => FAILURES.has(e.event_type));
      const done = list.filter((e) => COMPENSATED.has(e.event_type));
      if (failure && done.length > 0) compensation.push(done[done.length - 1].timestamp - failure.timestamp);
    }
  }

  const steps_ms: Record<string, number> = {};
  const order = ["accept", ...PATH.map((s) => s.name), "answer"];
  for (const k of order) if (segments.has(k)) steps_ms[k] = round(median(segments.get(k)!));
  const steps_split_ms: Record<string, StepSplit> = {};
  for (const s of PATH) {
    if (!coordination.has(s.name)) continue;
    steps_split_ms[s.name] = { coordination_ms: round(median(coordination.get(s.name)!)), participant_ms: round(median(participant.get(s.name)!)) };
  }
  return {
    steps_ms,
    steps_split_ms,
    compensation_ms: compensation,
    path_messages: median(pathMessages),
    path_commits: pathCommits.length ? median(pathCommits) : null,
    messages_per_saga: byCorrelation.size ? round(total / byCorrelation.size) : 0,
    sagas_seen: byCorrelation.size,
  };
}
