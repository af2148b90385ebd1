import { STATUS_CODES, type IncomingMessage, type ServerResponse } from "node:http";

/** RFC 9457 problem details. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance?: string;
  errors?: { field: string; message: string }[];
}

/**
 * The status codes' names in RFC 9110 where Node's `STATUS_CODES` still has the older ones; every
 * other title is Node's name for the status.
 */
const RFC9110_NAMES: Record<number, string> = {
  413: "Content Too Large",
  422: "Unprocessable Content",
};

interface ErrorLike {
  message?: string;
  code?: number | string;
  status?: number;
  statusCode?: number;
  type?: string;
  name?: string;
  data?: unknown;
}

/** Turns any error the gateway meets (body parser, validator, service, broker) into a problem. */
export function problemFrom(err: ErrorLike, instance?: string): Problem {
  let status =
    [err.code, err.status, err.statusCode].find((c): c is number => typeof c === "number" && c >= 400 && c < 600) ?? 500;
  let detail = err.message ?? "unexpected error";
  let errors: Problem["errors"];
  const type = err.type ?? "";

  if (type === "REQUEST_REJECTED") {
    // the request guard's own words (request-guard.ts)
    errors = (err.data as { issues?: Problem["errors"] } | undefined)?.issues;
  } else if (type === "UNABLE_DECODE_PARAM") {
    // moleculer-web decodes path parameters before the guard sees them
    status = 400;
    detail = "a path parameter is not valid percent-encoding";
  } else if (type === "entity.parse.failed" || /JSON/.test(err.name ?? "") || (err.name === "SyntaxError")) {
    status = 400;
    detail = `the request body is not valid JSON: ${detail}`;
  } else if (type === "entity.too.large" || status === 413) {
    status = 413;
    detail = `the request body is larger than the limit${(err as { limit?: number }).limit ? ` of ${(err as { limit?: number }).limit} bytes` : ""}`;
  } else if (err.name === "ValidationError" && Array.isArray(err.data)) {
    // fastest-validator issues from action params
    status = 422;
    errors = (err.data as { field?: string; message?: string }[]).map((d) => ({ field: d.field ?? "", message: d.message ?? "" }));
    detail = errors.map((e) => e.message).join("; ");
  } else if (err.data && typeof err.data === "object" && Array.isArray((err.data as { issues?: unknown }).issues)) {
    errors = (err.data as { issues: Problem["errors"] }).issues;
  } else if (err.name === "ServiceNotFoundError") {
    // the broker knows no node running that action (yet, or any more)
    status = 503;
    detail = "a service this request needs is not running; try again shortly";
  } else if (status === 404 && err.name === "NotFoundError") {
    detail = "no such route";
  } else if (err.name === "ServiceNotAvailableError" || err.name === "ServiceUnavailableError") {
    status = 503;
    detail = "a service this request needs is not running";
  } else if (err.name === "RequestTimeoutError") {
    status = 504;
  } else if (status === 429) {
    detail = "rate limit exceeded; retry after the time in Retry-After";
  } else if (status >= 500) {
    detail = "the server failed to handle this request; see the server log";
  }
  return problem(status, detail, instance, errors);
}

/** A problem of this status, titled after it. */
export function problem(status: number, detail: string, instance?: string, errors?: Problem["errors"]): Problem {
  return {
    // "about:blank": the status code says all there is to say about the kind of problem
    type: "about:blank",
    // with "about:blank" the title is the status code's name (RFC 9457 §4.2.1)
    title: RFC9110_NAMES[status] ?? STATUS_CODES[status] ?? "Error",
    status,
    detail,
    ...(instance ? { instance } : {}),
    ...(errors && errors.length ? { errors } : {}),
  };
}

export function sendProblem(req: IncomingMessage, res: ServerResponse, problem: Problem, headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  res.setHeader("Content-Type", "application/problem+json");
  res.writeHead(problem.status);
  res.end(JSON.stringify(problem));
}
