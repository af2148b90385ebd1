import { createServer, maxHeaderSize, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { problem } from "./problem.js";

/** The gateway's port could not be bound; the message says why and what to do. */
export class GatewayListenError extends Error {}

/**
 * Binds the gateway's port before anything else starts, so a port in use stops the start at once
 * with one clear sentence (moleculer-web's own listen never settles when the port is taken).
 */
export async function openGatewayPort(host: string, port: number): Promise<Server> {
  // Until the gateway takes over (its `created` hook), a request gets a 503 to retry rather
  // than no answer at all: the port is bound before the database and the services start.
  const server = createServer(answerStarting);
  server.on("clientError", answerMalformed);
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(
        new GatewayListenError(
          err.code === "EADDRINUSE"
            ? `the gateway cannot listen on ${host}:${port}: the port is in use (another npm start?); set PORT to a free one`
            : `the gateway cannot listen on ${host}:${port}: ${err.message}`,
        ),
      ),
    );
    server.listen(port, host, () => resolve());
  });
  return server;
}

/** The answer until the gateway takes the port over: 503, try again in a moment. */
export function answerStarting(req: IncomingMessage, res: ServerResponse): void {
  req.resume();
  res.writeHead(503, { "Content-Type": "application/problem+json", "Retry-After": "1" });
  res.end(JSON.stringify(problem(503, "the system is starting; try again in a moment", req.url)));
}

/**
 * A request that Node's HTTP parser refuses (a character HTTP forbids in a header, headers past
 * the size limit, a malformed request line, conflicting framing) never reaches the gateway, and
 * Node would answer it with a bare 400 and no body. It gets a problem that says what was wrong,
 * and the connection closes. When the bad bytes follow a whole request pipelined before them on
 * the same connection, that request's answer goes out first, so the problem is not taken for it.
 * When they are in the body of the request being answered (a chunk size that is not hex), the
 * problem is that request's answer, sent at once, as Node does (its handler would otherwise wait
 * for a body that never ends); a response already begun cannot be amended, and the connection
 * is only closed.
 */
export function answerMalformed(err: Error & { code?: string; reason?: string }, socket: Socket): void {
  if (err.code === "ECONNRESET" || !socket.writable) {
    socket.destroy();
    return;
  }
  // the response in flight on this socket, where Node keeps it (its own handler looks there too)
  const inFlight = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
  if (inFlight && !inFlight.writableFinished) {
    if (inFlight.req.complete) {
      inFlight.once("finish", () => answerMalformed(err, socket));
      inFlight.once("close", () => inFlight.writableFinished || socket.destroy());
      return;
    }
    if (inFlight.headersSent) {
      socket.destroy();
      return;
    }
  }
  const p =
    err.code === "HPE_HEADER_OVERFLOW"
      ? problem(431, `the request's headers are larger than the ${Math.floor(maxHeaderSize / 1024)} KiB the server accepts`)
      : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? problem(408, "the request did not arrive in full in time")
        : problem(400, `the request is not valid HTTP/1.1: ${(err.reason ?? err.message).toLowerCase()}`);
  const body = JSON.stringify(p);
  socket.end(
    `HTTP/1.1 ${p.status} ${p.title}\r\nContent-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
  // the server's sockets stay half open after end(); this one is done once the answer is out
  socket.destroySoon();
}
