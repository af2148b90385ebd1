import type { ServiceBroker, ServiceSchema } from "moleculer";
import { emit } from "../shared/catalogue.js";
import { firstOfEach, type ParticipantHandlers } from "../shared/participant.js";
import { insertNew } from "../shared/database.js";
import type { ServiceDeps } from "../shared/service-deps.js";

interface Recipient {
  email: string;
  phone: string | null;
}

/**
 * Simulated email/SMS: records the notification once per order, template and channel. A send
 * that fails is retried by the consumer; it never touches the order.
 */
export function notificationHandlers(broker: () => ServiceBroker): ParticipantHandlers<"notifications"> {
  return {
    SendNotification: {
      prepare: (cmd) => broker().call<Recipient, { id: number }>("users.get", { id: cmd.customer_id }),
      async handleAll(tx, commands) {
        const first = firstOfEach(commands, (c) => `${c.data.order_id}\u0000${c.data.template}`);
        const sends = commands.map((c) => ({ cmd: c.data, recipient: (c.prepared as Recipient).email }));
        const inserted = await insertNew(
          tx,
          "notifications.sent",
          sends.filter((_, i) => first.has(i)).map(({ cmd, recipient }) => ({ order_id: cmd.order_id, template: cmd.template, channel: "email", recipient })),
          "order_id, template",
        );
        const sent = new Set(inserted.map((r) => `${r.order_id as string}\u0000${r.template as string}`));
        return sends.map(({ cmd, recipient }, i) =>
          first.has(i) && sent.has(`${cmd.order_id}\u0000${cmd.template}`)
            ? [emit("NotificationSent", { order_id: cmd.order_id, channel: "email", recipient, template: cmd.template })]
            : [],
        );
      },
    },
  };
}

export function notificationsService(deps: ServiceDeps): ServiceSchema {
  let brokerRef: ServiceBroker | undefined;
  const handlers = notificationHandlers(() => {
    if (!brokerRef) throw new Error("notifications service is not started");
    return brokerRef;
  });
  return {
    name: "notifications",
    mixins: [deps.drive("notifications", handlers) as ServiceSchema],
    created() {
      brokerRef = this.broker;
    },
  };
}
