import type { Service, ServiceSchema } from "moleculer";
import { channelOf, emit, type AnyEnvelope } from "../services/shared/catalogue.js";
import { withTransaction } from "../services/database/database.js";
import { committed } from "../services/event-store/commit-signal.js";
import { settledClaims } from "../services/messaging/consume.js";
import { pendingOrders } from "../services/orders/orders.service.js";
import type { DriverDeps } from "./participant-drivers.js";
import { deadlineSweep } from "./deadline-sweep.js";
import { owedReactions, stepToUndo } from "./checkout.watchdog.js";


/**
 * Choreography has no coordinator, but checkouts still have a deadline. The watchdog finds
 * orders still pending past it and records CheckoutTimedOut; the participant of the step in
 * flight reacts by undoing it, and the ordinary compensation chain runs back from there.
 *
 * A checkout still pending that it cannot time out (its chain is running, it timed out already,
 * or it is past the shipment) may be waiting for a message lost on its way (a relay that does
 * not run, a broker that dropped it). Once a step's time has passed since its last look, the
 * watchdog sends again every stored event of that checkout whose reaction's inbox lacks it (the
 * same message, same id: a consumer that did get it ignores it), as the orchestrator sends again
 * an unanswered command.
 */
export function sagaWatchdogService(deps: DriverDeps): ServiceSchema {
  const { pool } = deps.db;
  /** When each checkout still pending past its deadline was last looked at for lost messages. */
  let lookedAt = new Map<string, number>();

  async function sweep(svc: Service): Promise<void> {
    const late = await pendingOrders(pool, deps.config.sagaTimeoutMs);
    const looked = new Map<string, number>();
    for (const { order_id, correlation_id } of late) {
      const outcome = await withTransaction(pool, async (tx) => {
        // Decided under the checkout's append lock: no participant's event can commit between reading the
        // checkout's events and recording the timeout, so the step chosen is the one in flight.
        await deps.store.lockAppends(tx, correlation_id);
        const events = await deps.store.byCorrelation(correlation_id, tx);
        const undo_from = stepToUndo(events);
        if (!undo_from) return { events };
        const message = deps.envelopes.create(emit("CheckoutTimedOut", { order_id, undo_from }), {
          correlation_id,
          service_name: "saga-watchdog",
        });
        await deps.store.append(tx, [message]);
        return { undo_from };
      });
      if (outcome.undo_from) {
        svc.logger.warn(`checkout ${correlation_id} passed its deadline during ${outcome.undo_from}; compensating`);
        committed();
        continue;
      }
      const last = lookedAt.get(correlation_id);
      if (last !== undefined && Date.now() - last < deps.config.stepTimeoutMs) {
        looked.set(correlation_id, last);
        continue;
      }
      looked.set(correlation_id, Date.now());
      if (last !== undefined) await sendUnheard(svc, correlation_id, outcome.events!);
    }
    // checkouts that ended are forgotten
    lookedAt = looked;
  }

  /**
   * Sends again each event of the checkout that a reaction acts on and whose consumer has neither
   * handled (its inbox) nor given up on (its dead letters).
   */
  async function sendUnheard(svc: Service, correlation_id: string, events: readonly AnyEnvelope[]): Promise<void> {
    const owed = owedReactions(events);
    if (owed.length === 0) return;
    // a message its consumer gave up on waits for an operator (POST /admin/dead-letters/:id/replay)
    const settled = await settledClaims(pool, owed.map((o) => o.owed), { deadLetters: true });
    const unheard = [...new Set(owed.filter((o) => !settled(o.owed)).map((o) => o.event))];
    if (unheard.length === 0) return;
    svc.logger.warn(`checkout ${correlation_id}: still pending past its deadline; sending ${unheard.map((e) => e.event_type).join(", ")} again`);
    for (const { position: _, ...envelope } of unheard as (AnyEnvelope & { position?: number })[]) {
      await svc.broker.sendToChannel(channelOf(envelope.event_type), envelope);
    }
  }

  return {
    name: "saga-watchdog",
    mixins: [deadlineSweep(sweep)],
  };
}
