/**
 * Writes `cli/version.ts` from the version in `deno.json`, the one place it is written: the
 * `shared-state --version` of JSR (sources as they are) and npm (compiled) alike reads it from
 * there (issue 11). `--check` only fails when the file is out of date (part of `deno task check`).
 *
 * Usage: `deno task version [--check]`.
 *
 * @module
 */

import { readDenoConfig } from "./npm_package/config.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const TARGET = `${ROOT}/cli/version.ts`;

/** The text of `cli/version.ts` for `version`. */
export function versionModule(version: string): string {
  return [
    "// Generated from deno.json by `deno task version`; do not edit.",
    "",
    "/** The version of this package, as in `deno.json`. */",
    `export const VERSION: string = ${JSON.stringify(version)};`,
    "",
  ].join("\n");
}

async function main(args: string[]): Promise<void> {
  const unknown = args.filter((arg) => arg !== "--check");
  if (unknown.length > 0) throw new Error(`unknown arguments: ${unknown.join(" ")}`);
  const { version } = await readDenoConfig(ROOT);
  const wanted = versionModule(version);
  const current = await Deno.readTextFile(TARGET).catch(() => "");
  if (current === wanted) return;
  if (args.includes("--check")) {
    throw new Error(
      `cli/version.ts does not say ${version} (deno.json): run \`deno task version\``,
    );
  }
  await Deno.writeTextFile(TARGET, wanted);
  console.log(`cli/version.ts: ${version}`);
}

if (import.meta.main) {
  try {
    await main(Deno.args);
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
    Deno.exit(1);
  }
}
