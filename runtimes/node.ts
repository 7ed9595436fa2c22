/**
 * The tests under another Node than the one that built the package (CI: Node 22 and 24; the
 * build's own run is under the `node` on the PATH), on the built npm package: `node --test` on
 * the compiled files of `npm/esm/tests/` against `npm/esm/`, one file at a time, by the build's
 * own runner (`scripts/npm_package/node_tests.ts`: the same reporter, the same refusals of a run
 * that failed, registered no test in a file, or skipped PostgreSQL under `REQUIRE_POSTGRES=1`).
 *
 * By default it runs the set of `runtimes/files.ts` (the conformance suites on every backend,
 * the broker on this Node's global WebSocket, the package's loading); `--all` runs every test
 * file. The chosen Node comes first on the PATH of the tests, for the processes they start.
 *
 * Usage, after `deno task build:npm`:
 * `NODE=path/to/node deno task test:node [--all] [--summary FILE]` (`NODE` defaults to `node`
 * on the PATH; `--summary` writes the run's JSON summary for CI's closing count).
 *
 * @module
 */

import process from "node:process";
import { runNodeTests } from "../scripts/npm_package/node_tests.ts";
import { allTestFiles, RUNTIME_FILES } from "./files.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const NPM_DIR = `${ROOT}/npm`;
/** A single test fails after this. */
const TEST_TIMEOUT_MS = 2 * 60_000;
/** The whole run fails after this (an open handle can keep a file alive). */
const RUN_TIMEOUT_MS = 4 * 60_000;
const ALL_TIMEOUT_MS = 8 * 60_000;

async function main(args: string[]): Promise<number> {
  const all = args.includes("--all");
  const summaryAt = args.indexOf("--summary");
  const summaryPath = summaryAt >= 0 ? args[summaryAt + 1] : undefined;
  const unknown = args.filter((arg, i) =>
    arg !== "--all" && i !== summaryAt && i !== summaryAt + 1
  );
  if (unknown.length > 0 || (summaryAt >= 0 && summaryPath === undefined)) {
    console.error("usage: deno run --allow-all runtimes/node.ts [--all] [--summary FILE]");
    return 64;
  }
  const node = process.env.NODE || "node";
  const probe = await new Deno.Command(node, {
    args: ["-p", "process.version + ' ' + process.execPath"],
    stdout: "piped",
  }).output().catch(() => undefined);
  if (probe === undefined || !probe.success) {
    console.error(`runtimes/node.ts: cannot run ${node}: set NODE to a node binary`);
    return 69;
  }
  const [version, execPath] = new TextDecoder().decode(probe.stdout).trim().split(" ");
  const files = (all ? allTestFiles(`${NPM_DIR}/esm/tests`) : RUNTIME_FILES)
    .map((file) => `esm/tests/${file}`);
  console.log(`Node ${version} (${execPath}), on npm/esm/tests: ${files.length} files`);
  try {
    await runNodeTests({
      npmDir: NPM_DIR,
      files,
      timeoutMs: all ? ALL_TIMEOUT_MS : RUN_TIMEOUT_MS,
      testTimeoutMs: TEST_TIMEOUT_MS,
      requirePostgres: process.env.REQUIRE_POSTGRES === "1",
      node: execPath,
      env: { PATH: `${execPath.slice(0, execPath.lastIndexOf("/"))}:${process.env.PATH ?? ""}` },
      label: `Node ${version}`,
      // Not $NODE_TEST_SUMMARY: that is the build's run.
      summaryPath: summaryPath ?? "",
    });
  } catch (error) {
    console.error(`\nThe tests under Node ${version} failed: ${(error as Error).message}`);
    return 1;
  }
  console.log(`The tests under Node ${version} passed.`);
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
