import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { DatabaseLockedError, openDatabase } from "../services/database/database.js";

/**
 * Misuse at start: a second process on one embedded database is refused before it touches the
 * files, a lock left by a dead process is taken over, and a gateway that cannot listen ends its
 * process with a clear message.
 */
const root = mkdtempSync(path.join(os.tmpdir(), "saga-start-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const MAIN = fileURLToPath(new URL("../services/main.ts", import.meta.url));

describe("the embedded database's directory lock", () => {
  it("refuses a second opening while the first holds it, and frees it on close", async () => {
    const dir = path.join(root, "one");
    const first = await openDatabase({ pgliteDir: dir });
    try {
      const lock = readFileSync(path.join(dir, "saga-bench.lock"), "utf8").trim();
      expect(lock).toBe(String(process.pid));
      // refused at the lock, before PGlite is started on the directory: only the lock says this
      await expect(openDatabase({ pgliteDir: dir })).rejects.toThrow(DatabaseLockedError);
      await expect(openDatabase({ pgliteDir: dir })).rejects.toThrow(new RegExp(`in use by process ${process.pid}.*PGLITE_DIR`));
    } finally {
      await first.close();
    }
    expect(existsSync(path.join(dir, "saga-bench.lock"))).toBe(false);
    const again = await openDatabase({ pgliteDir: dir });
    await again.close();
  }, 180_000);

  it("takes over a lock whose process is gone, and says so", async () => {
    const dir = path.join(root, "stale");
    const first = await openDatabase({ pgliteDir: dir });
    await first.close();
    const gone = spawnSync(process.execPath, ["-e", "process.exit(0)"]).pid!;
    writeFileSync(path.join(dir, "saga-bench.lock"), `${gone}\n`);
    const said: string[] = [];
    const db = await openDatabase({ pgliteDir: dir, log: (l) => said.push(l) });
    try {
      expect(said.join("\n")).toMatch(new RegExp(`lock was left by process ${gone}, which is no longer running`));
      const { rows } = await db.pool.query("SELECT count(*)::int AS n FROM users.users");
      expect(rows[0].n).toBe(3);
    } finally {
      await db.close();
    }
  }, 180_000);
});

describe("a gateway that cannot listen", () => {
  it("ends its process with a clear message and a non-zero exit", async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", r));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const child = spawn(process.execPath, ["--import", "tsx", MAIN], {
        env: { ...process.env, PORT: String(port), PGLITE_DIR: "memory", LOG_LEVEL: "warn", NAMESPACE: `start${port}` },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stderr = "";
      child.stderr.on("data", (c) => (stderr += c));
      child.stdout.resume();
      const code = await new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
      expect(code).toBe(1);
      expect(stderr).toMatch(new RegExp(`the gateway cannot listen on 127.0.0.1:${port}: the port is in use`));
      // one sentence, before the database or the broker was started
      expect(stderr.trim()).toBe(`saga-bench: the gateway cannot listen on 127.0.0.1:${port}: the port is in use (another npm start?); set PORT to a free one`);
    } finally {
      blocker.close();
    }
  }, 120_000);
});
