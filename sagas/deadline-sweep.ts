import type { Service, ServiceSchema } from "moleculer";

const SWEEP_MS = 1_000;

/**
 * A mixin that runs `sweep` every second while the service runs, one sweep at a time (the next
 * is scheduled when the last has finished), for the deadline checks of both saga styles.
 */
export function deadlineSweep(sweep: (svc: Service) => Promise<void>): Partial<ServiceSchema> {
  let timer: NodeJS.Timeout | undefined;
  return {
    started(this: Service) {
      const tick = () =>
        sweep(this)
          .catch((err) => this.logger.error(`deadline sweep failed: ${String(err)}`))
          .finally(() => {
            if (timer) timer = setTimeout(tick, SWEEP_MS);
          });
      timer = setTimeout(tick, SWEEP_MS);
    },
    stopped() {
      const t = timer;
      timer = undefined;
      clearTimeout(t);
    },
  };
}
