/**
 * The tests under Bun, on the built npm package: `bun test` runs the compiled `node:test` files of
 * `npm/esm/tests/` (Bun's runner takes `node:test`'s `describe`, `it` and hooks as they are, so
 * no adapter is needed) against `npm/esm/`, one file at a time, each with a JUnit report. The run
 * fails if a file fails or registers no test, if a conformance suite ran fewer than its 24 tests,
 * or, with `REQUIRE_POSTGRES=1`, if a PostgreSQL test was skipped.
 *
 * By default it runs the set of `runtimes/files.ts`, as `runtimes/node.ts` does on Node 22 and
 * 24: the conformance suite on LocalState, the broker (`serveBroker` on Bun's node:http, Bun's
 * own WebSocket client) and PostgresState, the suite's own check that it fails broken backends,
 * the broker's unit tests, refusals and permits, and how Bun loads the package; `--all` runs
 * every test file (all pass under Bun 1.4.5).
 *
 * Usage, after `deno task build:npm`:
 * `BUN=path/to/bun deno run --allow-all runtimes/bun.ts [--all] [--junit FILE]` (`BUN` defaults
 * to `bun` on the PATH; `--junit` writes one report of every file for CI's closing count).
 *
 * @module
 */

import process from "node:process";
import { allTestFiles, RUNTIME_FILES } from "./files.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const NPM_DIR = `${ROOT}/npm`;
/** Each conformance suite registers at least this many tests (26 with `sharedBacking`). */
const SUITE_TESTS = 24;
const SUITES = [
  "conformance: LocalState",
  "conformance: BrokerState over a loopback broker",
  "conformance: PostgresState (session mode)",
  "conformance: PostgresState (transaction mode)",
];
/** A single test fails after this; a test file that does not end is stopped after FILE_TIMEOUT_MS. */
const TEST_TIMEOUT_MS = 60_000;
const FILE_TIMEOUT_MS = 3 * 60_000;

/** What one file's JUnit report says. */
export interface FileReport {
  tests: number;
  failures: number;
  skipped: number;
  /** Test cases per top-level `describe`. */
  suites: Map<string, number>;
  xml: string;
}

/** Reads the figures of a `bun test --reporter=junit` report. */
export function readReport(xml: string): FileReport {
  const root = /<testsuites\b[^>]*>/.exec(xml)?.[0] ?? "";
  const attribute = (name: string) =>
    Number(new RegExp(`\\b${name}="(\\d+)"`).exec(root)?.[1] ?? 0);
  // Bun names a test case's class after its describe path, innermost first: "group > suite".
  const suites = new Map<string, number>();
  for (const match of xml.matchAll(/<testcase\b[^>]*\bclassname="([^"]*)"/g)) {
    const outermost = decode(match[1]).split(" > ").at(-1)!;
    suites.set(outermost, (suites.get(outermost) ?? 0) + 1);
  }
  return {
    tests: attribute("tests"),
    failures: attribute("failures") + attribute("errors"),
    skipped: attribute("skipped"),
    suites,
    xml,
  };
}

function decode(text: string): string {
  return text.replaceAll("&gt;", ">").replaceAll("&lt;", "<").replaceAll("&quot;", '"')
    .replaceAll("&#39;", "'").replaceAll("&amp;", "&");
}

/** What is wrong with a run, from its exit codes and reports; empty when it passed. */
export function runProblems(
  runs: { file: string; code: number; report: FileReport | undefined }[],
  requirePostgres: boolean,
): string[] {
  const problems: string[] = [];
  const suites = new Map<string, number>();
  for (const { file, code, report } of runs) {
    if (report === undefined) {
      problems.push(`${file}: no report (bun test exited ${code})`);
      continue;
    }
    if (code !== 0) problems.push(`${file}: bun test exited ${code}`);
    if (report.failures > 0) problems.push(`${file}: ${report.failures} failed`);
    if (report.tests - report.skipped === 0) problems.push(`${file}: registered no test under Bun`);
    if (requirePostgres && report.skipped > 0 && /postgres/.test(file)) {
      problems.push(`${file}: REQUIRE_POSTGRES=1, but ${report.skipped} tests were skipped`);
    }
    for (const [name, count] of report.suites) suites.set(name, (suites.get(name) ?? 0) + count);
  }
  const ran = runs.map((run) => run.file);
  for (const suite of SUITES) {
    const expected = suite.includes("PostgresState")
      ? ran.includes("postgres_conformance_test.js")
      : suite.includes("Broker")
      ? ran.includes("broker_conformance_test.js")
      : ran.includes("local_test.js");
    const count = suites.get(suite) ?? 0;
    if (expected && count < SUITE_TESTS) {
      problems.push(`"${suite}" ran ${count} tests under Bun, not at least ${SUITE_TESTS}`);
    }
  }
  return problems;
}

async function runFile(bun: string, file: string, reportPath: string) {
  const child = new Deno.Command(bun, {
    args: [
      "test",
      "--timeout",
      String(TEST_TIMEOUT_MS),
      "--reporter=junit",
      `--reporter-outfile=${reportPath}`,
      `./esm/tests/${file}`,
    ],
    cwd: NPM_DIR,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), FILE_TIMEOUT_MS);
  const { code, stdout, stderr } = await child.output();
  clearTimeout(timer);
  const output = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  let report: FileReport | undefined;
  try {
    report = readReport(await Deno.readTextFile(reportPath));
  } catch {
    report = undefined;
  }
  return { file, code, report, output };
}

async function main(args: string[]): Promise<number> {
  const all = args.includes("--all");
  const junitAt = args.indexOf("--junit");
  const junit = junitAt >= 0 ? args[junitAt + 1] : undefined;
  const unknown = args.filter((arg, i) => arg !== "--all" && i !== junitAt && i !== junitAt + 1);
  if (unknown.length > 0 || (junitAt >= 0 && junit === undefined)) {
    console.error("usage: deno run --allow-all runtimes/bun.ts [--all] [--junit FILE]");
    return 64;
  }
  const bun = process.env.BUN || "bun";
  const version = await new Deno.Command(bun, { args: ["--version"], stdout: "piped" }).output()
    .catch((error) => ({ success: false, stdout: new TextEncoder().encode(String(error)) }));
  if (!version.success) {
    console.error(`runtimes/bun.ts: cannot run ${bun}: set BUN to a bun binary`);
    return 69;
  }
  const files = all ? allTestFiles(`${NPM_DIR}/esm/tests`) : RUNTIME_FILES;
  console.log(`Bun ${new TextDecoder().decode(version.stdout).trim()}, on npm/esm/tests:`);
  const dir = await Deno.makeTempDir({ prefix: "shared-state-bun-" });
  const runs = [];
  try {
    for (const [i, file] of files.entries()) {
      const started = performance.now();
      const run = await runFile(bun, file, `${dir}/${i}.xml`);
      runs.push(run);
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      const r = run.report;
      const figures = r === undefined
        ? "no report"
        : `${r.tests - r.failures - r.skipped} passed, ${r.failures} failed, ${r.skipped} skipped`;
      console.log(`  ${file}: ${figures} (${seconds} s)`);
      if (run.code !== 0 || r === undefined || r.failures > 0) {
        console.log(run.output.replace(/^/gm, "    | "));
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  if (junit !== undefined) {
    const reports = runs.flatMap((run) => run.report === undefined ? [] : [run.report]);
    const sum = (field: "tests" | "failures" | "skipped") =>
      reports.reduce((total, report) => total + report[field], 0);
    const missing = runs.length - reports.length;
    const inner = reports.map((report) =>
      report.xml.replace(/^[\s\S]*?<testsuites\b[^>]*>/, "").replace(/<\/testsuites>\s*$/, "")
    );
    await Deno.writeTextFile(
      junit,
      `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="bun" tests="${
        sum("tests") + missing
      }" failures="${sum("failures")}" errors="${missing}" skipped="${sum("skipped")}">` +
        `${inner.join("")}\n</testsuites>\n`,
    );
  }
  const problems = runProblems(runs, process.env.REQUIRE_POSTGRES === "1");
  if (problems.length > 0) {
    console.error(`\nThe tests under Bun failed:\n${problems.map((p) => `  ${p}`).join("\n")}`);
    return 1;
  }
  console.log("The tests under Bun passed.");
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
