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
    return { name, pid, cpu_s: stat.cpu_s, peak_rss_mb: Math.round((hwm / 1024) * 10) / 10 };
  } catch {
    return { name, pid, cpu_s: 0, peak_rss_mb: 0 };
  }
}

/** This process's own figures, from Node (the load generator). */
export function ownStats(name: string): ProcessStats {
  const u = process.cpuUsage();
  return { name, pid: process.pid, cpu_s: (u.user + u.system) / 1e6, peak_rss_mb: Math.round((process.resourceUsage().maxRSS / 1024) * 10) / 10 };
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
