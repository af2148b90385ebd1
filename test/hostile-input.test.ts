import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../services/shared/config.js";
import { CheckoutHarness } from "./support/checkout-harness.js";
import { JSON_HEADERS, rawBytes, rawRequest, type RawResponse } from "./support/raw-http.js";

/**
 * Input a client should not send, as an attacker would send it: every answer is a 4xx
 * problem+json with a `detail`, and nothing is written.
 */

const order = (extra: Record<string, unknown> = {}) => JSON.stringify({ user_id: 456, product_id: 101, quantity: 1, ...extra });
const deep = (levels: number) => `{"user_id":456,"product_id":101,"quantity":1,"note":${"[".repeat(levels)}${"]".repeat(levels)}}`;

interface Case {
  name: string;
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  status: number;
  detail: RegExp;
}

const POST_ORDER = { method: "POST", path: "/cqrs/commands/orders", headers: JSON_HEADERS };

const CASES: Case[] = [
  // ids beyond PostgreSQL's INTEGER
  { name: "user_id beyond the integer range", ...POST_ORDER, body: order({ user_id: 3_000_000_000 }), status: 422, detail: /user_id: must be at most 2147483647/ },
  { name: "product id beyond the integer range in the path", path: "/api/v1/products/3000000000", status: 400, detail: /id: must be at most 2147483647/ },
  { name: "after=1e308", path: "/event-store/api/v1/events?after=1e308", status: 400, detail: /after: must be a whole number/ },
  { name: "limit=0", path: "/event-store/api/v1/events?limit=0", status: 400, detail: /limit: must be at least 1/ },
  // a negative figure is whole, so the detail names the range it is outside
  { name: "after=-1", path: "/event-store/api/v1/events?after=-1", status: 400, detail: /after: must be a whole number of 0 or more/ },
  { name: "a negative id in the path", path: "/api/v1/users/-1", status: 400, detail: /id: must be a whole number from 1 to 2147483647/ },
  // %00 in every route that takes a path parameter
  ...[
    ["GET", "/cqrs/queries/orders/%00"],
    ["GET", "/cqrs/queries/users/%00/orders"],
    ["GET", "/event-store/api/v1/events/type/%00"],
    ["GET", "/event-store/api/v1/events/correlation/%00"],
    ["GET", "/event-store/api/v1/replay/aggregate/orders/%00"],
    ["GET", "/event-store/api/v1/replay/aggregate/%00/1"],
    ["GET", "/sagas/%00"],
    ["GET", "/api/v1/products/%00"],
    ["GET", "/api/v1/inventory/%00"],
    ["GET", "/api/v1/users/%00"],
    ["GET", "/api/v1/carts/%00"],
    ["POST", "/api/v1/carts/%00/items"],
    ["DELETE", "/api/v1/carts/cart_1/items/%00"],
    ["POST", "/api/v1/carts/%00/checkout"],
    ["POST", "/admin/dead-letters/%00/replay"],
  ].map(([method, path]) => ({ name: `%00 in ${method} ${path}`, method, path, headers: JSON_HEADERS, body: method === "POST" ? "{}" : undefined, status: 400, detail: /path parameter \w+: must/ })),
  { name: "broken percent-encoding in a path parameter", path: "/sagas/%E0%A4%A", status: 400, detail: /path parameter is not valid percent-encoding/ },
  // strings PostgreSQL cannot store
  { name: "a lone surrogate in card_token", ...POST_ORDER, body: order().replace("}", ',"card_token":"\\udc00"}'), status: 422, detail: /card_token: must not contain NUL characters or unpaired surrogates/ },
  {
    name: "NUL in a shipping_address field",
    ...POST_ORDER,
    body: order({ shipping_address: { street: "a\u0000b", city: "Toronto", postal_code: "M5H 1A1" } }),
    status: 422,
    detail: /shipping_address.street: must not contain NUL/,
  },
  { name: "NUL in an ignored field's name", ...POST_ORDER, body: order({ "x\u0000": 1 }), status: 422, detail: /\(the name\)/ },
  // headers and shape
  { name: "a 4,000-character Idempotency-Key", ...POST_ORDER, headers: { ...JSON_HEADERS, "idempotency-key": "k".repeat(4000) }, body: order(), status: 400, detail: /Idempotency-Key must be 1 to 255/ },
  { name: "an Idempotency-Key with spaces", ...POST_ORDER, headers: { ...JSON_HEADERS, "idempotency-key": "a b" }, body: order(), status: 400, detail: /Idempotency-Key/ },
  { name: "5,000 levels of nesting in an ignored field", ...POST_ORDER, body: deep(5000), status: 400, detail: /deeper than 16 levels/ },
  { name: "a corrupt gzip body", ...POST_ORDER, headers: { ...JSON_HEADERS, "content-encoding": "gzip" }, body: Buffer.from("not gzip at all"), status: 415, detail: /compressed request bodies are not accepted/ },
  { name: "a valid gzip body", ...POST_ORDER, headers: { ...JSON_HEADERS, "content-encoding": "gzip" }, body: gzipSync(order()), status: 415, detail: /send the JSON uncompressed/ },
  { name: "a corrupt deflate body", ...POST_ORDER, headers: { ...JSON_HEADERS, "content-encoding": "deflate" }, body: Buffer.from([1, 2, 3]), status: 415, detail: /compressed/ },
  { name: "invalid UTF-8", ...POST_ORDER, body: Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]), status: 400, detail: /not valid UTF-8/ },
  // media types and methods
  { name: "no Content-Type", method: "POST", path: "/cqrs/commands/orders", body: order(), status: 415, detail: /must be JSON: send Content-Type: application\/json/ },
  { name: "Content-Type text/plain", method: "POST", path: "/cqrs/commands/orders", headers: { "content-type": "text/plain" }, body: order(), status: 415, detail: /got text\/plain/ },
  { name: "Content-Type form", method: "POST", path: "/api/v1/carts", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "user_id=456", status: 415, detail: /must be JSON/ },
  { name: "a charset other than UTF-8", method: "POST", path: "/cqrs/commands/orders", headers: { "content-type": "application/json; charset=latin1" }, body: order(), status: 415, detail: /must be UTF-8/ },
  { name: "PUT on the order command", method: "PUT", path: "/cqrs/commands/orders", headers: JSON_HEADERS, body: order(), status: 405, detail: /PUT is not allowed.*allowed: POST, OPTIONS/ },
  { name: "DELETE on the product list", method: "DELETE", path: "/api/v1/products", status: 405, detail: /allowed: GET, HEAD, OPTIONS/ },
  { name: "an unknown route", path: "/no/such/route", status: 404, detail: /no such route/ },
  // business rules on fields
  {
    name: "the same product repeated past the cap",
    ...POST_ORDER,
    body: JSON.stringify({ user_id: 456, items: [{ product_id: 101, quantity: 6000 }, { product_id: 101, quantity: 6000 }] }),
    status: 422,
    detail: /product 101 is listed for 12000 in all, more than 10000/,
  },
  { name: "a 60 kB street", ...POST_ORDER, body: order({ shipping_address: { street: "x".repeat(60_000), city: "Toronto", postal_code: "M5H 1A1" } }), status: 422, detail: /street: must be at most 200 characters/ },
  { name: "a bidi override in the city", ...POST_ORDER, body: order({ shipping_address: { street: "1 King", city: "Tor\u202eonto", postal_code: "M5H 1A1" } }), status: 422, detail: /city: must not contain control or text-direction characters/ },
  { name: "a control character in the postal code", ...POST_ORDER, body: order({ shipping_address: { street: "1 King", city: "Toronto", postal_code: "M5H\u0007" } }), status: 422, detail: /postal_code: must not contain control/ },
  { name: "an unknown card token", ...POST_ORDER, body: order({ card_token: "tok_madeUp" }), status: 422, detail: /card_token: is not a test card; use one of tok_visa, tok_chargeDeclined/ },
];

async function counts(h: CheckoutHarness) {
  const { rows } = await h.pool.query(
    "SELECT (SELECT count(*) FROM orders.orders)::int AS orders, (SELECT count(*) FROM carts.carts)::int AS carts, (SELECT count(*) FROM orders.idempotency_keys)::int AS keys",
  );
  return { events: await h.eventCount(), ...rows[0] };
}

/** The status codes' names in RFC 9110, which a problem of type "about:blank" takes as its title (RFC 9457). */
const STATUS_NAMES: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  422: "Unprocessable Content",
  431: "Request Header Fields Too Large",
};

function expectProblem(r: RawResponse, status: number, detail: RegExp) {
  expect(r.status, r.text.slice(0, 300)).toBe(status);
  expect(r.headers["content-type"]).toContain("application/problem+json");
  expect(STATUS_NAMES[status], `a name for ${status} in STATUS_NAMES`).toBeDefined();
  expect(r.json).toMatchObject({ type: "about:blank", status, title: STATUS_NAMES[status] });
  expect(r.json?.detail).toMatch(detail);
}

describe("hostile input (no API keys)", () => {
  let h: CheckoutHarness;
  beforeAll(async () => {
    h = await CheckoutHarness.start({ mode: "orchestrated", env: { BODY_LIMIT: "128kb" } });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it.each(CASES)("$name → $status", async (c) => {
    const before = await counts(h);
    const r = await rawRequest(h.baseUrl, c.method ?? "GET", c.path!, { headers: c.headers, body: c.body });
    expectProblem(r, c.status, c.detail);
    expect(await counts(h)).toEqual(before);
  });

  // requests Node's HTTP parser refuses before the gateway sees them
  const orderBytes = order();
  const postWith = (headerLines: string) =>
    `POST /cqrs/commands/orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n${headerLines}Content-Length: ${orderBytes.length}\r\n\r\n${orderBytes}`;
  it.each([
    { name: "a control character in a header", bytes: postWith("Idempotency-Key: a\u0001b\r\n"), status: 400, detail: /not valid HTTP\/1\.1: invalid header value char/ },
    { name: "headers past the size limit", bytes: postWith(`X-Padding: ${"p".repeat(20_000)}\r\n`), status: 431, detail: /headers are larger than the 16 KiB/ },
    { name: "two different Content-Lengths", bytes: postWith("Content-Length: 3\r\n"), status: 400, detail: /not valid HTTP\/1\.1: duplicate content-length/ },
    { name: "a malformed request line", bytes: "ORDER! /cqrs/commands/orders HTTP/1.1\r\n\r\n", status: 400, detail: /not valid HTTP\/1\.1: invalid method/ },
    {
      // the headers are whole, so the request reaches the gateway before its body turns out bad
      name: "a chunk size that is not hex",
      bytes: "POST /cqrs/commands/orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      status: 400,
      detail: /not valid HTTP\/1\.1: invalid character in chunk size/,
    },
    { name: "a Content-Length that is not a number", bytes: postWith("").replace(/Content-Length: \d+/, "Content-Length: 12a"), status: 400, detail: /not valid HTTP\/1\.1: invalid character in content-length/ },
  ])("malformed HTTP, $name → $status", async ({ bytes, status, detail }) => {
    const before = await counts(h);
    const r = await rawBytes(h.baseUrl, bytes);
    expectProblem(r, status, detail);
    expect(r.headers.connection).toBe("close");
    expect(await counts(h)).toEqual(before);
  });

  it("answers a malformed request pipelined after a good one once the good one's answer is out", async () => {
    const r = await rawBytes(h.baseUrl, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Note: a\u0001b\r\n\r\n");
    expect(r.status).toBe(200);
    const second = r.text.slice(r.text.indexOf("HTTP/1.1 "));
    expect(second).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(second).toContain("Content-Type: application/problem+json");
    expect(second).toMatch(/"detail":"the request is not valid HTTP\/1\.1: invalid header value char"/);
  });

  it("answers 405 with an Allow header", async () => {
    const r = await rawRequest(h.baseUrl, "PATCH", "/api/v1/carts/cart_1");
    expect(r.status).toBe(405);
    expect(r.headers.allow).toBe("GET, HEAD, OPTIONS");
  });

  it("answers HEAD as GET without the body, on every GET route", async () => {
    for (const path of ["/health", "/api/v1/products", "/api/v1/products/101", "/event-store/api/v1/events?limit=2"]) {
      const get = await rawRequest(h.baseUrl, "GET", path);
      const head = await rawRequest(h.baseUrl, "HEAD", path);
      expect(head.status, path).toBe(get.status);
      expect(head.headers["content-type"], path).toBe(get.headers["content-type"]);
      // a length is optional in an answer to HEAD, and when given it is the GET's (RFC 9110)
      expect(head.headers["content-length"] ?? String(Buffer.byteLength(get.text)), path).toBe(String(Buffer.byteLength(get.text)));
      expect(head.text, path).toBe("");
    }
    const unknown = await rawRequest(h.baseUrl, "HEAD", "/no/such/route");
    expect(unknown.status).toBe(404);
    expect(unknown.headers["content-type"]).toContain("application/problem+json");
    expect(unknown.text).toBe("");
  });

  it("refuses HEAD on a route without GET", async () => {
    const before = await counts(h);
    const r = await rawRequest(h.baseUrl, "HEAD", "/cqrs/commands/orders", { headers: { ...JSON_HEADERS, "x-probe": "1" } });
    expect(r.status).toBe(405);
    expect(r.headers.allow).toBe("POST, OPTIONS");
    expect(r.text).toBe("");
    const options = await rawRequest(h.baseUrl, "OPTIONS", "/cqrs/commands/orders");
    expect(options.headers.allow).toBe("POST, OPTIONS");
    expect(await counts(h)).toEqual(before);
  });

  it("answers OPTIONS with 204 and Allow, without running the handler", async () => {
    const before = await counts(h);
    const r = await rawRequest(h.baseUrl, "OPTIONS", "/api/v1/products");
    expect(r.status).toBe(204);
    expect(r.headers.allow).toBe("GET, HEAD, OPTIONS");
    expect(r.text).toBe("");
    const create = await rawRequest(h.baseUrl, "OPTIONS", "/api/v1/carts", { headers: JSON_HEADERS, body: JSON.stringify({ user_id: 456 }) });
    expect(create.status).toBe(204);
    expect(await counts(h)).toEqual(before);
  });

  it("takes the same fields in another key order as the same request under one Idempotency-Key", async () => {
    const key = { ...JSON_HEADERS, "idempotency-key": "reordered-1" };
    const first = await rawRequest(h.baseUrl, "POST", "/cqrs/commands/orders", { headers: key, body: '{"user_id":457,"product_id":102,"quantity":2}' });
    expect(first.status).toBe(202);
    const again = await rawRequest(h.baseUrl, "POST", "/cqrs/commands/orders", { headers: key, body: '{"quantity":2,"product_id":102,"user_id":457}' });
    expect(again.status).toBe(202);
    expect(again.headers["idempotent-replayed"]).toBe("true");
    expect(again.json?.order_id).toBe(first.json?.order_id);
    const other = await rawRequest(h.baseUrl, "POST", "/cqrs/commands/orders", { headers: key, body: '{"quantity":3,"product_id":102,"user_id":457}' });
    expect(other.status).toBe(422);
  });

  it("caps a cart line at the same total as an order line", async () => {
    const cart = await rawRequest(h.baseUrl, "POST", "/api/v1/carts", { headers: JSON_HEADERS, body: '{"user_id":458}' });
    const items = `/api/v1/carts/${cart.json?.cart_id}/items`;
    expect((await rawRequest(h.baseUrl, "POST", items, { headers: JSON_HEADERS, body: '{"product_id":101,"quantity":9000}' })).status).toBe(200);
    const over = await rawRequest(h.baseUrl, "POST", items, { headers: JSON_HEADERS, body: '{"product_id":101,"quantity":2000}' });
    expectProblem(over, 422, /more than 10000 of product 101/);
  });

  it("still takes a valid order afterwards", async () => {
    const r = await rawRequest(h.baseUrl, "POST", "/cqrs/commands/orders", { headers: { ...JSON_HEADERS, prefer: "wait=20" }, body: order({ card_token: "tok_visa" }) });
    expect(r.json?.status).toBe("confirmed");
  });
});

describe("hostile input with API keys", () => {
  let h: CheckoutHarness;
  beforeAll(async () => {
    h = await CheckoutHarness.start({ mode: "choreographed", env: { API_KEYS: "k-1", BODY_LIMIT: "1kb" } });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it.each([
    { name: "an oversized body", body: "x".repeat(100_000) },
    { name: "malformed JSON", body: '{"user_id": ' },
    { name: "deep nesting", body: deep(5000) },
    { name: "no body at all", body: undefined },
  ])("answers 401 before reading $name", async ({ body }) => {
    const r = await rawRequest(h.baseUrl, "POST", "/cqrs/commands/orders", { headers: JSON_HEADERS, body });
    expectProblem(r, 401, /API key is required/);
    expect(r.headers["www-authenticate"]).toContain("ApiKey");
  });

  it("answers 401 for a wrong key, also on unknown routes, and keeps /health open", async () => {
    expectProblem(await rawRequest(h.baseUrl, "GET", "/api/v1/products", { headers: { "x-api-key": "nope" } }), 401, /not valid/);
    expectProblem(await rawRequest(h.baseUrl, "GET", "/no/such/route"), 401, /required/);
    expect((await rawRequest(h.baseUrl, "GET", "/health")).status).toBe(200);
  });

  it("checks the body once the key is right", async () => {
    const r = await rawRequest(h.baseUrl, "POST", "/cqrs/commands/orders", { headers: { ...JSON_HEADERS, "x-api-key": "k-1" }, body: "x".repeat(100_000) });
    expectProblem(r, 413, /larger than the limit of 1024 bytes/);
  });
});

describe("an open gateway on the network", () => {
  it("is refused unless API_KEYS are set or it is allowed explicitly", () => {
    expect(() => loadConfig({ HOST: "0.0.0.0" })).toThrow(ConfigError);
    expect(() => loadConfig({ HOST: "0.0.0.0" })).toThrow(/ALLOW_OPEN_GATEWAY=1/);
    expect(() => loadConfig({ HOST: "192.168.1.10" })).toThrow(ConfigError);
    expect(loadConfig({ HOST: "0.0.0.0", ALLOW_OPEN_GATEWAY: "1" }).host).toBe("0.0.0.0");
    expect(loadConfig({ HOST: "0.0.0.0", API_KEYS: "k" }).host).toBe("0.0.0.0");
    expect(loadConfig({ HOST: "127.0.0.2" }).host).toBe("127.0.0.2");
    expect(loadConfig({}).host).toBe("127.0.0.1");
    // a process without the gateway opens nothing
    expect(loadConfig({ HOST: "0.0.0.0", SERVICES: "warehouse,payments" }).host).toBe("0.0.0.0");
  });
});
