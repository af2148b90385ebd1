import { EventEmitter } from "node:events";

/**
 * In-process wake-up for followers of the event store (relay, projections): a commit that
 * appended events calls `committed()`. Across processes, PostgreSQL LISTEN/NOTIFY does the same
 * job, and a slow poll catches anything both miss.
 */
const bus = new EventEmitter();
bus.setMaxListeners(0);

export function committed(): void {
  bus.emit("committed");
}

export function onCommitted(listener: () => void): () => void {
  bus.on("committed", listener);
  return () => bus.off("committed", listener);
}
