import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";

/**
 * A bench cell's embedded database is removed when its system is released, even when the bench
 * is inspecting it at that moment (its teardown on SIGTERM runs beside the cell's own course):
 * PGlite, its directory removed under an open handle or before a handle opens it, makes its
 * files again, and that directory would outlive the bench.
 */

// the build's (dist/ is built before every test run): it starts the build's services
const { SystemUnderTest } = (await import(path.resolve(import.meta.dirname, "../dist/bench/system-under-test.js"))) as typeof import("../bench/system-under-test.js");
const logDir = fs.mkdtempSync(path.join(os.tmpdir(), "saga-bench-sut-"));
afterAll(() => fs.rmSync(logDir, { recursive: true, force: true }));

const start = (port: number) =>
  SystemUnderTest.start({ mode: "orchestrated", transport: "memory", topology: "single", port, env: { OTEL_TRACES_EXPORTER: "none" }, logDir: path.join(logDir, String(port)) });

describe("a cell's embedded database released while the bench inspects it", () => {
  it("goes once the inspection that opened it first has closed it", async () => {
    const sut = await start(18395);
    const dir = sut.database.pgliteDir!;
    await sut.stop();
    const db = await sut.openDatabase();
    const released = sut.dispose();
    // the inspection still reads while the release waits for it
    const { rows } = await db.pool.query("SELECT count(*)::int AS n FROM warehouse.stock");
    expect(rows[0].n).toBeGreaterThan(0);
    await db.close();
    await released;
    expect(fs.existsSync(dir)).toBe(false);
  }, 120_000);

  it("refuses an inspection that comes once the release has begun, and leaves no directory", async () => {
    const sut = await start(18396);
    const dir = sut.database.pgliteDir!;
    const released = sut.dispose();
    await expect(sut.openDatabase()).rejects.toThrow(/database is being removed/);
    await released;
    expect(fs.existsSync(dir)).toBe(false);
  }, 120_000);
});
