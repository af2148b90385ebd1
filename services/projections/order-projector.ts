import { isCommandType } from "../shared/catalogue.js";
import type { StoredEvent } from "../event-store/pg-event-store.js";
import { isTerminal, projectOrder, type OrderView, type UserInfo } from "./order-projection.js";
import type { PositionedView, ReadModelStore } from "./read-model-store.js";

/** Finds the users of new orders (their name and e-mail go into the view). */
export type UserLookup = (userIds: number[]) => Promise<Map<number, UserInfo>>;

const orderIdOf = (e: StoredEvent): string | undefined => (e.data as { order_id?: string }).order_id;

/**
 * Folds one batch of stored events, in position order, into the order views and stores them
 * with `upTo` as the checkpoint. An event at or below a view's position is already in it and is
 * skipped, so a batch handled twice (a crash between views and checkpoint, a second follower)
 * changes nothing. Returns the views that reached a terminal state in this batch, and whether
 * the checkpoint was written.
 *
 * A batch that changes no view (only commands, say) writes its checkpoint only when
 * `checkpointAlone` says so: a checkpoint left behind costs a restart a few events read again,
 * which the views' positions make harmless, and writing it costs a commit per batch.
 */
export async function projectBatch(
  store: ReadModelStore,
  events: readonly StoredEvent[],
  upTo: number,
  lookupUsers: UserLookup,
  { checkpointAlone = true }: { checkpointAlone?: boolean } = {},
): Promise<{ settled: OrderView[]; checkpointed: boolean }> {
  const relevant = events.filter((e) => !isCommandType(e.event_type) && orderIdOf(e));
  const views = await store.views([...new Set(relevant.map((e) => orderIdOf(e)!))]);
  // an order carries its customer's name and e-mail; only one stored before it did is looked up
  const newUsers = relevant.flatMap((e) =>
    e.event_type === "OrderInitiated" && !e.data.customer && !views.has(e.data.order_id) ? [e.data.customer_id] : [],
  );
  const users = newUsers.length > 0 ? await lookupUsers([...new Set(newUsers)]) : new Map<number, UserInfo>();

  const changed = new Map<string, PositionedView>();
  const settled: OrderView[] = [];
  for (const e of relevant) {
    const id = orderIdOf(e)!;
    const current = views.get(id);
    if (current && e.position <= current.position) continue; // already folded in
    const after = projectOrder(current?.view, e, e.event_type === "OrderInitiated" ? (e.data.customer ?? users.get(e.data.customer_id)) : undefined);
    if (!after || after === current?.view) continue;
    const next = { view: after, position: e.position };
    views.set(id, next);
    changed.set(id, next);
    if (isTerminal(after) && !(current && isTerminal(current.view))) settled.push(after);
  }
  const checkpointed = changed.size > 0 || checkpointAlone;
  if (checkpointed) await store.apply([...changed.values()], upTo);
  return { settled, checkpointed };
}
