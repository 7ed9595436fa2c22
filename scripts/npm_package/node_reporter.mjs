/**
 * A `node --test` reporter that writes, as JSON, what ran: how many tests passed, which failed,
 * and which tests or suites were skipped and why. Node's own summary does not count the tests
 * inside a skipped `describe` (a whole PostgreSQL suite skipped for want of a server reads as
 * "skipped 0"); this reporter lists the skipped suite itself.
 *
 * Used by `node_tests.ts` as a second reporter beside `spec`, one test file per run (the events'
 * `file` is where a test was declared, e.g. the shared conformance suite, not the file run).
 *
 * @module
 */

/**
 * @param {AsyncIterable<{ type: string, data: any }>} source The test runner's events.
 * @returns {AsyncGenerator<string>} One JSON document, once the run has ended.
 */
export default async function* summary(source) {
  const result = { passed: 0, failed: [], skipped: [] };
  for await (const event of source) {
    if (event.type !== "test:pass" && event.type !== "test:fail") continue;
    const { name, skip, details } = event.data;
    const suite = details?.type === "suite";
    if (skip !== undefined && skip !== false) {
      result.skipped.push({ name, suite, reason: skip === true ? "" : String(skip) });
    } else if (event.type === "test:fail") {
      // A suite fails on its own (a hook, a throw) or because a test in it failed: count once.
      if (!suite || details?.error?.failureType !== "subtestsFailed") result.failed.push(name);
    } else if (!suite) {
      result.passed++;
    }
  }
  yield JSON.stringify(result) + "\n";
}
