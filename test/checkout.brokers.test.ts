import { describe, it } from "vitest";
import { SAGA_MODES } from "../services/shared/config.js";
import { CheckoutHarness } from "./support/checkout-harness.js";
import { checkoutBehaviour } from "./support/checkout-behaviour.js";
import { BROKERS, clusterAvailable } from "./support/infrastructure.js";

// The shared behaviour suite again, with every service in its own process, over NATS
// (JetStream) and over RabbitMQ, on the machine's PostgreSQL.
for (const { kind, url } of BROKERS) {
  const up = await clusterAvailable(kind);
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
