import type { Service, ServiceSchema } from "moleculer";
import { emit } from "../services/shared/catalogue.js";
import { withTransaction } from "../services/shared/database.js";
import { committed } from "../services/shared/signals.js";
import type { DriverDeps } from "./participant-drivers.js";
import { deadlineSweep } from "./deadline-sweep.js";
import { stepToUndo } from "./checkout.watchdog.js";


/**
 * Choreography has no coordinator, but checkouts still have a deadline. The watchdog finds
 * orders still pending past it and records CheckoutTimedOut; the participant of the step in
 * flight reacts by undoing it, and the ordinary compensation chain runs back from there.
 */
export function sagaWatchdogService(deps: DriverDeps): ServiceSchema {
  const { pool } = deps.db;

  async function sweep(svc: Service): Promise<void> {
    const { rows } = await pool.query(
      `SELECT order_id, correlation_id FROM orders.orders
        WHERE status = 'pending' AND created_at < now() - make_interval(secs => $1::float8 / 1000)
        ORDER BY created_at LIMIT 100`,
      [deps.config.sagaTimeoutMs],
    );
    for (const { order_id, correlation_id } of rows) {
      const undone = await withTransaction(pool, async (tx) => {
        // Decided under the checkout's append lock: no participant's event can commit between reading the
        // checkout's events and recording the timeout, so the step chosen is the one in flight.
        await deps.store.lockAppends(tx, correlation_id);
        const undo_from = stepToUndo(await deps.store.byCorrelation(correlation_id, tx));
        if (!undo_from) return null;
        const message = deps.envelopes.create(emit("CheckoutTimedOut", { order_id, undo_from }), {
          correlation_id,
          service_name: "saga-watchdog",
        });
        await deps.store.append(tx, [message]);
        return undo_from;
      });
      if (undone) {
        svc.logger.warn(`checkout ${correlation_id} passed its deadline during ${undone}; compensating`);
        committed();
      }
    }
  }

  return {
    name: "saga-watchdog",
    mixins: [deadlineSweep(sweep)],
  };
}
