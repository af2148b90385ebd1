import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";

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
  res.end(
    JSON.stringify({ type: "about:blank", title: "Service Unavailable", status: 503, detail: "the system is starting; try again in a moment", instance: req.url }),
  );
}
