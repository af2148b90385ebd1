import type { IncomingMessage, ServerResponse } from "node:http";
import { Errors } from "moleculer";
import type { z } from "zod";
import type { FieldIssue } from "../shared/errors.js";
import { matchPath, type RouteSpec } from "./gateway.routes.js";

/**
 * The gateway's one input layer. It runs before anything else looks at a request, in this order:
 * API key (401, before a byte of the body is read), route and method (404, 405 with `Allow`,
 * OPTIONS answered here with 204), path and query parameters, `Idempotency-Key`, then the body:
 * media type (415), no compression (415), size (413), UTF-8, nesting depth and JSON syntax (400),
 * and no NUL or unpaired surrogate in any string (422). What passes is handed on checked:
 * `req.$input`.
 */

export const MAX_JSON_DEPTH = 16;
export const MAX_IDEMPOTENCY_KEY = 255;
const IDEMPOTENCY_KEY = new RegExp(`^[A-Za-z0-9_.:~+/=-]{1,${MAX_IDEMPOTENCY_KEY}}$`);
const MAX_USER_AGENT = 256;

export interface CheckedInput {
  spec: RouteSpec;
  params: Record<string, unknown>;
  query: Record<string, unknown>;
  body: unknown;
  idempotencyKey?: string;
  userAgent?: string;
}

export type GuardedRequest = IncomingMessage & { $input?: CheckedInput; parsedUrl?: string; originalUrl?: string; body?: unknown; [HEAD]?: true };

/** Marks a HEAD request routed as GET (`headAsGet`). */
const HEAD = Symbol("head");

/**
 * HEAD is GET without the body (RFC 9110): the request is routed, checked and answered as a GET,
 * and Node, which made its response for a HEAD request, sends the headers and drops the body.
 * Called on every request before moleculer-web routes it by method.
 */
export function headAsGet(req: GuardedRequest): GuardedRequest {
  if (req.method === "HEAD") {
    req.method = "GET";
    req[HEAD] = true;
  }
  return req;
}

/** A request refused by the guard; `data.headers` go out with the problem. */
export class RequestRejected extends Errors.MoleculerClientError {
  constructor(status: number, detail: string, extra: { headers?: Record<string, string>; issues?: FieldIssue[] } = {}) {
    super(detail, status, "REQUEST_REJECTED", extra);
  }
}

export interface GuardOptions {
  apiKeys: readonly string[];
  bodyLimitBytes: number;
}

function keyOf(req: IncomingMessage): string | undefined {
  const h = req.headers;
  if (typeof h["x-api-key"] === "string") return h["x-api-key"];
  if (typeof h.authorization === "string") return h.authorization.replace(/^Bearer\s+/i, "");
  return undefined;
}

function check(schemas: Record<string, z.ZodType<unknown>> | undefined, raw: Record<string, string>, where: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const issues: FieldIssue[] = [];
  for (const [name, schema] of Object.entries(schemas ?? {})) {
    if (raw[name] === undefined) continue;
    const r = schema.safeParse(raw[name]);
    if (r.success) out[name] = r.data;
    else issues.push({ field: name, message: r.error.issues[0]?.message ?? "is not valid" });
  }
  if (issues.length) throw new RequestRejected(400, issues.map((i) => `${where} ${i.field}: ${i.message}`).join("; "), { issues });
  return out;
}

function pathParams(raw: Record<string, string>, spec: RouteSpec): Record<string, unknown> {
  const decoded: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw)) {
    try {
      decoded[name] = decodeURIComponent(value);
    } catch {
      throw new RequestRejected(400, `path parameter ${name}: not valid percent-encoding`);
    }
  }
  return check(spec.params, decoded, "path parameter");
}

function queryParams(url: string, spec: RouteSpec): Record<string, unknown> {
  const q = url.indexOf("?");
  const search = new URLSearchParams(q === -1 ? "" : url.slice(q + 1));
  const raw: Record<string, string> = {};
  for (const name of Object.keys(spec.query ?? {})) {
    const values = search.getAll(name);
    if (values.length > 1) throw new RequestRejected(400, `query parameter ${name}: give it once`);
    if (values.length === 1) raw[name] = values[0];
  }
  // parameters a route does not know are ignored, as HTTP caches and proxies expect
  return check(spec.query, raw, "query parameter");
}

/** Deepest nesting of arrays and objects, found without parsing (so no recursion to overflow). */
export function jsonDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) max = Math.max(max, ++depth);
    else if (c === 0x7d || c === 0x5d) depth--;
  }
  return max;
}

// NUL cannot be stored by PostgreSQL; an unpaired surrogate is not Unicode text at all
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function unstorableStrings(value: unknown, path: string, found: string[]): void {
  if (found.length >= 5) return;
  if (typeof value === "string") {
    if (UNSTORABLE.test(value)) found.push(path || "(body)");
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => unstorableStrings(v, path ? `${path}.${i}` : String(i), found));
  } else if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) {
      const at = path ? `${path}.${k}` : k;
      if (UNSTORABLE.test(k)) found.push(`${at} (the name)`);
      unstorableStrings(v, at, found);
    }
  }
}

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers["content-length"];
  return req.headers["transfer-encoding"] !== undefined || (length !== undefined && length !== "0");
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > limit) throw new RequestRejected(413, `the request body is larger than the limit of ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new RequestRejected(413, `the request body is larger than the limit of ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json$/i;

async function jsonBody(req: IncomingMessage, spec: RouteSpec, limit: number): Promise<unknown> {
  if (spec.body === "none" || spec.body === undefined) return undefined;
  if (spec.body === "optional-json" && !hasBody(req)) return {};
  const [type, ...parameters] = (req.headers["content-type"] ?? "").split(";").map((s) => s.trim());
  if (!JSON_TYPE.test(type)) {
    throw new RequestRejected(415, `the request body must be JSON: send Content-Type: application/json${type ? ` (got ${type.slice(0, 60)})` : ""}`, {
      headers: { "Accept-Post": "application/json" },
    });
  }
  const charset = parameters.find((p) => /^charset=/i.test(p))?.slice(8).replace(/"/g, "");
  if (charset && !/^utf-?8$/i.test(charset)) throw new RequestRejected(415, `the request body must be UTF-8 (got charset ${charset.slice(0, 30)})`);
  const encoding = (req.headers["content-encoding"] ?? "identity").trim().toLowerCase();
  if (encoding !== "identity") {
    // compressed bodies are refused outright: requests are small, and it rules out decompression bombs
    throw new RequestRejected(415, `compressed request bodies are not accepted (Content-Encoding: ${encoding.slice(0, 30)}); send the JSON uncompressed`, {
      headers: { "Accept-Encoding": "identity" },
    });
  }
  const bytes = await readBody(req, limit);
  if (bytes.length === 0) throw new RequestRejected(400, "the request body is empty: send a JSON object");
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new RequestRejected(400, "the request body is not valid UTF-8");
  }
  if (jsonDepth(text) > MAX_JSON_DEPTH) throw new RequestRejected(400, `the request body nests arrays or objects deeper than ${MAX_JSON_DEPTH} levels`);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    throw new RequestRejected(400, `the request body is not valid JSON: ${(err as Error).message}`);
  }
  const bad: string[] = [];
  unstorableStrings(body, "", bad);
  if (bad.length) {
    const message = "must not contain NUL characters or unpaired surrogates";
    throw new RequestRejected(422, bad.map((f) => `${f}: ${message}`).join("; "), { issues: bad.map((field) => ({ field, message })) });
  }
  return body;
}

/** Checks a request against the route table; throws RequestRejected, or returns the checked input. */
export async function guard(req: GuardedRequest, res: ServerResponse, opts: GuardOptions): Promise<CheckedInput | "answered"> {
  const url = req.originalUrl ?? req.url ?? "/";
  const pathOnly = url.split("?")[0].replace(/(.)\/+$/, "$1");
  const candidates = matchPath(pathOnly);
  const open = candidates.length > 0 && candidates.every((c) => c.spec.open);
  if (opts.apiKeys.length > 0 && !open) {
    const key = keyOf(req);
    if (!key || !opts.apiKeys.includes(key)) {
      throw new RequestRejected(401, key ? "the API key is not valid" : "an API key is required: send it as X-API-Key or Authorization: Bearer", {
        headers: { "WWW-Authenticate": 'ApiKey realm="saga-bench"' },
      });
    }
  }
  const method = req[HEAD] ? "HEAD" : req.method;
  if (candidates.length === 0) throw new RequestRejected(404, `no such route: ${method} ${pathOnly.slice(0, 200)}`);
  const methods = new Set(candidates.map((c) => c.spec.method));
  const allow = [...methods, ...(methods.has("GET") ? ["HEAD"] : []), "OPTIONS"].join(", ");
  if (req.method === "OPTIONS") {
    res.writeHead(204, { Allow: allow, "Content-Length": "0" });
    res.end();
    return "answered";
  }
  const match = candidates.find((c) => c.spec.method === req.method);
  if (!match) throw new RequestRejected(405, `${method} is not allowed on ${pathOnly.slice(0, 200)}; allowed: ${allow}`, { headers: { Allow: allow } });

  const { spec } = match;
  const params = pathParams(match.raw, spec);
  const query = queryParams(url, spec);
  const idempotencyKey = req.headers["idempotency-key"];
  if (idempotencyKey !== undefined && (typeof idempotencyKey !== "string" || !IDEMPOTENCY_KEY.test(idempotencyKey))) {
    throw new RequestRejected(400, `Idempotency-Key must be 1 to ${MAX_IDEMPOTENCY_KEY} characters of letters, digits and _ . : ~ + / = -`);
  }
  const body = await jsonBody(req, spec, opts.bodyLimitBytes);
  const ua = req.headers["user-agent"];
  return { spec, params, query, body, idempotencyKey, userAgent: typeof ua === "string" ? ua.slice(0, MAX_USER_AGENT) : undefined };
}

/** The guard as a moleculer-web route middleware. */
export function requestGuard(opts: GuardOptions) {
  return (req: GuardedRequest, res: ServerResponse, next: (err?: unknown) => void): void => {
    guard(req, res, opts).then(
      (input) => {
        if (input === "answered") return;
        req.$input = input;
        req.body = input.body;
        next();
      },
      (err) => next(err),
    );
  };
}
