/**
 * `node:test` for the browser test (`runtimes/browser_test.ts`): the bundle of the page maps
 * `node:test` here, so that the conformance suite registers its tests in a browser unchanged.
 *
 * `describe`/`suite` and `it`/`test` collect a tree of suites and tests as Node does (a suite's
 * body runs at once; `skip`, `todo` and `timeout` options; `.skip` and `.todo`); `before`,
 * `after`, `beforeEach` and `afterEach` hooks, the `*Each` ones applying to the tests of nested
 * suites too. {@link run} then runs the tree in order, one test at a time, each test and hook
 * bounded by a timeout, subtests (`t.test`) included, and hands each result to a reporter.
 *
 * @module
 */

import type { Status, TestResult } from "./report.ts";

/** The options `describe`, `it` and `t.test` take. */
export interface TestOptions {
  skip?: boolean | string;
  todo?: boolean | string;
  /** Milliseconds after which the test fails; default the `timeout` of {@link run}. */
  timeout?: number;
}

/** The context a test function gets. */
export interface TestContext {
  readonly name: string;
  /** Aborted when the test ends or times out. */
  readonly signal: AbortSignal;
  /** Runs a subtest, reported as `parent > name`; the parent waits for it. */
  test(name: string, options: TestOptions | TestFn, fn?: TestFn): Promise<void>;
  diagnostic(message: string): void;
}

/** A test's body. */
export type TestFn = (t: TestContext) => unknown;
/** A hook's body. */
export type HookFn = () => unknown;

interface Test {
  kind: "test";
  name: string;
  fn: TestFn;
  options: TestOptions;
}

interface Suite {
  kind: "suite";
  name: string;
  options: TestOptions;
  children: (Suite | Test)[];
  before: HookFn[];
  after: HookFn[];
  beforeEach: HookFn[];
  afterEach: HookFn[];
  /** An error its body threw while registering. */
  error?: unknown;
}

const newSuite = (name: string, options: TestOptions): Suite => ({
  kind: "suite",
  name,
  options,
  children: [],
  before: [],
  after: [],
  beforeEach: [],
  afterEach: [],
});

const root = newSuite("", {});
let current = root;

function parse<F>(options: TestOptions | F | undefined, fn: F | undefined): [TestOptions, F] {
  if (typeof options === "function") return [{}, options as F];
  return [(options ?? {}) as TestOptions, fn as F];
}

/** Registers a suite; its body runs now and registers the suite's tests and hooks. */
export function describe(name: string, options: TestOptions | (() => void), fn?: () => void) {
  const [opts, body] = parse(options, fn);
  const suite = newSuite(name, opts);
  current.children.push(suite);
  const outer = current;
  current = suite;
  try {
    const returned = body?.() as unknown;
    if (returned instanceof Promise) {
      suite.error = new Error("an async describe body is not supported in the browser test");
    }
  } catch (error) {
    suite.error = error;
  } finally {
    current = outer;
  }
}
describe.skip = (name: string, fn?: () => void) => describe(name, { skip: true }, fn);
describe.todo = (name: string, fn?: () => void) => describe(name, { todo: true }, fn);

/** Registers a test in the current suite. */
export function it(name: string, options: TestOptions | TestFn, fn?: TestFn) {
  const [opts, body] = parse(options, fn);
  current.children.push({ kind: "test", name, fn: body ?? (() => {}), options: opts });
}
it.skip = (name: string, fn?: TestFn) => it(name, { skip: true }, fn);
it.todo = (name: string, fn?: TestFn) => it(name, { todo: true }, fn);

export { describe as suite, it as test };

/** Runs `fn` once before the tests of the current suite. */
export function before(fn: HookFn) {
  current.before.push(fn);
}
/** Runs `fn` once after the tests of the current suite. */
export function after(fn: HookFn) {
  current.after.push(fn);
}
/** Runs `fn` before each test of the current suite and of the suites in it. */
export function beforeEach(fn: HookFn) {
  current.beforeEach.push(fn);
}
/** Runs `fn` after each test of the current suite and of the suites in it. */
export function afterEach(fn: HookFn) {
  current.afterEach.push(fn);
}

/** Settles like `fn()`, or rejects once `ms` have passed (clearing its timer either way). */
async function bounded(fn: () => unknown, ms: number, what: string): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms}ms`)), ms);
  });
  try {
    await Promise.race([(async () => await fn())(), limit]);
  } finally {
    clearTimeout(timer);
  }
}

function errorOf(error: unknown): TestResult["error"] {
  if (error instanceof Error) {
    const cause = error.cause === undefined ? "" : `\n[cause]: ${errorOf(error.cause)?.message}`;
    return { name: error.name, message: error.message + cause, stack: error.stack };
  }
  return { name: typeof error, message: String(error) };
}

const skipReason = (options: TestOptions): string | undefined => {
  const reason = options.skip || options.todo;
  if (!reason) return undefined;
  return typeof reason === "string" ? reason : options.skip ? "skipped" : "todo";
};

/**
 * The results a run of what is registered now will report, after hooks aside: one per test, and
 * one per skipped suite or suite whose body threw.
 */
export function registered(): number {
  const count = (suite: Suite): number => {
    let n = 0;
    for (const child of suite.children) {
      if (child.kind === "test") n++;
      else if (skipReason(child.options) !== undefined || child.error !== undefined) n++;
      else n += count(child);
    }
    return n;
  };
  return count(root);
}

/** How {@link run} runs the registered tests. */
export interface RunOptions {
  /** Milliseconds for each test and hook that sets no `timeout` of its own. */
  timeout: number;
  /** Gets every result as it comes; the run waits for it. */
  report(result: TestResult): void | Promise<void>;
}

/**
 * Runs every registered test, in registration order, one at a time. Resolves with the count of
 * each status once the last result was reported; never rejects for a failing test.
 */
export async function run(options: RunOptions): Promise<Record<Status, number>> {
  const counts: Record<Status, number> = { passed: 0, failed: 0, skipped: 0 };
  const report = async (result: TestResult) => {
    counts[result.status]++;
    await options.report(result);
  };

  async function runTest(
    test: Test,
    path: string[],
    beforeEach: HookFn[],
    afterEach: HookFn[],
    onFailure?: () => void,
  ): Promise<void> {
    const skip = skipReason(test.options);
    if (skip !== undefined) return await report({ path, status: "skipped", ms: 0, skip });
    const timeout = test.options.timeout ?? options.timeout;
    const controller = new AbortController();
    const subtests: Promise<void>[] = [];
    let failedSubtests = 0;
    const context: TestContext = {
      name: test.name,
      signal: controller.signal,
      test(name, subOptions, fn) {
        const [opts, body] = parse(subOptions, fn);
        const sub: Test = { kind: "test", name, fn: body ?? (() => {}), options: opts };
        const done = runTest(sub, [...path, name], [], [], () => failedSubtests++);
        subtests.push(done);
        return done;
      },
      diagnostic(message) {
        console.log(`# ${path.join(" > ")}: ${message}`);
      },
    };
    const started = performance.now();
    let failure: unknown;
    let failed = false;
    const attempt = async (fn: () => unknown, what: string, ms: number) => {
      try {
        await bounded(fn, ms, what);
      } catch (error) {
        if (!failed) [failed, failure] = [true, error];
      }
    };
    for (const hook of beforeEach) await attempt(hook, "beforeEach hook", options.timeout);
    if (!failed) {
      await attempt(
        async () => {
          await test.fn(context);
          await Promise.all(subtests);
          if (failedSubtests > 0) {
            throw new Error(`${failedSubtests} subtest${failedSubtests > 1 ? "s" : ""} failed`);
          }
        },
        "test",
        timeout,
      );
    }
    controller.abort();
    for (const hook of afterEach) await attempt(hook, "afterEach hook", options.timeout);
    const ms = performance.now() - started;
    if (failed) {
      onFailure?.();
      await report({ path, status: "failed", ms, error: errorOf(failure) });
    } else {
      await report({ path, status: "passed", ms });
    }
  }

  async function runSuite(
    suite: Suite,
    path: string[],
    beforeEach: HookFn[],
    afterEach: HookFn[],
  ): Promise<void> {
    const skip = skipReason(suite.options);
    if (skip !== undefined) return await report({ path, status: "skipped", ms: 0, skip });
    if (suite.error !== undefined) {
      return await report({ path, status: "failed", ms: 0, error: errorOf(suite.error) });
    }
    const started = performance.now();
    // Outer beforeEach hooks first; inner afterEach hooks first.
    const innerBefore = [...beforeEach, ...suite.beforeEach];
    const innerAfter = [...suite.afterEach, ...afterEach];
    let hookFailure: unknown;
    try {
      for (const hook of suite.before) await bounded(hook, options.timeout, "before hook");
    } catch (error) {
      hookFailure = error;
    }
    // An index loop: a test may register more (late `it` calls land in their suite's list).
    for (let i = 0; i < suite.children.length; i++) {
      const child = suite.children[i];
      const childPath = [...path, child.name];
      if (hookFailure !== undefined) {
        await report({
          path: childPath,
          status: "failed",
          ms: 0,
          error: errorOf(new Error("the before hook of its suite failed", { cause: hookFailure })),
        });
      } else if (child.kind === "suite") {
        await runSuite(child, childPath, innerBefore, innerAfter);
      } else {
        await runTest(child, childPath, innerBefore, innerAfter);
      }
    }
    for (const hook of suite.after) {
      try {
        await bounded(hook, options.timeout, "after hook");
      } catch (error) {
        await report({
          path: [...path, "(after hook)"],
          status: "failed",
          ms: performance.now() - started,
          error: errorOf(error),
        });
      }
    }
  }

  await runSuite(root, [], [], []);
  return counts;
}
