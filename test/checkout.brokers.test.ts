import { describe, it } from "vitest";
import { SAGA_MODES } from "../services/shared/config.js";
import { CheckoutHarness } from "./support/checkout-harness.js";
import { checkoutBehaviour } from "./support/checkout-behaviour.js";
import { AMQP_URL, NATS_URL, available } from "./support/infrastructure.js";

// The shared behaviour suite again, with every service in its own process, over NATS
// (JetStream) and over RabbitMQ, on the machine's PostgreSQL.
const postgres = await available("postgres");
for (const [kind, url] of [
  ["nats", NATS_URL],
  ["amqp", AMQP_URL],
] as const) {
  const up = postgres && (await available(kind));
  for (const mode of SAGA_MODES) {
    if (up) {
      checkoutBehaviour(`${mode}, ${kind}, one process per service`, () => CheckoutHarness.startCluster({ mode, transporter: url }));
    } else {
      describe(`checkout behaviour (${mode}, ${kind}, one process per service)`, () => {
        it.skip(`needs ${kind} and PostgreSQL on 127.0.0.1`, () => undefined);
      });
    }
  }
}
