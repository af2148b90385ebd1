import http from "node:http";
import net from "node:net";

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** The body as JSON, or undefined when it is not JSON. */
  json: { detail?: string; status?: number; [k: string]: unknown } | undefined;
}

/** The body as JSON, or undefined when it is not JSON. */
function jsonOf(text: string): RawResponse["json"] {
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * One HTTP request exactly as given: the path is sent unnormalised (`%00`, `..`), headers and
 * body bytes untouched, which `fetch` does not promise.
 */
export function rawRequest(
  base: string,
  method: string,
  path: string,
  opts: { headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<RawResponse> {
  const u = new URL(base);
  // a body always has its length: Node sends a DELETE's body unframed otherwise
  const length = opts.body === undefined ? {} : { "content-length": String(Buffer.byteLength(opts.body)) };
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: u.hostname, port: Number(u.port), method, path, headers: { connection: "close", ...length, ...opts.headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: jsonOf(text) });
        });
      },
    );
    req.on("error", reject);
    if (opts.body !== undefined) req.end(opts.body);
    else req.end();
  });
}

/**
 * Bytes written to the gateway's socket as they are, for requests Node's own client refuses to
 * send (a control character in a header, conflicting framing); the answer read to the
 * connection's end.
 */
export function rawBytes(base: string, bytes: string): Promise<RawResponse> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect(Number(u.port), u.hostname, () => socket.write(bytes));
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("error", reject);
    socket.on("close", () => {
      const raw = Buffer.concat(chunks).toString("utf8");
      const split = raw.indexOf("\r\n\r\n");
      const [statusLine, ...lines] = (split < 0 ? raw : raw.slice(0, split)).split("\r\n");
      const headers: http.IncomingHttpHeaders = {};
      for (const line of lines) {
        const colon = line.indexOf(":");
        if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      const text = split < 0 ? "" : raw.slice(split + 4);
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine ?? "")?.[1] ?? 0), headers, text, json: jsonOf(text) });
    });
  });
}

export const JSON_HEADERS = { "content-type": "application/json" };
