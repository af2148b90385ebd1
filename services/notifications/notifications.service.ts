import type { ServiceBroker, ServiceSchema } from "moleculer";
import { emit } from "../shared/catalogue.js";
import type { ParticipantHandlers } from "../shared/participant.js";
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
      async handle(cmd, { tx, prepared }) {
        const recipient = prepared as Recipient;
        const { rowCount } = await tx.query(
          `INSERT INTO notifications.sent (order_id, template, channel, recipient) VALUES ($1, $2, 'email', $3)
           ON CONFLICT DO NOTHING`,
          [cmd.order_id, cmd.template, recipient.email],
        );
        if (!rowCount) return [];
        return [emit("NotificationSent", { order_id: cmd.order_id, channel: "email", recipient: recipient.email, template: cmd.template })];
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
