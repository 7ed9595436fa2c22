/**
 * The one place lock failures are made (issue 10): each {@link LockFailedReason} with the same
 * message wherever it happens, so that every backend fails alike and users read `reason`, not
 * the message.
 */

import { LockFailed, type LockFailedReason } from "../errors.ts";

/** What a failure is about: the key and the requested mode. */
export interface Requested {
  readonly key: string;
  readonly exclusive: boolean;
}

/** `timeout: 0` and the lock was not free. */
export function busy({ key, exclusive }: Requested): LockFailed {
  return new LockFailed("it is busy (timeout 0)", { key, exclusive, reason: "busy" });
}

/** The caller's timeout of `ms` milliseconds passed. */
export function timedOut({ key, exclusive }: Requested, ms: number | undefined): LockFailed {
  return new LockFailed(`timed out after ${ms} ms`, { key, exclusive, reason: "timeout" });
}

/** The caller's signal was aborted; its reason becomes the cause. */
export function aborted({ key, exclusive }: Requested, signal: AbortSignal): LockFailed {
  return new LockFailed("aborted", { key, exclusive, reason: "aborted", cause: signal.reason });
}

/** The state is closed, or was closed while the request waited. */
export function closed({ key, exclusive }: Requested): LockFailed {
  return new LockFailed("the state is closed", { key, exclusive, reason: "closed" });
}

/**
 * A failure that only the backend can describe: `unreachable`, `refused`, `deadlock` (or one of
 * the others, where the backend learnt it from its server).
 */
export function backendFailure(
  { key, exclusive }: Requested,
  reason: LockFailedReason,
  message: string,
  cause?: unknown,
): LockFailed {
  return new LockFailed(message, { key, exclusive, reason, cause });
}
