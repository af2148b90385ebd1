import type { Context, Service, ServiceSchema } from "moleculer";
import { NotFound } from "../shared/errors.js";
import type { ServiceDeps } from "../shared/service-deps.js";
import { EventFollower } from "../event-store/event-follower.js";
import { CheckpointPace } from "../event-store/checkpoint-pace.js";
import type { StoredEvent } from "../event-store/pg-event-store.js";
import type { OrderView, UserInfo } from "./order-projection.js";
import { projectBatch, type UserLookup } from "./order-projector.js";
import { inFlightByMode, orderStatistics } from "./order-statistics.js";
import type { ReadModelStore } from "./read-model-store.js";
import { sagaTimeline } from "../../sagas/saga-timeline.js";
import { observeSagaDuration } from "../../observability/metrics.js";

/** Broadcast when an order reaches a terminal state; the gateway's `Prefer: wait` listens. */
export const SETTLED_EVENT = "checkout.settled";

/** The order's view as the projection has just written it: a waiting request answers with it, without reading it back. */
export type Settled = OrderView;

/** A batch that changes no view writes the checkpoint at most this often (see projectBatch). */
const CHECKPOINT_MS = 1_000;

/**
 * CQRS query side: follows the event store in position order and keeps the order views, the
 * per-user lists and the statistics in `readModel` (chosen in services/system.ts). Views and
 * checkpoint carry positions, so a restart resumes where it stopped and a batch handled twice
 * changes nothing; `rebuild` replays everything from position 0.
 */
export function projectionsService(deps: ServiceDeps, readModel: ReadModelStore): ServiceSchema {
  let follower: EventFollower | undefined;
  /** A batch that changes no view writes the checkpoint only when this says it is due. */
  let pace = new CheckpointPace(CHECKPOINT_MS);

  function lookupUsers(svc: Service): UserLookup {
    return async (ids) => {
      const users = await Promise.all(
        ids.map((id) =>
          svc.broker.call<UserInfo, { id: number }>("users.get", { id }).catch((err) => {
            svc.logger.warn(String(err));
            return undefined;
          }),
        ),
      );
      return new Map(ids.flatMap((id, i) => (users[i] ? [[id, users[i]!] as const] : [])));
    };
  }

  async function project(svc: Service, events: StoredEvent[], upTo: number): Promise<void> {
    const { settled, checkpointed } = await projectBatch(readModel, events, upTo, lookupUsers(svc), { checkpointAlone: pace.due });
    pace.handled(upTo, checkpointed);
    for (const view of settled) {
      observeSagaDuration(svc.broker, view.saga_mode ?? "unknown", view.status, (view.saga_duration_ms ?? 0) / 1000);
      svc.broker.broadcast(SETTLED_EVENT, view satisfies Settled);
    }
  }

  function startFollower(svc: Service): Promise<void> {
    follower = new EventFollower({
      name: "projections",
      db: deps.db,
      store: deps.store,
      logger: svc.logger,
      pollMs: deps.config.relayPollMs,
      checkpoint: () => readModel.checkpoint(),
      handle: (events, upTo) => project(svc, events, upTo),
    });
    return follower.start();
  }

  const orderIdParam = (raw: string): string => (/^\d+$/.test(raw) ? `order_${raw}` : raw);

  return {
    name: "projections",
    actions: {
      order: {
        params: { order_id: "string" },
        async handler(ctx: Context<{ order_id: string }>) {
          const view = await readModel.order(orderIdParam(ctx.params.order_id));
          if (!view) throw new NotFound(`order ${ctx.params.order_id} does not exist (or is not projected yet)`);
          return view;
        },
      },
      byCorrelation: {
        params: { correlation_id: "string" },
        async handler(ctx: Context<{ correlation_id: string }>) {
          return readModel.byCorrelation(ctx.params.correlation_id);
        },
      },
      ordersOfUser: {
        params: {
          user_id: { type: "number", convert: true, integer: true, positive: true },
          limit: { type: "number", convert: true, integer: true, min: 1, max: 500, optional: true },
        },
        async handler(ctx: Context<{ user_id: number; limit?: number }>) {
          const user = await ctx.call("users.get", { id: ctx.params.user_id });
          const orders = await readModel.ordersOfUser(ctx.params.user_id, ctx.params.limit ?? 100);
          return { user, count: orders.length, orders };
        },
      },
      statistics: {
        async handler() {
          return orderStatistics(await readModel.summaries());
        },
      },
      /** Checkouts not yet ended, by saga mode. */
      inFlight: {
        handler: async () => inFlightByMode(await readModel.summaries("pending")),
      },
      /** The saga's timeline and state, in either style, rebuilt from the event store. */
      saga: {
        params: { correlation_id: "string" },
        async handler(ctx: Context<{ correlation_id: string }>) {
          const events = await deps.store.byCorrelation(ctx.params.correlation_id);
          if (events.length === 0) throw new NotFound(`no saga with correlation id ${ctx.params.correlation_id}`);
          const instance =
            deps.config.sagaMode === "orchestrated"
              ? await ctx.call("saga-orchestrator.get", { correlation_id: ctx.params.correlation_id }).catch(() => null)
              : null;
          return { ...sagaTimeline(events), ...(instance ? { orchestrator: instance } : {}) };
        },
      },
      position: {
        async handler() {
          return { position: follower?.position ?? (await readModel.checkpoint()) };
        },
      },
      rebuild: {
        async handler(this: Service) {
          await follower?.stop();
          pace = new CheckpointPace(CHECKPOINT_MS); // forgets a position of the views being thrown away
          await readModel.reset();
          await startFollower(this);
          return { rebuilding: true };
        },
      },
    },
    async started(this: Service) {
      await readModel.open();
      this.logger.info(`read models in ${readModel.label}`);
      await startFollower(this);
    },
    async stopped() {
      await follower?.stop();
      if (pace.lagging !== undefined) await readModel.apply([], pace.lagging).catch(() => undefined);
      await readModel.close();
    },
  };
}
