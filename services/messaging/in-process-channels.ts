import channels from "@moleculer/channels";
import type { Context, Service } from "moleculer";

// the package is CommonJS, and Node finds only some of its exports by name
const { Adapters } = channels;

/** A channel subscription as the adapter sees it. */
interface Subscribed {
  id: string;
  name: string;
  group: string;
}

/** Options a sender may add to `sendToChannel` with the in-process transport. */
export interface InProcessSendOptions {
  headers?: Record<string, string>;
  /**
   * Called once every consumer group of this process subscribed to the channel has finished
   * with the message (at once if there is none); with an error if a handler failed. A message
   * still waiting for its turn when the broker stops is never finished, and this is never called.
   */
  onHandled?: (err?: unknown) => void;
}

interface Delivery {
  remaining: number;
  failure?: { err: unknown };
  onHandled: (err?: unknown) => void;
}

/**
 * The in-process channels: @moleculer/channels' Fake adapter (a channel message is a Moleculer
 * event to one handler per consumer group, behind a bulkhead), which tells a sender that asks
 * when every group has handled the message. A broker holds a message until a consumer has
 * acknowledged it; in process nothing holds it but the handlers themselves, so the relay moves
 * its checkpoint only past messages whose handlers have finished (event-store.service.ts):
 * a message published but unhandled when the process dies is published again after the restart.
 */
export class InProcessChannels extends Adapters.Fake {
  private readonly subscribed = new Map<string, Subscribed>();
  private readonly deliveries = new Map<number, Delivery>();
  private nextDelivery = 1;

  override async subscribe(chan: Subscribed, svc: Service): Promise<void> {
    await super.subscribe(chan as never, svc);
    this.subscribed.set(chan.id, chan);
  }

  override async unsubscribe(chan: Subscribed): Promise<void> {
    this.subscribed.delete(chan.id);
    await super.unsubscribe(chan as never);
  }

  override async publish(channelName: string, payload: unknown, opts: InProcessSendOptions = {}): Promise<void> {
    const { onHandled } = opts;
    if (!onHandled) return super.publish(channelName, payload, opts);
    const groups = new Set([...this.subscribed.values()].filter((c) => c.name === channelName).map((c) => c.group));
    if (groups.size === 0) {
      onHandled();
      return super.publish(channelName, payload, opts);
    }
    const delivery = this.nextDelivery++;
    this.deliveries.set(delivery, { remaining: groups.size, onHandled });
    // as the Fake adapter publishes, with the delivery's number beside the payload
    this.broker.emit(`${this.opts.eventPrefix}.${channelName}`, { payload, headers: opts.headers, delivery }, {});
  }

  override async processMessage(chan: Subscribed, ctx: Context): Promise<void> {
    const delivery = (ctx.params as { delivery?: number }).delivery;
    try {
      await super.processMessage(chan as never, ctx);
      this.finished(delivery);
    } catch (err) {
      this.finished(delivery, { err });
      throw err;
    }
  }

  private finished(id: number | undefined, failure?: { err: unknown }): void {
    const delivery = id === undefined ? undefined : this.deliveries.get(id);
    if (!delivery) return;
    delivery.failure ??= failure;
    if (--delivery.remaining > 0) return;
    this.deliveries.delete(id!);
    delivery.onHandled(delivery.failure ? (delivery.failure.err ?? new Error("a channel handler failed")) : undefined);
  }
}
