import { z } from "zod";
import { TEST_CARDS } from "../payments/payments.domain.js";

/**
 * The rules for the fields clients send, declared once: the request schemas of orders and carts
 * and the gateway's path and query parameters are built from these, so an id, a quantity or an
 * address line is checked the same way wherever it arrives.
 */

/** Ids live in PostgreSQL INTEGER columns. */
export const MAX_DB_INT = 2_147_483_647;
export const MAX_QUANTITY = 10_000;
export const MAX_ADDRESS_FIELD = 200;
export const CARD_TOKENS = Object.values(TEST_CARDS);

/** A positive INTEGER id, as a JSON number or a string of digits (a path parameter). */
export const dbId = z.preprocess(
  (v) => (typeof v === "string" && /^\d{1,10}$/.test(v) ? Number(v) : v),
  z
    .number({ error: `must be a whole number from 1 to ${MAX_DB_INT}` })
    .int("must be a whole number")
    .min(1, "must be at least 1")
    .max(MAX_DB_INT, `must be at most ${MAX_DB_INT}`),
);

export const quantity = z
  .number({ error: (i) => (i.input === undefined ? "is required" : "must be a number") })
  .int("must be a whole number")
  .positive("must be at least 1")
  .max(MAX_QUANTITY, `must be at most ${MAX_QUANTITY}`);

export const cardToken = z.enum(CARD_TOKENS as [string, ...string[]], {
  error: `is not a test card; use one of ${CARD_TOKENS.join(", ")}`,
});

// C0/C1 controls, and the bidirectional overrides and isolates that can make text read other than it is
const UNSAFE_TEXT = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

/** One line of an address: printable, no direction overrides, not blank, bounded. */
const addressLine = z
  .string({ error: "must be a string" })
  .trim()
  .min(1, "must not be empty")
  .max(MAX_ADDRESS_FIELD, `must be at most ${MAX_ADDRESS_FIELD} characters`)
  .refine((s) => !UNSAFE_TEXT.test(s), "must not contain control or text-direction characters");

export const shippingAddress = z.object({ street: addressLine, city: addressLine, postal_code: addressLine.pipe(z.string().max(16, "must be at most 16 characters")) });

/** Order lines with the same product merged, so the cap holds for the order, not only per line. */
export const orderLines = <T extends { product_id: number; quantity: number }>(lines: T[]) => {
  const merged = new Map<number, number>();
  for (const l of lines) merged.set(l.product_id, (merged.get(l.product_id) ?? 0) + l.quantity);
  return [...merged].map(([product_id, qty]) => ({ product_id, quantity: qty }));
};

/** JSON with object keys sorted: two requests that differ only in key order are one request. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}
