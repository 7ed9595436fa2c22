/**
 * Debug logging through LogTape: silent until the application configures a sink for the
 * `["momotor", "shared", "state"]` category or one of its children (Python's `momotor.shared.state`, of which this is the TypeScript form, logs on
 * `momotor.shared.state.local`).
 */

import { getConfig, getLogger, type Logger } from "@logtape/logtape";

/** The root category; backends log on a child named after them. */
export const LOG_CATEGORY: readonly string[] = ["momotor", "shared", "state"];

/** The logger of one backend, e.g. `backendLogger("local")`. */
export function backendLogger(backend: string): Logger {
  return getLogger([...LOG_CATEGORY, backend]);
}

/**
 * Whether `logger` would record a debug message. LogTape's own `isEnabledFor` walks the category
 * tree, a tenth of a contended acquire; while LogTape is not configured at all (the default for a
 * library's users), nothing can be recorded and this is one read. Scoped configurations
 * (`withConfig`) require a global one, so they are still honoured.
 */
export function debugEnabled(logger: Logger): boolean {
  return getConfig() !== null && logger.isEnabledFor("debug");
}
