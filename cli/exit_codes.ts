/**
 * The exit codes of the `shared-state` command (issue 11): those of `sysexits.h` for what went
 * wrong around the command, so that scripts can tell "busy, try later" from "cannot reach the
 * backend" from "the command itself failed".
 */

import { constants } from "node:os";
import type { LockFailed } from "../errors.ts";

/**
 * Exit codes of `shared-state`. A `run` that ran its command exits with the command's own code
 * (128 + N when signal N ended it), unless the lock was lost meanwhile.
 *
 * @example Retry later when the lock was busy
 * ```ts
 * import { ExitCode } from "@momotor/shared-state/cli";
 *
 * const code = 75; // e.g. the exit code of `shared-state run --timeout 0 …`
 * if (code === ExitCode.notAcquired) console.log("someone else holds it; try again later");
 * ```
 */
export const ExitCode = {
  /** `test`: the lock is free (a `run --timeout 0` would get it now). */
  ok: 0,
  /** `test`: the lock is held in a conflicting mode. */
  held: 1,
  /** Bad usage: unknown flag, missing key or command, bad number, no URL (EX_USAGE). */
  usage: 64,
  /** The backend is unreachable or refused (wrong token, pooler, missing driver) (EX_UNAVAILABLE). */
  unavailable: 69,
  /** A bug in shared-state itself (EX_SOFTWARE). */
  internal: 70,
  /** The lock was lost while the command ran; the command was stopped (EX_IOERR). */
  lost: 74,
  /** The lock was not acquired (busy or timed out); the command never ran (EX_TEMPFAIL). */
  notAcquired: 75,
  /** The command was found but could not be executed (as a shell says). */
  cannotExecute: 126,
  /** The command was not found (as a shell says). */
  notFound: 127,
} as const;

/** The conventional exit code of a process ended by `signal`: 128 + its number. */
export function signalExitCode(signal: string): number {
  const number = (constants.signals as Record<string, number | undefined>)[signal];
  // An unknown name cannot come from the OS; SIGTERM's code is the least surprising fallback.
  return 128 + (number ?? 15);
}

/**
 * The exit code for a request that failed with `error`, when the CLI did not abort it itself:
 * 75 for busy, timeout or deadlock (try again later), 69 for everything the backend is to blame for.
 */
export function failureExitCode(error: LockFailed): number {
  switch (error.reason) {
    case "busy":
    case "timeout":
    case "deadlock":
      return ExitCode.notAcquired;
    default:
      return ExitCode.unavailable;
  }
}
