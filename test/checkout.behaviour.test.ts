import { SAGA_MODES } from "../services/shared/config.js";
import { CheckoutHarness } from "./support/checkout-harness.js";
import { checkoutBehaviour } from "./support/checkout-behaviour.js";

// The same suite once per saga mode, on the embedded defaults (in-process transport, PGlite).
for (const mode of SAGA_MODES) {
  checkoutBehaviour(`${mode}, memory`, () => CheckoutHarness.start({ mode }));
}
