/** What the parts of the conformance suite get from {@link conformanceSuite}: its test registrar and state factory. */

import type { StateABC } from "../state.ts";

/** The suite's view of the backend under test, for the test files it is split into. */
export interface SuiteContext {
  /** `it`, failing a test that hangs instead of hanging the run. */
  test(title: string, body: () => Promise<void>): void;
  /** A new open state of the backend; the suite closes it after the test. */
  open(): Promise<StateABC>;
  /** A key no other test uses. */
  freshKey(label?: string): string;
  /** Whether two states of the backend share their locks. */
  sharedBacking: boolean;
}
