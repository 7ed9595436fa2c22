/**
 * Debug logging through LogTape: silent until the application configures a sink for the
 * `["momotor", "shared", "state"]` category or one of its children (the Python seed logs on
 * `momotor.shared.state.local`).
 */

import { getLogger, type Logger } from "@logtape/logtape";

/** The root category; backends log on a child named after them. */
export const LOG_CATEGORY: readonly string[] = ["momotor", "shared", "state"];

/** The logger of one backend, e.g. `backendLogger("local")`. */
export function backendLogger(backend: string): Logger {
  return getLogger([...LOG_CATEGORY, backend]);
}
