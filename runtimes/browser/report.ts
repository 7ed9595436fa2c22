/**
 * What the browser page (`runtimes/browser/page.ts`) tells the test that serves it
 * (`runtimes/browser_test.ts`): one JSON message per POST to `/report`, in order.
 *
 * @module
 */

/** How a test ended. */
export type Status = "passed" | "failed" | "skipped";

/** One test (or a hook or suite that failed on its own) of the page's run. */
export interface TestResult {
  /** The names from the outermost suite to the test. */
  path: string[];
  status: Status;
  /** Milliseconds the test took, hooks included. */
  ms: number;
  /** Why it failed: the error's name, message and stack. */
  error?: { name: string; message: string; stack?: string };
  /** Why it was skipped, when it was. */
  skip?: string;
}

/** A message of the page. */
export type Report =
  /** The page's script started (the bundle loaded and ran). */
  | { type: "started"; userAgent: string }
  /** A test ended. */
  | { type: "result"; result: TestResult }
  /** An error nothing caught, or a rejection nothing handled: a failure of the run. */
  | { type: "uncaught"; message: string }
  /** Every test ended: `registered` tests (a skipped suite counts one) in `ms` milliseconds. */
  | { type: "done"; registered: number; ms: number };

/** The name of a result, as the report and the Deno test show it. */
export function fullName(result: TestResult): string {
  return result.path.join(" > ");
}
