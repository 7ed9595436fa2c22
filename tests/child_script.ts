/**
 * How a test starts one of its scripts as an OS process, under the runtime it runs on: `deno run`
 * on the `.ts` sources, `node` on the compiled `.js` copy of the npm build.
 */

import process from "node:process";
import { fileURLToPath } from "node:url";

const isDeno = typeof (globalThis as { Deno?: unknown }).Deno !== "undefined";
/** `.ts` on the sources, `.js` in the compiled package. */
const extension = import.meta.url.endsWith(".ts") ? ".ts" : ".js";

/** The command and arguments that run `tests/<script>` (no extension) with `args`. */
export function scriptCommand(script: string, args: string[]): { command: string; args: string[] } {
  const path = fileURLToPath(new URL(`./${script}${extension}`, import.meta.url));
  return {
    command: process.execPath,
    args: isDeno ? ["run", "--allow-all", path, ...args] : [path, ...args],
  };
}
