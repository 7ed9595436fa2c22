/**
 * Checks what JSR will show and score, for every entry point of `deno.json` (read from its export
 * map, so a new entry point is checked without editing this file): a `@module` doc with an
 * example, `deno doc --lint` clean (every exported symbol documented), and
 * `deno publish --dry-run` clean (no slow types, no excluded module).
 *
 * Usage: `deno run --allow-all scripts/check_jsr.ts`.
 *
 * @module
 */

import { readDenoConfig } from "./npm_package/config.ts";
import { moduleDoc } from "./npm_package/manifest.ts";
import { runOk, step } from "./npm_package/run.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

async function main(): Promise<void> {
  const config = await readDenoConfig(ROOT);
  const entryPoints = Object.values(config.exports);
  await step("every entry point has a @module doc with an example", async () => {
    const problems: string[] = [];
    for (const path of entryPoints) {
      const source = await Deno.readTextFile(`${ROOT}/${path}`).catch(() => undefined);
      const doc = source === undefined ? undefined : moduleDoc(source);
      if (doc === undefined) problems.push(`${path}: exported by deno.json, but missing`);
      else if (!/^@module\b/m.test(doc)) problems.push(`${path}: no @module doc comment first`);
      else if (!/^(@example\b|```)/m.test(doc)) {
        problems.push(`${path}: its @module doc has no example`);
      }
    }
    if (problems.length > 0) throw new Error(problems.join("\n"));
  });
  const deno = Deno.execPath();
  await step(
    `deno doc --lint ${entryPoints.join(" ")}`,
    () => runOk(deno, ["doc", "--lint", ...entryPoints], { cwd: ROOT }),
  );
  await step(
    "deno publish --dry-run",
    () => runOk(deno, ["publish", "--dry-run", "--allow-dirty"], { cwd: ROOT }),
  );
}

if (import.meta.main) {
  try {
    await main();
  } catch (error) {
    console.error(`\ncheck_jsr failed: ${error instanceof Error ? error.message : error}`);
    Deno.exit(1);
  }
}
