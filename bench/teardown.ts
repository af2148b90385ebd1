/**
 * What must not outlive the bench: each running system's processes, its broker namespace and its
 * database, and the floor's. Each registers its clean-up while it exists; when the bench has to
 * leave before its cells end (SIGTERM, as `timeout` or a CI runner sends, or a second Ctrl-C),
 * `teardown` runs whatever is still registered, so no process keeps running and no database,
 * stream, queue or exchange stays behind.
 */

type CleanUp = () => Promise<void>;

/** Registered clean-ups, oldest first. */
const pending: CleanUp[] = [];

/**
 * Registers `cleanUp` and returns the function that runs it: once, however often it is called
 * and by whom (its owner in its own course, or `teardown`), after which it is no longer registered.
 */
export function cleanUpOnLeaving(cleanUp: CleanUp): CleanUp {
  let running: Promise<void> | undefined;
  const run: CleanUp = () =>
    (running ??= (async () => {
      try {
        await cleanUp();
      } finally {
        const i = pending.indexOf(run);
        if (i >= 0) pending.splice(i, 1);
      }
    })());
  pending.push(run);
  return run;
}

/**
 * Runs every clean-up still registered, newest first (a system before the database it runs on),
 * one after the other; a failure is reported and the rest still run.
 */
export async function teardown(report: (line: string) => void): Promise<void> {
  while (pending.length > 0) {
    const run = pending[pending.length - 1]!;
    try {
      await run(); // takes itself out of `pending`, whether it succeeds or not
    } catch (err) {
      report(`clean-up failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}
