import { emit } from "../../services/shared/catalogue.js";

/** An OrderInitiated for one unit of `product_id` at `unit_price`, paid with a card that works. */
export const orderInitiated = (order_id: string, product_id = 101, unit_price = 20) =>
  emit("OrderInitiated", {
    order_id,
    customer_id: 456,
    cart_id: null,
    total_amount: unit_price,
    currency: "CAD",
    items: [{ product_id, product_name: "Test product", quantity: 1, unit_price }],
    shipping_address: { street: "1 Test Street", city: "Ottawa", postal_code: "K1A 0B1" },
    card_token: "tok_visa",
  });
