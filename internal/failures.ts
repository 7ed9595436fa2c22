/**
 * The one place lock failures are made (issue 10): each {@link LockFailedReason} with the same
 * message wherever it happens, so that every backend fails alike and users read `reason`, not
 * the message.
 */

import { LockFailed, type LockFailedReason } from "../errors.ts";

/** What a failure is about: the key and the requested mode, and a permit's limit. */
export interface Requested {
  readonly key: string;
  readonly exclusive: boolean;
  /** Set for a permit (issue 13): its limit. */
  readonly limit?: number;
}

/** `timeout: 0` and the lock was not free. */
export function busy({ key, exclusive, limit }: Requested): LockFailed {
  return new LockFailed("it is busy (timeout 0)", { key, exclusive, limit, reason: "busy" });
}

/** The caller's timeout of `ms` milliseconds passed. */
export function timedOut(
  { key, exclusive, limit }: Requested,
  ms: number | undefined,
): LockFailed {
  return new LockFailed(`timed out after ${ms} ms`, { key, exclusive, limit, reason: "timeout" });
}

/** The caller's signal was aborted; its reason becomes the cause. */
export function aborted({ key, exclusive, limit }: Requested, signal: AbortSignal): LockFailed {
  return new LockFailed("aborted", {
    key,
    exclusive,
    limit,
    reason: "aborted",
    cause: signal.reason,
  });
}

/** The state is closed, or was closed while the request waited. */
export function closed({ key, exclusive, limit }: Requested): LockFailed {
  return new LockFailed("the state is closed", { key, exclusive, limit, reason: "closed" });
}

/**
 * A failure that only the backend can describe: `unreachable`, `refused`, `deadlock` (or one of
 * the others, where the backend learnt it from its server).
 */
export function backendFailure(
  { key, exclusive, limit }: Requested,
  reason: LockFailedReason,
  message: string,
  cause?: unknown,
): LockFailed {
  return new LockFailed(message, { key, exclusive, limit, reason, cause });
}
