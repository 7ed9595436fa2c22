/**
 * The signals `shared-state` catches so that they reach the command instead of ending the CLI
 * (which would free the lock while the command still runs): SIGINT, SIGTERM and SIGHUP.
 */

import process from "node:process";

/** The signals passed on to the command (issue 11). */
export const RELAYED_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

/** One of {@link RELAYED_SIGNALS}. */
export type RelayedSignal = typeof RELAYED_SIGNALS[number];

/**
 * Calls `handler` for each relayed signal the process receives, instead of letting it end the
 * process, until the returned function is called. A signal the platform cannot catch (SIGHUP on
 * Windows) is skipped.
 */
export function catchSignals(handler: (signal: RelayedSignal) => void): () => void {
  const installed: [RelayedSignal, () => void][] = [];
  for (const signal of RELAYED_SIGNALS) {
    const listener = () => handler(signal);
    try {
      process.on(signal, listener);
      installed.push([signal, listener]);
    } catch {
      // Not supported here.
    }
  }
  return () => {
    for (const [signal, listener] of installed) process.off(signal, listener);
  };
}
