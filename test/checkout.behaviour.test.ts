import { SAGA_MODES } from "../services/shared/config.js";
import { CheckoutHarness } from "./support/checkout-harness.js";
import { checkoutBehaviour } from "./support/checkout-behaviour.js";
import { readModelStoreFromEnvironment } from "./support/infrastructure.js";

// The same suite once per saga mode, on the embedded defaults (in-process transport, PGlite).
for (const mode of SAGA_MODES) {
  checkoutBehaviour(`${mode}, memory`, () => CheckoutHarness.start({ mode }));
}

// Once more with the projections' store chosen by configuration, as a deployment chooses it
// (READ_MODEL_STORE; PostgreSQL here), so that the wiring is tested and not only the adapters.
const readModels = readModelStoreFromEnvironment();
checkoutBehaviour(`orchestrated, memory, ${readModels.label}`, () =>
  CheckoutHarness.start({ mode: "orchestrated", env: readModels.env, dispose: readModels.drop }),
);
