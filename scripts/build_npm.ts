/**
 * Builds the npm package in `npm/` from the same sources JSR publishes, then tests it under Node
 * and checks the packaging: what `@deno/dnt` would do, with packages from npm only.
 *
 * 1. `package.json` from `deno.json` (name, version, license, exports) and the module graph
 *    (packages the main entry point imports are dependencies, packages only other entry points
 *    import are optional peer dependencies).
 * 2. `npm install` in `npm/`, then TypeScript compiles the entry points to `npm/esm/` (ESM, `.d.ts`,
 *    source maps) and the tests beside them, resolving packages from `npm/node_modules`; the
 *    files of `bin` get a `#!/usr/bin/env node` line.
 * 3. `node --test` runs the compiled tests (`*_test.js`) against the compiled package, and the
 *    run is refused if no test passed, a test file registered no test, or, with
 *    `REQUIRE_POSTGRES=1`, a test or suite was skipped for want of PostgreSQL.
 * 4. The packaging checks of `check_npm.ts`.
 *
 * Usage: `deno task build:npm [--skip-tests] [--skip-checks]`. `DATABASE_URL` and
 * `REQUIRE_POSTGRES` reach the Node tests unchanged.
 *
 * @module
 */

import { readDenoConfig } from "./npm_package/config.ts";
import { compile } from "./npm_package/compile.ts";
import { reach, tsFilesUnder } from "./npm_package/graph.ts";
import { buildManifest, moduleSummary, OUT_DIR } from "./npm_package/manifest.ts";
import { makeExecutable } from "./npm_package/bin.ts";
import { checkPackage } from "./npm_package/checks.ts";
import { runNodeTests } from "./npm_package/node_tests.ts";
import { runOk, step } from "./npm_package/run.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const NPM_DIR = `${ROOT}/npm`;
const TESTS_DIR = `${ROOT}/tests`;
/** The Node test run fails if it takes longer (an open handle can keep `node --test` alive). */
const NODE_RUN_TIMEOUT_MS = 6 * 60_000;
/** A single Node test, or a test file that does not end (an open handle), fails after this. */
const NODE_TEST_TIMEOUT_MS = 2 * 60_000;
/** Files copied as they are. */
const COPIED = ["README.md", "LICENSE"];

const message = (error: unknown) => error instanceof Error ? error.message : String(error);
const relative = (path: string) => path.slice(ROOT.length + 1);
const absolute = (path: string) => `${ROOT}/${path.replace(/^\.\//, "")}`;

/** Empties `npm/` but keeps its `node_modules`, so that `npm install` is quick next time. */
async function clean(): Promise<void> {
  await Deno.mkdir(NPM_DIR, { recursive: true });
  for await (const entry of Deno.readDir(NPM_DIR)) {
    if (entry.name !== "node_modules") {
      await Deno.remove(`${NPM_DIR}/${entry.name}`, { recursive: true });
    }
  }
}

/** Copies the files in `tests/` that are not TypeScript (fixtures) beside the compiled tests. */
async function copyTestFixtures(dir: string): Promise<void> {
  try {
    for await (const entry of Deno.readDir(dir)) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory && entry.name !== "node_modules") await copyTestFixtures(path);
      else if (entry.isFile && !/\.m?ts$/.test(entry.name)) {
        const target = `${NPM_DIR}/${OUT_DIR}/${relative(path)}`;
        await Deno.mkdir(target.slice(0, target.lastIndexOf("/")), { recursive: true });
        await Deno.copyFile(path, target);
      }
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

async function main(args: string[]): Promise<void> {
  const unknown = args.filter((arg) => !["--skip-tests", "--skip-checks"].includes(arg));
  if (unknown.length > 0) throw new Error(`unknown arguments: ${unknown.join(" ")}`);
  const started = performance.now();
  const config = await readDenoConfig(ROOT);
  const entries = Object.entries(config.exports).map(([name, path]) => [name, absolute(path)]);
  for (const [name, path] of entries) {
    try {
      await Deno.stat(path);
    } catch {
      throw new Error(`deno.json exports ${name} from ${relative(path)}, which does not exist`);
    }
  }
  const mainEntry = entries.find(([name]) => name === ".")![1];
  const otherEntries = entries.filter(([name]) => name !== ".").map(([, path]) => path);
  const tests = await tsFilesUnder(TESTS_DIR);

  const manifest = await step("package.json from deno.json", async () => {
    const [mainReach, otherReach, testReach] = await Promise.all([
      reach([mainEntry]),
      reach(otherEntries),
      reach(tests),
    ]);
    const manifest = buildManifest({
      config,
      description: moduleSummary(await Deno.readTextFile(mainEntry)),
      mainImports: mainReach.external,
      optionalImports: otherReach.external,
      testImports: testReach.external,
      packageFiles: [...mainReach.files, ...otherReach.files].map(relative),
    });
    await clean();
    await Deno.writeTextFile(`${NPM_DIR}/package.json`, JSON.stringify(manifest, null, 2) + "\n");
    for (const file of COPIED) await Deno.copyFile(`${ROOT}/${file}`, `${NPM_DIR}/${file}`);
    return manifest;
  });

  await step("npm install (dependencies, optional peers and test packages)", () =>
    runOk("npm", [
      "install",
      "--no-package-lock",
      "--no-audit",
      "--no-fund",
      "--prefer-offline",
      "--loglevel=error",
    ], { cwd: NPM_DIR }));

  await step(`compile to npm/${OUT_DIR} (tsc: ESM, declarations, source maps)`, async () => {
    const packageFiles = compile({
      root: ROOT,
      outDir: `${NPM_DIR}/${OUT_DIR}`,
      packagesDir: NPM_DIR,
      entryPoints: entries.map(([, path]) => path),
      tests,
    });
    // The graph walk and the compiler must agree on what the package is made of.
    const listed = new Set(manifest.files);
    const missing = packageFiles.filter((file) =>
      !listed.has(`${OUT_DIR}/${relative(file).replace(/\.m?ts$/, ".js")}`)
    );
    if (missing.length > 0) {
      throw new Error(`compiled but not in package.json "files": ${missing.join(", ")}`);
    }
    await copyTestFixtures(TESTS_DIR);
    for (const file of Object.values(manifest.bin ?? {})) await makeExecutable(NPM_DIR, file);
  });

  // The packaging checks run even when a Node test failed, so that one run reports both.
  let testFailure: unknown;
  if (!args.includes("--skip-tests")) {
    const compiledTests = tests
      .filter((file) => file.endsWith("_test.ts"))
      .map((file) => `${OUT_DIR}/${relative(file).replace(/\.ts$/, ".js")}`);
    await step(
      `node --test (${compiledTests.length} files, against npm/${OUT_DIR})`,
      () =>
        runNodeTests({
          npmDir: NPM_DIR,
          files: compiledTests,
          timeoutMs: NODE_RUN_TIMEOUT_MS,
          testTimeoutMs: NODE_TEST_TIMEOUT_MS,
          requirePostgres: Deno.env.get("REQUIRE_POSTGRES") === "1",
        }),
    ).catch((error) => testFailure = error);
  }

  if (!args.includes("--skip-checks")) {
    await checkPackage(config, NPM_DIR).catch((error) => {
      throw testFailure === undefined
        ? error
        : new Error(`${message(testFailure)}\n\n${message(error)}`);
    });
  }
  if (testFailure !== undefined) throw testFailure;
  console.log(`npm/ built in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

if (import.meta.main) {
  try {
    await main(Deno.args);
  } catch (error) {
    console.error(`\nbuild:npm failed: ${message(error)}`);
    Deno.exit(1);
  }
}
