import type { Context, Service, ServiceSchema } from "moleculer";
import { isCommandType } from "../shared/catalogue.js";
import { NotFound } from "../shared/errors.js";
import type { ServiceDeps } from "../shared/service-deps.js";
import { EventFollower } from "../event-store/event-follower.js";
import type { StoredEvent } from "../event-store/pg-event-store.js";
import { isTerminal, projectOrder, type OrderView, type UserInfo } from "./order-projection.js";
import { PgReadModelStore } from "./pg-read-model-store.js";
import type { ReadModelStore } from "./read-model-store.js";
import { sagaTimeline } from "../../sagas/saga-timeline.js";
import { observeSagaDuration } from "../../observability/metrics.js";

/** Broadcast when an order reaches a terminal state; the gateway's `Prefer: wait` listens. */
export const SETTLED_EVENT = "checkout.settled";

export interface Settled {
  order_id: string;
  correlation_id: string;
  status: string;
}

const orderIdOf = (e: StoredEvent): string | undefined => (e.data as { order_id?: string }).order_id;

/**
 * CQRS query side: follows the event store in position order and keeps the order views, the
 * per-user lists and the statistics. Views and checkpoint are written together, so a restart
 * resumes where it stopped; `rebuild` replays everything from position 0.
 */
export function projectionsService(deps: ServiceDeps, readModel: ReadModelStore = new PgReadModelStore(deps.db.pool)): ServiceSchema {
  let follower: EventFollower | undefined;

  async function usersOf(svc: Service, events: StoredEvent[]): Promise<Map<number, UserInfo>> {
    const ids = [...new Set(events.flatMap((e) => (e.event_type === "OrderInitiated" ? [e.data.customer_id] : [])))];
    const users = await Promise.all(
      ids.map((id) => svc.broker.call<UserInfo, { id: number }>("users.get", { id }).catch((err) => { svc.logger.warn(String(err)); return undefined; })),
    );
    return new Map(ids.flatMap((id, i) => (users[i] ? [[id, users[i]!] as const] : [])));
  }

  async function project(svc: Service, events: StoredEvent[], upTo: number): Promise<void> {
    const relevant = events.filter((e) => !isCommandType(e.event_type) && orderIdOf(e));
    const views = await readModel.orders([...new Set(relevant.map((e) => orderIdOf(e)!))]);
    const users = await usersOf(svc, relevant);
    const changed = new Map<string, OrderView>();
    const settled: Settled[] = [];
    for (const e of relevant) {
      const id = orderIdOf(e)!;
      const before = views.get(id);
      const after = projectOrder(before, e, e.event_type === "OrderInitiated" ? users.get(e.data.customer_id) : undefined);
      if (!after || after === before) continue;
      views.set(id, after);
      changed.set(id, after);
      if (isTerminal(after) && !(before && isTerminal(before))) {
        settled.push({ order_id: id, correlation_id: after.correlation_id, status: after.status });
      }
    }
    await readModel.apply([...changed.values()], upTo);
    for (const s of settled) {
      const view = changed.get(s.order_id)!;
      observeSagaDuration(svc.broker, view.saga_mode ?? "unknown", s.status, (view.saga_duration_ms ?? 0) / 1000);
      svc.broker.broadcast(SETTLED_EVENT, s);
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
          return readModel.statistics();
        },
      },
      /** Checkouts not yet ended, by saga mode. */
      inFlight: {
        handler: () => readModel.inFlight(),
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
          await readModel.reset();
          await startFollower(this);
          return { rebuilding: true };
        },
      },
    },
    async started(this: Service) {
      await startFollower(this);
    },
    async stopped() {
      await follower?.stop();
    },
  };
}
