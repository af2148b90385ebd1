import { execFileSync } from "node:child_process";
import amqp from "amqplib";
import { connect } from "nats";

/**
 * Removes what a test system left on a shared broker: its JetStream streams (NATS) or its
 * queues and exchanges (RabbitMQ), all named after the system's namespace. Without this, every
 * run leaves a few dozen behind, and a broker holding thousands recovers slowly on restart.
 */
export async function removeNamespace(transporterUrl: string, namespace: string): Promise<void> {
  if (transporterUrl.startsWith("nats://")) await removeNatsStreams(transporterUrl, (name) => name.startsWith(`${namespace}_`));
  if (transporterUrl.startsWith("amqp://")) await removeAmqpObjects(transporterUrl, (name) => name.includes(namespace));
}

export async function removeNatsStreams(url: string, match: (stream: string) => boolean): Promise<number> {
  const nc = await connect({ servers: url });
  try {
    const jsm = await nc.jetstreamManager();
    const names: string[] = [];
    for await (const s of jsm.streams.list()) if (match(s.config.name)) names.push(s.config.name);
    for (const name of names) await jsm.streams.delete(name);
    return names.length;
  } finally {
    await nc.close();
  }
}

function rabbitList(what: "list_queues" | "list_exchanges"): string[] {
  try {
    return execFileSync("rabbitmqctl", ["-q", what, "name"], { encoding: "utf8", timeout: 30_000 })
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l && l !== "name");
  } catch {
    return []; // no rabbitmqctl here (a remote broker): nothing we can list
  }
}

export async function removeAmqpObjects(url: string, match: (name: string) => boolean): Promise<number> {
  const queues = rabbitList("list_queues").filter(match);
  const exchanges = rabbitList("list_exchanges").filter(match);
  if (queues.length + exchanges.length === 0) return 0;
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createChannel();
    for (const q of queues) await channel.deleteQueue(q);
    for (const x of exchanges) await channel.deleteExchange(x);
    await channel.close();
  } finally {
    await connection.close();
  }
  return queues.length + exchanges.length;
}
