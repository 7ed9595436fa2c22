/**
 * The package in a browser: headless Chromium loads a page that bundles the browser entry points
 * (`mod.ts` and `backends/broker.ts`, the package's `.` and `./broker`) with the conformance
 * suite, and runs the suite on `LocalState` and on `BrokerState` (the browser's `WebSocket`)
 * against a broker this process serves, plus smoke checks of `await using` and `withLock`
 * (`runtimes/browser/page.ts`). The page reports every result back; each becomes a test step
 * here, failures with their messages. `node:test` and `node:assert` come, in the page, from the
 * harness's own small modules (`runtimes/browser/node_test.ts`, `assert.ts`), which the first
 * tests below check against Deno's `node:assert` and on a suite of their own, browser or not.
 *
 * Run with `deno task test:browser`: Chromium is `CHROMIUM`, or the first of `chromium`,
 * `chromium-browser`, `google-chrome-stable`, `google-chrome` on `PATH` (CI installs Debian's
 * `chromium`: `.ci/run`). Without one the browser tests skip, loudly; with `REQUIRE_BROWSER=1`
 * that is a failure instead.
 *
 * @module
 */

import assert from "node:assert/strict";
import process from "node:process";
import { before, describe, it } from "node:test";
import browserAssert from "./browser/assert.ts";
import * as browserTest from "./browser/node_test.ts";
import { findChromium } from "./browser/chromium.ts";
import { fullName, type TestResult } from "./browser/report.ts";
import { type PageRun, runPage } from "./browser/run.ts";

/** Bounds on the page: its first report, the silence between two, the whole run. */
const BOUNDS = { startMs: 60_000, idleMs: 90_000, totalMs: 300_000 };

const CHROMIUM = findChromium();

function skipReason(): string | false {
  if (CHROMIUM !== undefined) return false;
  const reason = "no Chromium: CHROMIUM is not set and none is on PATH (CI installs Debian's)";
  if (process.env.REQUIRE_BROWSER === "1") throw new Error(`REQUIRE_BROWSER=1 but ${reason}`);
  console.error(`\n!!!!! SKIPPING THE BROWSER TESTS: ${reason}. !!!!!\n`);
  return `SKIPPED: ${reason}`;
}

const skip = skipReason();

describe("the browser's stand-ins for node:assert and node:test (no browser needed)", () => {
  it("assert.ts passes and fails as node:assert/strict does on what the suite uses", async () => {
    class Custom extends Error {
      override name = "Custom";
      reason = "closed";
    }
    const boom = new Error("boom");
    const custom = () => Promise.reject(new Custom("closed it"));
    class Plain {}
    // [what, call on an assert]: each must throw (or reject) on both, or on neither.
    const cases: [string, (a: typeof assert) => unknown][] = [
      ["equal same", (a) => a.equal(1, 1)],
      ["equal 1 '1'", (a) => a.equal(1, "1")],
      ["equal NaN", (a) => a.equal(NaN, NaN)],
      ["equal 0 -0", (a) => a.equal(0, -0)],
      ["equal objects", (a) => a.equal({}, {})],
      ["notEqual", (a) => a.notEqual(1, 2)],
      ["notEqual same", (a) => a.notEqual("x", "x")],
      ["ok 0", (a) => a.ok(0)],
      ["ok 1", (a) => a.ok(1)],
      ["ok ''", (a) => a.ok("", "message")],
      ["assert()", (a) => a(null)],
      [
        "deepEqual arrays",
        (a) => a.deepEqual([["k", false], ["k", true]], [["k", false], ["k", true]]),
      ],
      ["deepEqual arrays differ", (a) => a.deepEqual([1, 2], [1, 2, 3])],
      ["deepEqual 1 '1'", (a) => a.deepEqual([1], ["1"])],
      [
        "deepEqual nested",
        (a) => a.deepEqual({ a: { b: [1, { c: 2 }] } }, { a: { b: [1, { c: 2 }] } }),
      ],
      [
        "deepEqual nested differ",
        (a) => a.deepEqual({ a: { b: [1, { c: 2 }] } }, { a: { b: [1, { c: 3 }] } }),
      ],
      ["deepEqual undefined key", (a) => a.deepEqual({ a: undefined }, {})],
      // (Node also tells Object.create({ a: 1 }) from {}; Deno's node:assert does not.)
      ["deepEqual prototypes", (a) => a.deepEqual(new Plain(), {})],
      ["deepEqual null prototype", (a) => a.deepEqual(Object.create(null), {})],
      ["deepEqual array vs object", (a) => a.deepEqual([], {})],
      ["deepEqual empty", (a) => a.deepEqual([], [])],
      ["deepEqual NaN", (a) => a.deepEqual([NaN], [NaN])],
      ["notDeepEqual", (a) => a.notDeepEqual([1], [2])],
      ["notDeepEqual same", (a) => a.notDeepEqual([1], [1])],
      ["match", (a) => a.match('unknown option "x"', /unknown option "x"/)],
      ["match fails", (a) => a.match("nope", /yes/)],
      ["doesNotMatch", (a) => a.doesNotMatch("nope", /yes/)],
      ["fail", (a) => a.fail("why")],
      ["throws", (a) => a.throws(() => JSON.parse("{"), SyntaxError)],
      ["throws wrong class", (a) => a.throws(() => JSON.parse("{"), TypeError)],
      ["throws nothing", (a) => a.throws(() => {})],
      ["throws object", (a) =>
        a.throws(() => {
          throw new TypeError("bad x");
        }, { name: "TypeError", message: "bad x" })],
      ["throws object differs", (a) =>
        a.throws(() => {
          throw new TypeError("bad x");
        }, { message: "bad y" })],
      ["rejects class", (a) => a.rejects(custom(), Custom)],
      ["rejects base class", (a) => a.rejects(custom(), Error)],
      ["rejects wrong class", (a) => a.rejects(custom(), TypeError)],
      ["rejects object", (a) => a.rejects(custom(), { name: "Custom", reason: "closed" })],
      ["rejects object differs", (a) => a.rejects(custom(), { name: "Custom", reason: "timeout" })],
      ["rejects object regexp", (a) => a.rejects(custom(), { message: /closed/ })],
      ["rejects regexp", (a) => a.rejects(custom(), /closed it/)],
      ["rejects regexp differs", (a) => a.rejects(custom(), /opened/)],
      ["rejects validator", (a) => a.rejects(custom(), (e) => e instanceof Custom)],
      ["rejects validator false", (a) => a.rejects(custom(), () => false)],
      ["rejects validator throws", (a) => a.rejects(custom(), () => a.fail("no"))],
      ["rejects same error", (a) => a.rejects(Promise.reject(boom), boom)],
      ["rejects equal error", (a) => a.rejects(Promise.reject(new Error("boom")), boom)],
      ["rejects other error", (a) => a.rejects(Promise.reject(new Error("bang")), boom)],
      ["rejects message", (a) => a.rejects(custom(), Custom, "with a message")],
      ["rejects string message", (a) => a.rejects(custom(), "a message")],
      ["rejects nothing", (a) => a.rejects(Promise.resolve(1), Error)],
      ["rejects function", (a) => a.rejects(() => custom(), Custom)],
    ];
    const outcome = async (call: () => unknown) => {
      try {
        await call();
        return "passed";
      } catch (error) {
        return `threw ${error instanceof Error ? error.name : typeof error}`;
      }
    };
    const disagree: string[] = [];
    for (const [what, call] of cases) {
      const node = await outcome(() => call(assert));
      const browser = await outcome(() => call(browserAssert as unknown as typeof assert));
      if (node !== browser) disagree.push(`${what}: node:assert ${node}, assert.ts ${browser}`);
    }
    assert.deepEqual(disagree, []);
    // Its failures are AssertionErrors with the message given, as Node's.
    const error = await outcome(() => browserAssert.equal(1, 2, "one is not two"));
    assert.equal(error, "threw AssertionError");
    assert.throws(() => browserAssert.equal(1, 2, "one is not two"), { message: "one is not two" });
  });

  it("node_test.ts runs suites in order, with hooks, timeouts, skips, subtests and failures", async () => {
    const { describe, it, before, after, beforeEach, afterEach } = browserTest;
    const log: string[] = [];
    describe("outer", () => {
      before(() => void log.push("before outer"));
      after(() => void log.push("after outer"));
      beforeEach(() => void log.push("beforeEach outer"));
      afterEach(() => void log.push("afterEach outer"));
      it("passes", () => void log.push("passes"));
      describe("inner", () => {
        beforeEach(() => void log.push("beforeEach inner"));
        afterEach(() => void log.push("afterEach inner"));
        it("fails", () => browserAssert.equal(1, 2, "one is not two"));
        it("times out", { timeout: 20 }, () => new Promise(() => {}));
        it("has subtests", async (t) => {
          await t.test("sub passes", () => {});
          await t.test("sub fails", () => Promise.reject(new Error("sub failed")));
        });
      });
      describe("skipped", { skip: "why not" }, () => {
        it("never runs", () => void log.push("never runs"));
      });
      it.todo("todo");
      describe("throws", () => {
        throw new Error("registration failed");
      });
      describe("failing afterEach", () => {
        afterEach(() => {
          throw new Error("afterEach failed");
        });
        it("passes but its afterEach fails", () => {});
      });
    });
    const results: TestResult[] = [];
    assert.equal(browserTest.registered(), 8);
    const counts = await browserTest.run({ timeout: 5000, report: (r) => void results.push(r) });
    const summary = results.map((r) => `${fullName(r)}: ${r.status} ${r.error?.message ?? ""}`);
    assert.deepEqual(summary, [
      "outer > passes: passed ",
      "outer > inner > fails: failed one is not two",
      "outer > inner > times out: failed test timed out after 20ms",
      "outer > inner > has subtests > sub passes: passed ",
      "outer > inner > has subtests > sub fails: failed sub failed",
      "outer > inner > has subtests: failed 1 subtest failed",
      "outer > skipped: skipped ",
      "outer > todo: skipped ",
      "outer > throws: failed registration failed",
      "outer > failing afterEach > passes but its afterEach fails: failed afterEach failed",
    ]);
    assert.deepEqual(counts, { passed: 2, failed: 6, skipped: 2 });
    assert.deepEqual(log, [
      "before outer",
      ...["beforeEach outer", "passes", "afterEach outer"],
      ...["beforeEach outer", "beforeEach inner", "afterEach inner", "afterEach outer"],
      ...["beforeEach outer", "beforeEach inner", "afterEach inner", "afterEach outer"],
      ...["beforeEach outer", "beforeEach inner", "afterEach inner", "afterEach outer"],
      ...["beforeEach outer", "afterEach outer"],
      "after outer",
    ]);
  });
});

describe("browsers: headless Chromium runs the package's browser entry points", { skip }, () => {
  let run: PageRun;

  before(async () => {
    run = await runPage(CHROMIUM!, BOUNDS);
    console.log(
      `${run.userAgent ?? "the page never started"}: ${run.results.length} results` +
        (run.pageMs === undefined ? "" : ` in ${Math.round(run.pageMs)} ms`),
    );
  });

  /** Fails, with Chromium's output, when the run as a whole is not to be trusted. */
  function assertRunComplete(): void {
    const problems = [];
    if (run.incomplete !== undefined) problems.push(`incomplete: ${run.incomplete}`);
    for (const message of run.uncaught) problems.push(`uncaught in the page: ${message}`);
    if (problems.length === 0) return;
    const reported = run.results.map((r) => `  ${r.status} ${fullName(r)}`).join("\n");
    assert.fail(
      `${problems.join("\n")}\nreported:\n${reported}\nChromium's output:\n${run.output}`,
    );
  }

  /** One step per result under `prefix`, failing with the page's message; at least `min`. */
  async function resultsOf(t: { test: TestStep }, prefix: string, min: number) {
    const results = run.results.filter((r) => r.path[0] === prefix);
    for (const result of results) {
      const name = fullName(result).slice(prefix.length + 3) || prefix;
      await t.test(name, { skip: result.status === "skipped" ? result.skip : false }, () => {
        if (result.status !== "failed") return;
        const error = new Error(`in the browser: ${result.error?.message}`);
        error.stack = `${error.message}\n${result.error?.stack ?? ""}`;
        throw error;
      });
    }
    assertRunComplete();
    assert.ok(results.length >= min, `only ${results.length} results of "${prefix}"`);
  }

  it("loads the bundle, runs every test it registered and reports no uncaught error", () => {
    assertRunComplete();
    assert.match(run.userAgent ?? "", /Chrome\//);
    const tests = run.results.filter((r) => r.path.at(-1) !== "(after hook)");
    assert.equal(tests.length, run.registered, "a registered test reported no result");
    assert.equal(run.servedSizeAtDone, 0, "the broker kept a key entry of the page");
  });

  it("runs the conformance suite on LocalState", async (t) => {
    await resultsOf(t, "conformance: LocalState in the browser", 40);
  });

  it("runs the conformance suite on BrokerState with the browser's WebSocket", async (t) => {
    await resultsOf(t, "conformance: BrokerState in the browser (its WebSocket)", 40);
  });

  it("runs await using, withLock, contention, and brokers refusing, absent or stopped", async (t) => {
    await resultsOf(t, "smoke: the entry points as a page uses them", 7);
  });

  it("reports a failing test as failed, with its message, in the browser too", () => {
    const prefix = "harness self-check: these three must come back failed, failed and skipped";
    const summary = run.results.filter((r) => r.path[0] === prefix).map((r) =>
      `${r.path.at(-1)}: ${r.status} ${r.error?.message.split("\n")[0] ?? r.skip}`
    );
    assert.deepEqual(summary, [
      "fails on a wrong assertion: failed Expected values to be strictly equal:",
      "fails when it outlasts its timeout: failed test timed out after 50ms",
      "is skipped: skipped skipped on purpose",
    ]);
  });
});

/** `t.test` of Deno's `node:test` context, as used here. */
type TestStep = (
  name: string,
  options: { skip: string | false | undefined },
  fn: () => void,
) => Promise<void>;
