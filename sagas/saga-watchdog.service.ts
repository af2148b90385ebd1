import type { Service, ServiceSchema } from "moleculer";
import { emit, newMessage } from "../services/shared/catalogue.js";
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
      const events = await deps.store.byCorrelation(correlation_id);
      const undo_from = stepToUndo(events);
      if (!undo_from) continue;
      const message = newMessage(emit("CheckoutTimedOut", { order_id, undo_from }), {
        correlation_id,
        service_name: "saga-watchdog",
        metadata: { saga_mode: deps.config.sagaMode },
      });
      // expecting version 0 of the saga's stream: two watchdogs cannot both time it out
      const recorded = await withTransaction(pool, (tx) =>
        deps.store.append(tx, [message], new Map([[`sagas/${correlation_id}`, 0]])),
      ).catch(() => []);
      if (recorded.length) {
        svc.logger.warn(`checkout ${correlation_id} passed its deadline during ${undo_from}; compensating`);
        committed();
      }
    }
  }

  return {
    name: "saga-watchdog",
    mixins: [deadlineSweep(sweep)],
  };
}
