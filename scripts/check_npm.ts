/**
 * Runs the packaging checks on an `npm/` directory that `deno task build:npm` built: the export
 * maps agree, `npm pack` lists only the package, publint and "Are the Types Wrong?" report
 * nothing, and a scratch project can install, import, require and type-check it.
 *
 * Usage: `deno task check:npm`.
 *
 * @module
 */

import { checkPackage } from "./npm_package/checks.ts";
import { readDenoConfig } from "./npm_package/config.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

if (import.meta.main) {
  try {
    await checkPackage(await readDenoConfig(ROOT), `${ROOT}/npm`);
  } catch (error) {
    console.error(`\ncheck:npm failed: ${error instanceof Error ? error.message : error}`);
    Deno.exit(1);
  }
}
