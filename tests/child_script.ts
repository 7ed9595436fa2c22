/**
 * How a test starts one of its scripts as an OS process, under the runtime it runs on: `deno run`
 * on the `.ts` sources, `node` (or `bun`) on the compiled `.js` copy of the npm build.
 */

import process from "node:process";
import { fileURLToPath } from "node:url";

const isDeno = typeof (globalThis as { Deno?: unknown }).Deno !== "undefined";
/** Bun runs the compiled copy (docs/runtimes.md), with `bun test` as its test runner. */
const isBun = (process.versions as { bun?: string }).bun !== undefined;
/** `.ts` on the sources, `.js` in the compiled package. */
const extension = import.meta.url.endsWith(".ts") ? ".ts" : ".js";

function scriptPath(script: string): string {
  return fileURLToPath(new URL(`./${script}${extension}`, import.meta.url));
}

/** The command and arguments that run `tests/<script>` (no extension) with `args`. */
export function scriptCommand(script: string, args: string[]): { command: string; args: string[] } {
  const path = scriptPath(script);
  return {
    command: process.execPath,
    args: isDeno ? ["run", "--allow-all", path, ...args] : [path, ...args],
  };
}

/**
 * The command and arguments that run the `shared-state` command line with `args`: `deno run` on
 * `cli.ts`, `node` on the compiled `cli.js` (the npm bin).
 */
export function cliCommand(args: string[]): { command: string; args: string[] } {
  const path = fileURLToPath(new URL(`../cli${extension}`, import.meta.url));
  return {
    command: process.execPath,
    args: isDeno ? ["run", "--allow-all", path, ...args] : [path, ...args],
  };
}

/**
 * The command and arguments that run the `node:test` tests of `tests/<script>` (no extension):
 * `deno test` on the sources, `node --test` with the `spec` reporter on the compiled copy, or
 * `bun test` on it under Bun. Each prints a line per test that names it and says whether it
 * passed (`ok`/`✔`/`(pass)`) or failed (`FAILED`/`✖`/`(fail)`), and exits non-zero when a test
 * failed.
 */
export function testScriptCommand(script: string): { command: string; args: string[] } {
  const path = scriptPath(script);
  let args: string[];
  if (isDeno) args = ["test", "--allow-all", "--no-check", path];
  else if (isBun) args = ["test", "--timeout", "60000", path];
  else args = ["--test", "--test-reporter=spec", path];
  return { command: process.execPath, args };
}
