import net from "node:net";

/** True when host:port of `url` accepts a TCP connection within a second. */
export function reachable(url: string): Promise<boolean> {
  const u = new URL(url);
  const port = Number(u.port) || ({ "nats:": 4222, "amqp:": 5672, "postgres:": 5432, "postgresql:": 5432 } as Record<string, number>)[u.protocol];
  return new Promise((resolve) => {
    const socket = net.connect({ host: u.hostname, port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.setTimeout(1_000, () => {
      socket.destroy();
      resolve(false);
    });
    socket.on("error", () => resolve(false));
  });
}
