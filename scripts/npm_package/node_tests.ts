/**
 * Runs the compiled tests under Node (`node --test`) against the compiled package, one test file
 * at a time (as `deno test` does), counts what ran, and refuses a run that tested nothing: no
 * passing test at all, a test file that registered no test, or, with `REQUIRE_POSTGRES=1`, a
 * test or suite skipped for want of the PostgreSQL server.
 *
 * @module
 */

import { run } from "./run.ts";

/** One skipped test or suite, as `node_reporter.mjs` records it. */
export interface Skipped {
  /** The test's or suite's name. */
  name: string;
  /** Whether a whole `describe` was skipped. */
  suite: boolean;
  /** The reason given, or `""`. */
  reason: string;
}

/** What ran in one test file. */
export interface FileSummary {
  /** Tests (not suites) that passed. */
  passed: number;
  /** Names of the tests (or suites, when a hook failed) that failed. */
  failed: string[];
  /** Skipped tests and suites. */
  skipped: Skipped[];
}

/** Test file (relative to `npm/`) → what ran in it. */
export type RunSummary = Record<string, FileSummary>;

/** How to run the tests. */
export interface NodeTestOptions {
  /** The `npm/` directory: the working directory, whose `node_modules` the tests resolve from. */
  npmDir: string;
  /** Compiled test files, relative to `npmDir`. */
  files: string[];
  /** Stop the whole run (and fail) once it has taken this long. */
  timeoutMs: number;
  /** Fail a single test that takes longer than this. */
  testTimeoutMs: number;
  /** `REQUIRE_POSTGRES=1`: a skipped PostgreSQL test is a failure. */
  requirePostgres: boolean;
  /** The Node binary; default `node` on the PATH. */
  node?: string;
  /** Extra environment variables of the test processes (the rest is inherited). */
  env?: Record<string, string>;
  /** What the closing count line calls this Node; default `Node`. */
  label?: string;
  /** Write the summary here as JSON (CI's closing count); default `$NODE_TEST_SUMMARY`, if set. */
  summaryPath?: string;
}

const REPORTER = new URL("./node_reporter.mjs", import.meta.url).href;

/**
 * Whether a skip is one that `REQUIRE_POSTGRES=1` forbids: its reason is the PostgreSQL server
 * (or `DATABASE_URL`), or it gives no reason in a `postgres*` test file. A test that skips for
 * want of something else (a pooler at `POOLER_URL`) is listed, not refused.
 */
function isPostgresSkip(file: string, skipped: Skipped): boolean {
  if (/postgres|DATABASE_URL/i.test(skipped.reason)) return true;
  return skipped.reason === "" && /(^|\/)postgres[^/]*$/.test(file);
}

/** What is wrong with a run, judged from its summary; `[]` when nothing. */
export function runProblems(summary: RunSummary, requirePostgres: boolean): string[] {
  const problems: string[] = [];
  const entries = Object.entries(summary);
  if (entries.every(([, file]) => file.passed === 0)) {
    problems.push("no test passed: the run tested nothing");
  }
  for (const [file, { passed, failed, skipped }] of entries) {
    if (passed === 0 && failed.length === 0 && skipped.length === 0) {
      problems.push(`${file}: registered no test under Node`);
    }
    for (const name of failed) problems.push(`${file}: failed: ${name}`);
    if (!requirePostgres) continue;
    for (const skip of skipped.filter((s) => isPostgresSkip(file, s))) {
      problems.push(
        `${file}: REQUIRE_POSTGRES=1, but ${skip.suite ? "suite" : "test"} "${skip.name}" ` +
          `was skipped${skip.reason ? ` (${skip.reason})` : ""}`,
      );
    }
  }
  return problems;
}

/** One line per file, its skips, and a total, for the build log. */
export function formatSummary(summary: RunSummary, label = "Node"): string {
  const lines: string[] = [];
  let passed = 0, failed = 0, skipped = 0;
  for (const [file, entry] of Object.entries(summary)) {
    passed += entry.passed;
    failed += entry.failed.length;
    skipped += entry.skipped.length;
    lines.push(
      `  ${file}: ${entry.passed} passed, ${entry.failed.length} failed, ` +
        `${entry.skipped.length} skipped`,
      ...entry.skipped.map((s) =>
        `    skipped ${s.suite ? "suite" : "test"} "${s.name}"${s.reason ? `: ${s.reason}` : ""}`
      ),
    );
  }
  lines.push(
    `${label}: ${passed} tests passed, ${failed} failed, ${skipped} skipped ` +
      `(${Object.keys(summary).length} files)`,
  );
  return lines.join("\n");
}

/** Runs one test file; what it ran, or a failure that stands for the whole file. */
async function runFile(file: string, options: NodeTestOptions, deadline: number) {
  const summaryFile = await Deno.makeTempFile({ prefix: "shared-state-node-test-" });
  try {
    const result = await run(options.node ?? "node", [
      "--expose-gc",
      "--test",
      `--test-timeout=${options.testTimeoutMs}`,
      "--test-reporter=spec",
      "--test-reporter-destination=stdout",
      `--test-reporter=${REPORTER}`,
      `--test-reporter-destination=${summaryFile}`,
      file,
    ], {
      cwd: options.npmDir,
      env: options.env,
      inherit: true,
      timeoutMs: Math.max(1, deadline - performance.now()),
    });
    const text = (await Deno.readTextFile(summaryFile)).trim();
    const summary: FileSummary = text === ""
      ? { passed: 0, failed: [], skipped: [] }
      : JSON.parse(text);
    if (result.code !== 0 && summary.failed.length === 0) {
      summary.failed.push(`(the file: node exited ${result.code}) ${result.output}`.trim());
    }
    return summary;
  } finally {
    await Deno.remove(summaryFile).catch(() => {});
  }
}

/**
 * Runs `node --test` (`options.node`) on each of `files` in turn, with the `spec` reporter on the terminal and
 * `node_reporter.mjs` into a temporary file, then prints the counts.
 *
 * @throws {Error} when a test fails, the run times out, or {@link runProblems} refuses it.
 */
export async function runNodeTests(options: NodeTestOptions): Promise<RunSummary> {
  const deadline = performance.now() + options.timeoutMs;
  const summary: RunSummary = {};
  for (const file of options.files) {
    if (performance.now() >= deadline) {
      summary[file] = { passed: 0, failed: ["(not run: out of time)"], skipped: [] };
      continue;
    }
    summary[file] = await runFile(file, options, deadline);
  }
  console.log(formatSummary(summary, options.label));
  // For CI's closing count (.ci/run): the reporter's own figures, not a scrape of the log.
  const summaryPath = options.summaryPath ?? Deno.env.get("NODE_TEST_SUMMARY");
  if (summaryPath) await Deno.writeTextFile(summaryPath, JSON.stringify(summary));
  const problems = runProblems(summary, options.requirePostgres);
  if (problems.length > 0) throw new Error(`the Node test run:\n${problems.join("\n")}`);
  return summary;
}
