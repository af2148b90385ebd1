import { execFile } from "node:child_process";
import { accessSync, constants, existsSync, mkdirSync, openAsBlob, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

/**
 * A new embedded database starts as a copy of a freshly initialised PGlite cluster instead of
 * running PGlite's initdb each time. The copy is PGlite's own dump of a cluster nobody has used
 * (`dumpDataDir`): no schema, no data, so the migration runs on it as on a new cluster and each
 * database gets its own identity. It is made once per PGlite version, by a short-lived child
 * process, and kept as a file in `node_modules/.cache/saga-bench/` (or the system's temporary
 * directory where that is not writable). Opening a new database, on a 2-vCPU machine where a
 * durable commit took 0.9–1.9 ms: a directory 6.6 s → 3.4 s, in memory 3.6 s → 1.3 s; making
 * the template, once, 7–8.5 s (README: Design decisions).
 */

const PGLITE_ENTRY = fileURLToPath(import.meta.resolve("@electric-sql/pglite"));

/** The installed PGlite's version: a copy made by another version is never loaded. */
let installedVersion: string | undefined;
function pgliteVersion(): string {
  return (installedVersion ??= readPgliteVersion());
}

function readPgliteVersion(): string {
  for (let dir = path.dirname(PGLITE_ENTRY); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const manifest = path.join(dir, "package.json");
    if (!existsSync(manifest)) continue;
    const { name, version } = JSON.parse(readFileSync(manifest, "utf8")) as { name?: string; version?: string };
    if (name === "@electric-sql/pglite" && version) return version;
  }
  throw new Error(`cannot find the version of PGlite installed at ${PGLITE_ENTRY}`);
}

/** The first of the cache directories this process may write to. */
function cacheDirectory(): string {
  const at = PGLITE_ENTRY.lastIndexOf(`${path.sep}node_modules${path.sep}`);
  const candidates = [path.join(os.tmpdir(), `saga-bench-${os.userInfo().uid}`)];
  if (at >= 0) candidates.unshift(path.join(PGLITE_ENTRY.slice(0, at), "node_modules", ".cache", "saga-bench"));
  for (const dir of candidates) {
    try {
      mkdirSync(dir, { recursive: true });
      accessSync(dir, constants.W_OK);
      return dir;
    } catch {
      // the next one
    }
  }
  throw new Error("no writable directory for the embedded database's template");
}

/**
 * The template's file: this PGlite version's, in the first writable cache directory. The
 * directory is made again at each use (one system call when it is there): it may have been
 * removed since the last.
 */
const templateFile = () => path.join(cacheDirectory(), `pglite-${pgliteVersion()}-cluster.tar`);

/**
 * Runs, in a short-lived child process, whatever of this is still to do: make the template (a
 * dump of a new cluster, written to a file of the child's own and linked into place only if no
 * template is there yet: processes starting together each make one, the first to land stays,
 * and no reader sees half a file or one replaced under it), then, given a directory, unpack it
 * there. The child's memory goes with it: unpacking in the system's own process left it 80 MB
 * larger after the database had started.
 */
async function inChild(file: string, dir?: string): Promise<void> {
  const script = `import { PGlite } from ${JSON.stringify(import.meta.resolve("@electric-sql/pglite"))};
    import { existsSync, linkSync, openAsBlob, unlinkSync, writeFileSync } from "node:fs";
    const file = ${JSON.stringify(file)}, dir = ${JSON.stringify(dir ?? null)};
    if (!existsSync(file)) {
      const db = await PGlite.create();
      const dump = await db.dumpDataDir("none");
      await db.close();
      const part = file + "." + process.pid + ".part";
      writeFileSync(part, Buffer.from(await dump.arrayBuffer()), { mode: 0o600 });
      try { linkSync(part, file); } catch (err) { if (err.code !== "EEXIST") throw err; } finally { unlinkSync(part); }
    }
    if (dir) await (await PGlite.create(dir, { loadDataDir: await openAsBlob(file) })).close();`;
  try {
    await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script], { maxBuffer: 1 << 20 });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new Error(`could not create the embedded database${dir ? ` in ${dir}` : ""}: ${stderr || String(err)}`);
  }
}

/** Gives a directory without a cluster one, from the template; a directory that has one is left alone. */
export async function initializeDirectory(dir: string): Promise<void> {
  if (!existsSync(path.join(dir, "PG_VERSION"))) await inChild(templateFile(), dir);
}

/** The template, for a new database in memory (which only this process can unpack). */
export async function pristineCluster(): Promise<Blob> {
  const file = templateFile();
  if (!existsSync(file)) await inChild(file);
  // read by PGlite as it unpacks it, not copied into memory first
  return openAsBlob(file);
}
