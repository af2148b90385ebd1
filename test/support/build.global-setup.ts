import { execFileSync } from "node:child_process";

/**
 * Builds dist/ once before the tests, so the service processes the multi-process tests start
 * run compiled JavaScript (services/cluster.ts), as `npm start` does, instead of each loading
 * the sources through tsx.
 */
export default function setup(): void {
  execFileSync("npx", ["tsc", "-p", "tsconfig.build.json"], { stdio: "inherit" });
  process.env.SPAWN_COMPILED = "1";
}
