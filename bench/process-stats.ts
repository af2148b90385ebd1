import fs from "node:fs";
import { execFileSync } from "node:child_process";
import pg from "pg";

export interface ProcessStats {
  name: string;
  pid: number;
  /** User + system CPU seconds since the process started. */
  cpu_s: number;
  /** Peak resident set size (VmHWM), MB. */
  peak_rss_mb: number;
  /** The scheduler's account of the main thread (a Node process's JavaScript thread); absent where /proc does not give it. */
  thread?: ThreadSched;
}

/** A thread's time on a core and waiting runnable for one, in seconds, and its preemptions, since it started. */
export interface ThreadSched {
  run_s: number;
  wait_s: number;
  preempted: number;
}

/**
 * The main thread's line of /proc/<pid>/task/<pid>/schedstat (nanoseconds on a core, nanoseconds
 * runnable but waiting for one, time slices) and its involuntary context switches (a woken task
 * or the end of its slice took its core); undefined where Linux does not keep them.
 */
export function readThreadSched(pid: number): ThreadSched | undefined {
  try {
    const [run, wait] = fs.readFileSync(`/proc/${pid}/task/${pid}/schedstat`, "utf8").trim().split(/\s+/).map(Number);
    const preempted = Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/task/${pid}/status`, "utf8"))?.[1]);
    if (![run, wait, preempted].every(Number.isFinite)) return undefined;
    return { run_s: run! / 1e9, wait_s: wait! / 1e9, preempted };
  } catch {
    return undefined;
  }
}

/** One process over a measured window: its CPU, its peak memory and what its main thread did. */
export interface ProcessWindow {
  name: string;
  cpu_s: number;
  peak_rss_mb: number;
  /**
   * Shares of the window the main thread spent on a core and runnable waiting for one, and its
   * preemptions per second; absent where /proc did not give them (and in results of older runs).
   */
  main_thread?: { running: number; waiting: number; preempted_per_s: number };
}

/** Each process's figures between two readings `windowS` seconds apart (matched by name). */
export function processesBetween(before: ProcessStats[], after: ProcessStats[], windowS: number): ProcessWindow[] {
  const r2 = (x: number) => Math.round(x * 100) / 100;
  return after.map((a) => {
    const b = before.find((x) => x.name === a.name);
    const t0 = b?.thread;
    const t1 = a.thread;
    return {
      name: a.name,
      cpu_s: r2(a.cpu_s - (b?.cpu_s ?? 0)),
      peak_rss_mb: a.peak_rss_mb,
      ...(t0 && t1 && windowS > 0
        ? {
            main_thread: {
              running: Math.round(((t1.run_s - t0.run_s) / windowS) * 1000) / 1000,
              waiting: Math.round(((t1.wait_s - t0.wait_s) / windowS) * 1000) / 1000,
              preempted_per_s: Math.round((t1.preempted - t0.preempted) / windowS),
            },
          }
        : {}),
    };
  });
}

let ticks: number | undefined;
function clockTicks(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

/** Reads /proc/<pid>/stat and status (Linux); zeros where /proc is not there. */
export function readProcessStats(name: string, pid: number): ProcessStats {
  const stat = procStat(pid);
  if (!stat) return { name, pid, cpu_s: 0, peak_rss_mb: 0 };
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0);
    return { name, pid, cpu_s: stat.cpu_s, peak_rss_mb: Math.round((hwm / 1024) * 10) / 10, thread: readThreadSched(pid) };
  } catch {
    return { name, pid, cpu_s: 0, peak_rss_mb: 0 };
  }
}

/** This process's own figures, from Node (the load generator). */
export function ownStats(name: string): ProcessStats {
  const u = process.cpuUsage();
  return {
    name,
    pid: process.pid,
    cpu_s: (u.user + u.system) / 1e6,
    peak_rss_mb: Math.round((process.resourceUsage().maxRSS / 1024) * 10) / 10,
    thread: readThreadSched(process.pid),
  };
}

/** CPU seconds so far of each PostgreSQL backend serving one database, by pid. */
export type BackendCpu = Map<number, number>;

const LOCAL_HOSTS = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);

/** Whether the server `databaseUrl` names runs on this machine (loopback, or a Unix socket). */
export function onThisMachine(databaseUrl: string): boolean {
  const url = new URL(databaseUrl);
  const socket = url.searchParams.get("host");
  if (socket) return socket.startsWith("/");
  // a socket directory may also stand in the host, percent-encoded (postgresql://u@%2Fvar%2Frun%2Fpostgresql/db)
  if (decodeURIComponent(url.hostname).startsWith("/")) return true;
  return url.hostname === "" || LOCAL_HOSTS.has(url.hostname);
}

/**
 * The CPU of the PostgreSQL backends serving `databaseUrl`'s database (as pg_stat_activity
 * lists them, this reader's own connection left out), read from /proc: the database's share of
 * a saga's cost, which the system's processes do not show. Null when the server is not on this
 * machine or /proc does not show its processes.
 */
export async function readBackendCpu(databaseUrl: string): Promise<BackendCpu | null> {
  if (!onThisMachine(databaseUrl)) return null;
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    const cpu: BackendCpu = new Map();
    for (const { pid } of rows) {
      const stat = procStat(pid);
      if (!stat) continue; // ended since, or not ours to see
      if (stat.comm !== "postgres") return null; // a pid of another machine's server
      cpu.set(pid, stat.cpu_s);
    }
    return cpu;
  } finally {
    await client.end();
  }
}

/**
 * The backends' CPU seconds between two readings: a backend that started since counts from zero,
 * one that ended since is not counted (the system's pools keep their connections open).
 */
export function backendCpuBetween(before: BackendCpu | null, after: BackendCpu | null): number | null {
  if (!before || !after) return null;
  let total = 0;
  for (const [pid, cpu] of after) total += cpu - (before.get(pid) ?? 0);
  return Math.round(total * 100) / 100;
}

/**
 * The server's WAL insert position in bytes: two readings around a window give the write-ahead
 * log written in it, a cost of the writes that does not depend on the machine's speed (every row,
 * index entry and commit record). The position is the server's, so writes to its other databases
 * in the window count too. Null where the server cannot say (a standby, or no connection).
 */
export async function readWalPosition(databaseUrl: string): Promise<number | null> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ bytes: string }>("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::text AS bytes");
    return Number(rows[0]!.bytes);
  } catch {
    return null;
  } finally {
    await client.end();
  }
}

/** WAL bytes between two positions; null when either is unknown. */
export const walBetween = (before: number | null, after: number | null): number | null =>
  before === null || after === null ? null : Math.max(0, after - before);

/** The process of a broker on this machine, found by the port it listens on. */
export interface BrokerCpu {
  pid: number;
  cpu_s: number;
}

const DEFAULT_PORTS: Record<string, number> = { "nats:": 4222, "amqp:": 5672, "amqps:": 5671 };
/** Command names of the brokers' server processes; anything else on the port (a container's port proxy, say) is not the broker. */
const BROKER_COMMANDS = new Set(["nats-server", "gnatsd", "beam.smp", "beam"]);

/**
 * The CPU seconds so far of the broker `transporterUrl` names (the process listening on its
 * port: nats-server, RabbitMQ's beam.smp), its share of a saga's cost, which neither the system's
 * processes nor PostgreSQL's show. Null when the broker is not on this machine or /proc does not
 * show the listening process (another user's, without the right to see its sockets), or what
 * listens is not a broker's server (the port proxy of a broker in a container).
 */
export function readBrokerCpu(transporterUrl: string): BrokerCpu | null {
  const url = new URL(transporterUrl);
  if (url.hostname !== "" && !LOCAL_HOSTS.has(url.hostname)) return null;
  const port = url.port ? Number(url.port) : DEFAULT_PORTS[url.protocol];
  if (!port) return null;
  const pid = listeningPid(port);
  const stat = pid === null ? null : procStat(pid);
  return pid === null || !stat || !BROKER_COMMANDS.has(stat.comm) ? null : { pid, cpu_s: stat.cpu_s };
}

/** The broker's CPU seconds between two readings; null unless both found the same process. */
export function brokerCpuBetween(before: BrokerCpu | null, after: BrokerCpu | null): number | null {
  if (!before || !after || before.pid !== after.pid) return null;
  return Math.round((after.cpu_s - before.cpu_s) * 100) / 100;
}

/** The pid of the process listening on TCP `port` (IPv4 or IPv6) on this machine, from /proc; null where it cannot be seen. */
export function listeningPid(port: number): number | null {
  const inodes = new Set<string>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = fs.readFileSync(table, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      // local address "ADDR:PORT" in hex, state 0A = LISTEN, inode in field 10
      if (f.length > 9 && f[3] === "0A" && parseInt(f[1]!.split(":").pop()!, 16) === port) inodes.add(`socket:[${f[9]}]`);
    }
  }
  if (inodes.size === 0) return null;
  let pids: string[];
  try {
    pids = fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d));
  } catch {
    return null;
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone, or not ours to see
    }
    for (const fd of fds) {
      try {
        if (inodes.has(fs.readlinkSync(`/proc/${pid}/fd/${fd}`))) return Number(pid);
      } catch {
        // closed since
      }
    }
  }
  return null;
}

/** User + system CPU seconds of a process, and its command name, from /proc/<pid>/stat. */
function procStat(pid: number): { comm: string; cpu_s: number } | null {
  try {
    // the command name (field 2) may hold spaces: count fields after its closing parenthesis
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { comm, cpu_s: (Number(fields[11]) + Number(fields[12])) / clockTicks() };
  } catch {
    return null;
  }
}
