import type { ServiceBroker, ServiceSchema } from "moleculer";
import { emit } from "../shared/catalogue.js";
import { oneRowEach, type ParticipantHandlers } from "../shared/participant.js";
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
      // the order carries its customer's contact; only a command from before it did asks the users service
      prepare: async (cmd) => cmd.recipient ?? broker().call<Recipient, { id: number }>("users.get", { id: cmd.customer_id }),
      // once per order, template and channel: a copy of the command finds the row
      handleAll: (tx, commands) =>
        oneRowEach(tx, commands, {
          table: "notifications.sent",
          keyColumns: "order_id, template",
          key: (row) => `${row.order_id as string}\u0000${row.template as string}`,
          decide: () => "email" as const,
          row: (cmd, channel, recipient) => ({ order_id: cmd.order_id, template: cmd.template, channel, recipient: (recipient as Recipient).email }),
          events: (cmd, channel, recipient) => [
            emit("NotificationSent", { order_id: cmd.order_id, channel, recipient: (recipient as Recipient).email, template: cmd.template }),
          ],
        }),
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
