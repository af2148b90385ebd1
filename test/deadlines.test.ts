import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isCommandType } from "../services/shared/catalogue.js";
import { SAGA_MODES } from "../services/shared/config.js";
import { CheckoutHarness } from "./support/checkout-harness.js";

/**
 * Deadlines, end to end: the payment provider answers only after the checkout's deadline, so
 * the checkout is cancelled with reason `timeout` and undone, the late charge is refused, and
 * nothing is left reserved or captured.
 */
const PRODUCT = { id: 9601, price: 75, stock: 10 };

describe.each(SAGA_MODES)("a checkout past its deadline (%s)", (mode) => {
  let h: CheckoutHarness;

  beforeAll(async () => {
    h = await CheckoutHarness.start({ mode, env: { SAGA_TIMEOUT_MS: "600", PAYMENT_LATENCY_MS: "3000" } });
    await h.seedProducts([PRODUCT]);
  });
  afterAll(async () => {
    await h?.stop();
  });

  it("is cancelled with reason timeout, its stock released and the late charge refused", async () => {
    const { accepted, view } = await h.checkout({ user_id: 456, product_id: PRODUCT.id, quantity: 2 });
    expect(view.status).toBe("cancelled");
    expect(view.cancellation_reason).toBe("timeout");

    // the provider's late answer must not capture anything: wait until it has come and gone
    await new Promise((r) => setTimeout(r, 3_500));
    const events = await h.events(accepted.correlation_id);
    const business = events.filter((e) => !isCommandType(e.event_type)).map((e) => e.event_type);
    expect(business).toEqual([
      "OrderInitiated",
      "StockReserved",
      ...(mode === "choreographed" ? ["CheckoutTimedOut"] : []),
      "PaymentRefunded",
      "StockReleased",
      "OrderCancelled",
    ]);
    expect(business).not.toContain("PaymentProcessed");
    expect(await h.payment(accepted.order_id)).toMatchObject({ status: "voided" });
    expect(await h.stock(PRODUCT.id)).toEqual({ available: PRODUCT.stock, reserved: 0 });
  });
});
