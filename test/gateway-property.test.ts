import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { matchPath, ROUTES, type RouteSpec } from "../services/gateway/gateway.routes.js";
import { CheckoutHarness } from "./support/checkout-harness.js";
import { rawRequest } from "./support/raw-http.js";

/**
 * Generated hostile requests against the gateway: bodies, paths, query strings and headers,
 * with wrong types, out-of-range numbers, injection strings, deep nesting, control and unicode
 * characters, wrong content types and encodings. Every request is wrong in at least one way, so
 * every answer must be a 4xx problem+json with a `detail` (never a 5xx), nothing may be written,
 * and the system must still take a valid order afterwards. Replay a failure with
 * HOSTILE_SEED=<the printed seed>.
 */

const RUNS = Number(process.env.HOSTILE_RUNS ?? 1000);
const SEED = Number(process.env.HOSTILE_SEED ?? Math.floor(Math.random() * 2 ** 31));
const API_KEY = "prop-key";

interface HostileRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Buffer;
}

const INJECTIONS = [
  "' OR 1=1 --",
  "'; DROP TABLE orders.orders; --",
  "<script>alert(1)</script>",
  "${jndi:ldap://x/a}",
  "{{7*7}}",
  "../../etc/passwd",
  "$where",
  "\u0000",
  "\ud800",
  "\udc00x",
  "\u202eevil",
  "\u0007\u001b[2J",
  "😀".repeat(40),
  "ｆｕｌｌｗｉｄｔｈ",
  "x".repeat(5000),
];

/** Percent-encodes any string; a lone surrogate cannot be encoded and becomes U+FFFD ("%ED%A0%80" covers it raw). */
const encode = (s: string) => encodeURIComponent((s as string & { toWellFormed(): string }).toWellFormed());

/** Path segments that no route accepts as an existing resource. */
const hostileSegment = fc.oneof(
  fc.constantFrom(
    "%00",
    "abc%00",
    "0",
    "-1",
    "3000000000",
    "1e308",
    "99999999999999999999999",
    "order_%00",
    "order_0",
    "cart_0",
    "%27%20OR%201%3D1--",
    "%3Cscript%3E",
    "..%2F..%2Fetc",
    "%E2%80%AE",
    "%F0%9F%98%80",
    "%ED%A0%80",
    "%",
    "%ZZ",
    "%C0%AF",
    "a".repeat(300),
  ),
  fc.string({ maxLength: 40 }).map((s) => `x${encode(s)}`),
  fc.constantFrom(...INJECTIONS).map((s) => encode(s)),
);

const hostileQueryValue = fc.oneof(
  fc.constantFrom("0", "-1", "1e308", "abc", "1001", "%00", "", "1.5", "99999999999999999999", "0x10", "%27%20OR%201=1"),
  fc.string({ maxLength: 20 }).map((s) => `x${encode(s)}`),
);

const wrongType = fc.constantFrom<unknown>(null, true, [], {}, "abc", "456 OR 1=1", 1e308, -0.5, [1, 2], { $gt: 0 });
const badId = fc.oneof(wrongType, fc.constantFrom(0, -5, 1.5, 999, 3_000_000_000, 2 ** 53, "", "4\u00006", "12345678901"));
const badQuantity = fc.oneof(wrongType, fc.constantFrom(0, -1, 1.5, 10_001, 1e308, "1"));
const badToken = fc.oneof(fc.constantFrom(...INJECTIONS), fc.constantFrom<unknown>("tok_madeUp", "", 5, null, "TOK_VISA"));
const badAddress = fc.oneof(
  fc.constantFrom(...INJECTIONS.filter((s) => s.length > 0)).map((s) => ({ street: s.includes("<") ? s.repeat(50) : s, city: "Toronto\u202e", postal_code: "M5H" })),
  fc.record({ street: fc.constant("x".repeat(300)), city: fc.string(), postal_code: fc.string() }),
  fc.constantFrom<unknown>("not an address", null, [], { street: 1, city: 2, postal_code: 3 }, { street: "", city: "", postal_code: "" }),
);
const badItems = fc.constantFrom<unknown>(
  [],
  "items",
  [{ product_id: 101, quantity: 6000 }, { product_id: 101, quantity: 6000 }],
  [{ product_id: "x", quantity: 1 }],
  Array.from({ length: 51 }, (_, i) => ({ product_id: 101 + (i % 5), quantity: 1 })),
  [{ product_id: 101 }],
);

/** An order (or cart) body with at least one field that must be refused, plus noise. */
const badObject = fc
  .record({
    poison: fc.array(
      fc.oneof(
        badId.map((v) => ["user_id", v] as const),
        badId.map((v) => ["product_id", v] as const),
        badQuantity.map((v) => ["quantity", v] as const),
        badToken.map((v) => ["card_token", v] as const),
        badAddress.map((v) => ["shipping_address", v] as const),
        badItems.map((v) => ["items", v] as const),
      ),
      { minLength: 1, maxLength: 3 },
    ),
    noise: fc.dictionary(fc.oneof(fc.string({ maxLength: 10 }), fc.constantFrom(...INJECTIONS.slice(0, 6), "__proto__", "constructor")), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 3 }),
  })
  .map(({ poison, noise }) => {
    const body: Record<string, unknown> = { ...noise, user_id: 456, product_id: 101, quantity: 1 };
    for (const [field, value] of poison) {
      body[field] = value;
      if (field === "items") {
        delete body.product_id;
        delete body.quantity;
      }
    }
    return JSON.stringify(body);
  });

const badText = fc.oneof(
  fc.constantFrom<string | Buffer>(
    '{"user_id": ',
    '{"a":1}}',
    "null",
    "[]",
    '"a string"',
    "12",
    "",
    "{'user_id': 456}",
    '{"user_id":456,"product_id":101,"quantity":1,}',
    Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]),
    Buffer.from('{"user_id":"\\ud800"}'),
    "x".repeat(5000),
  ),
  fc.integer({ min: 17, max: 3000 }).map((n) => `{"user_id":456,"product_id":101,"quantity":1,"n":${"[".repeat(n)}${"]".repeat(n)}}`),
  fc.integer({ min: 17, max: 500 }).map((n) => `${'{"a":'.repeat(n)}1${"}".repeat(n)}`),
  fc.string({ maxLength: 60 }).map((s) => `{${s}`),
);

const wrongContentType = fc.constantFrom<string | undefined>(
  undefined,
  "text/plain",
  "application/x-www-form-urlencoded",
  "multipart/form-data; boundary=x",
  "application/xml",
  "application/json; charset=latin1",
  "application/json; charset=utf-16",
  "json",
  "*/*",
);
const encoding = fc.constantFrom("gzip", "deflate", "br", "compress", "x-unknown", "gzip, deflate");
const badIdempotencyKey = fc.oneof(
  fc.constantFrom("k".repeat(256), "k".repeat(4000), "a b", "", "\u00e9t\u00e9", "k\t1", "\"quoted\"", "a,b", "<x>"),
  fc.string({ minLength: 1, maxLength: 20 }).map((s) => `${latin1(s)} ;`),
);
/** Header values an HTTP client can send at all (latin1, no CR/LF). */
function latin1(s: string): string {
  return s.replace(/[^\x20-\x7e\xa0-\xff]/g, "?");
}
const headerText = fc.string({ maxLength: 80 }).map(latin1);

function fill(spec: RouteSpec, segment: string): string {
  return spec.path.replace(/:\w+/g, segment);
}

const withBody = ROUTES.filter((r) => r.body === "json" || r.body === "optional-json");
const withParams = ROUTES.filter((r) => r.params);
const withQuery = ROUTES.filter((r) => r.query);
const goodBody = JSON.stringify({ user_id: 456, product_id: 101, quantity: 1 });

const hostileRequest: fc.Arbitrary<HostileRequest> = fc
  .record({
    kind: fc.oneof(
      // a route that does not exist
      fc.record({ path: fc.oneof(fc.constantFrom("/", "/admin", "/cqrs", "/api/v1/carts/cart_1/pay", "/..%2F..%2Fetc%2Fpasswd", "/%00", "/health/x"), hostileSegment.map((s) => `/${s}/${s}`)), method: fc.constantFrom("GET", "POST") }).map(
        ({ path, method }) => ({ method, path, headers: {} as Record<string, string>, body: method === "POST" ? goodBody : undefined }),
      ),
      // a method the path does not allow
      fc.record({ spec: fc.constantFrom(...ROUTES), method: fc.constantFrom("GET", "POST", "PUT", "PATCH", "DELETE") }).map(({ spec, method }) => {
        const path = fill(spec, spec.path.includes("cart_id") ? "cart_1" : "1");
        const allowed = matchPath(path).map((m) => m.spec.method);
        const wrong = allowed.includes(method as RouteSpec["method"]) ? "PATCH" : method;
        return { method: wrong, path, headers: { "content-type": "application/json" }, body: goodBody };
      }),
      // a path parameter no resource answers to
      fc.record({ spec: fc.constantFrom(...withParams), segment: hostileSegment }).map(({ spec, segment }) => ({
        method: spec.method,
        path: fill(spec, segment),
        headers: { "content-type": "application/json" },
        body: spec.body ? goodBody : undefined,
      })),
      // a query parameter out of range, of the wrong type, or repeated
      fc.record({ spec: fc.constantFrom(...withQuery), value: hostileQueryValue, twice: fc.boolean() }).map(({ spec, value, twice }) => {
        const name = Object.keys(spec.query!)[0];
        const query = twice ? `${name}=1&${name}=2` : `${name}=${value}`;
        return { method: spec.method, path: `${fill(spec, "1")}?${query}`, headers: {}, body: undefined };
      }),
      // an Idempotency-Key that is too long or has characters keys may not have
      fc.record({ spec: fc.constantFrom(...ROUTES.filter((r) => !r.open)), key: badIdempotencyKey }).map(({ spec, key }) => ({
        method: spec.method,
        path: fill(spec, spec.path.includes("cart_id") ? "cart_1" : "1"),
        headers: { "content-type": "application/json", "idempotency-key": key },
        body: spec.body ? goodBody : undefined,
      })),
      // a body of the wrong media type, compressed, broken, too deep, or with a field that must be refused
      { weight: 5, arbitrary: fc
        .record({
          spec: fc.constantFrom(...withBody),
          body: fc.oneof({ arbitrary: badObject, weight: 3 }, { arbitrary: badText, weight: 1 }, { arbitrary: badId.map((v) => JSON.stringify({ user_id: v })), weight: 1 }),
          contentType: fc.oneof({ arbitrary: fc.constantFrom("application/json", "application/json; charset=utf-8", "application/problem+json"), weight: 4 }, { arbitrary: wrongContentType, weight: 1 }),
          encoding: fc.oneof({ arbitrary: fc.constant(undefined), weight: 5 }, { arbitrary: encoding, weight: 1 }),
        })
        // a new cart takes only user_id: any other poison would leave a valid request
        .filter(({ spec, body }) => spec.action !== "gateway.createCart" || typeof body !== "string" || !body.includes('"user_id":456'))
        .map(({ spec, body, contentType, encoding: enc }) => {
          const validCartPath = spec.path.includes(":cart_id") ? fill(spec, "cart_987654321") : spec.path;
          const headers: Record<string, string> = {};
          if (contentType !== undefined) headers["content-type"] = contentType;
          if (enc !== undefined) headers["content-encoding"] = enc;
          return { method: spec.method, path: validCartPath, headers, body };
        }) },
    ),
    noise: fc.record({
      userAgent: fc.option(headerText, { nil: undefined }),
      forwarded: fc.option(headerText, { nil: undefined }),
      prefer: fc.option(fc.constantFrom("wait=5", "wait=-1", "wait=99999999999", "wait=abc", "respond-async"), { nil: undefined }),
      extraQuery: fc.option(fc.constantFrom(...INJECTIONS.slice(0, 6)).map((s) => `zz=${encode(s)}`), { nil: undefined }),
    }),
    key: fc.constantFrom("none", "wrong", "right"),
  })
  .map(({ kind, noise, key }) => {
    const headers: Record<string, string> = { ...kind.headers };
    if (noise.userAgent !== undefined) headers["user-agent"] = noise.userAgent;
    if (noise.forwarded !== undefined) headers["x-forwarded-for"] = noise.forwarded;
    if (noise.prefer !== undefined) headers.prefer = noise.prefer;
    if (key === "right") headers["x-api-key"] = API_KEY;
    if (key === "wrong") headers.authorization = `Bearer ${API_KEY}x`;
    const path = noise.extraQuery ? `${kind.path}${kind.path.includes("?") ? "&" : "?"}${noise.extraQuery}` : kind.path;
    return { ...kind, path, headers };
  });

async function writes(h: CheckoutHarness) {
  const { rows } = await h.pool.query(
    `SELECT (SELECT count(*) FROM orders.orders)::int AS orders, (SELECT count(*) FROM carts.carts)::int AS carts,
            (SELECT count(*) FROM orders.idempotency_keys)::int AS keys, (SELECT count(*) FROM messaging.dead_letters)::int AS dead`,
  );
  return { events: await h.eventCount(), ...rows[0] };
}

describe.each([
  { label: "without API keys", env: {} as Record<string, string>, auth: {} as Record<string, string> },
  { label: "with API keys", env: { API_KEYS: API_KEY }, auth: { "x-api-key": API_KEY } },
])("generated hostile requests, $label", ({ env, auth }) => {
  let h: CheckoutHarness;
  beforeAll(async () => {
    h = await CheckoutHarness.start({ mode: "orchestrated", env: { BODY_LIMIT: "4kb", ...env } });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it(`answers ${RUNS} of them with 4xx problem+json, writes nothing, and still takes a valid order`, async () => {
    console.log(`gateway property test: seed ${SEED} (replay with HOSTILE_SEED=${SEED}), ${RUNS} runs`);
    const before = await writes(h);
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(hostileRequest, async (req) => {
        const r = await rawRequest(h.baseUrl, req.method, req.path, { headers: req.headers, body: req.body });
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        expect(r.status, `${req.method} ${req.path.slice(0, 120)} → ${r.status} ${r.text.slice(0, 200)}`).toBeGreaterThanOrEqual(400);
        expect(r.status).toBeLessThan(500);
        expect(r.headers["content-type"]).toContain("application/problem+json");
        expect(typeof r.json?.detail).toBe("string");
        expect((r.json?.detail as string).length).toBeGreaterThan(0);
      }),
      { numRuns: RUNS, seed: SEED, endOnFailure: true },
    );
    console.log(`statuses: ${[...statuses].sort(([a], [b]) => a - b).map(([s, n]) => `${s}×${n}`).join(" ")}`);
    expect(await writes(h)).toEqual(before);
    const health = await rawRequest(h.baseUrl, "GET", "/health");
    expect(health.status).toBe(200);
    const valid = await rawRequest(h.baseUrl, "POST", "/cqrs/commands/orders", {
      headers: { "content-type": "application/json", prefer: "wait=20", ...auth },
      body: JSON.stringify({ user_id: 456, product_id: 101, quantity: 1, card_token: "tok_visa" }),
    });
    expect(valid.json).toMatchObject({ status: "confirmed" });
  }, 300_000);
});
