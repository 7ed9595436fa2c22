/**
 * The two errors of the lock contract: {@link LockFailed} for "could not acquire" and
 * {@link LockLost} for "held, then taken away by the backend".
 *
 * @module
 */

/**
 * Why a lock could not be acquired, as data (the message is for people):
 *
 * | reason          | when                                                                    |
 * | --------------- | ----------------------------------------------------------------------- |
 * | `"busy"`        | `timeout: 0` and the lock was not free                                  |
 * | `"timeout"`     | the timeout passed                                                      |
 * | `"aborted"`     | the signal was aborted, before or during the wait (its reason: `cause`) |
 * | `"closed"`      | the state is closed, or was closed during the wait                      |
 * | `"unreachable"` | the backend could not be reached, or its connection failed while waiting |
 * | `"refused"`     | the backend said no: a wrong broker token, a limit, a misconfigured pooler |
 * | `"deadlock"`    | the database detected a deadlock and chose this request to fail         |
 */
export type LockFailedReason =
  | "busy"
  | "timeout"
  | "aborted"
  | "closed"
  | "unreachable"
  | "refused"
  | "deadlock";

/**
 * Why a held lock was taken away: `"closed"` (the state was closed) or `"disconnected"` (the
 * backend's connection or session ended, so the backend freed the lock).
 */
export type LockLostReason = "closed" | "disconnected";

/** What both lock errors carry besides their message. */
export interface LockErrorDetails {
  /** The key of the lock (or of the permit). */
  key: string;
  /** Whether the exclusive (`true`) or the shared (`false`) mode was requested; `false` for a permit. */
  exclusive: boolean;
  /** For a permit (`getPermit`): its `limit`. Absent for a lock. */
  limit?: number;
  /** The underlying reason: an abort reason, a driver error, … */
  cause?: unknown;
}

/** The details of a {@link LockFailed}. */
export interface LockFailedDetails extends LockErrorDetails {
  /** Why, as data. */
  reason: LockFailedReason;
}

/** The details of a {@link LockLost}. */
export interface LockLostDetails extends LockErrorDetails {
  /** Why, as data. */
  reason: LockLostReason;
}

/** Keys can be 64 KiB long; a message quotes only their start. */
const QUOTED_KEY_LENGTH = 80;

function describe(details: LockErrorDetails): string {
  const key = details.key.length > QUOTED_KEY_LENGTH
    ? `${details.key.slice(0, QUOTED_KEY_LENGTH)}…`
    : details.key;
  if (details.limit !== undefined) {
    return `permit on ${JSON.stringify(key)} (limit ${details.limit})`;
  }
  return `${details.exclusive ? "exclusive" : "shared"} lock on ${JSON.stringify(key)}`;
}

/**
 * A lock (or a permit) could not be acquired: the lock was busy, the timeout passed, the signal was aborted (its
 * reason is the `cause`), the backend could not be reached or said no, or the state is closed.
 * {@link LockFailed.reason} says which, as data.
 *
 * @example Try once, do something else when the lock is busy
 * ```ts
 * import { LocalState, LockFailed } from "@momotor/shared-state";
 *
 * const state = new LocalState();
 * try {
 *   await using _lock = await state.getLock("report", { timeout: 0 });
 *   // … build the report …
 * } catch (error) {
 *   if (!(error instanceof LockFailed) || error.reason !== "busy") throw error;
 *   console.log(`busy: ${error.key}`);
 * }
 * ```
 */
export class LockFailed extends Error {
  /** The key that could not be locked. */
  readonly key: string;
  /** The mode that was requested; `false` for a permit. */
  readonly exclusive: boolean;
  /** For a permit: the `limit` it was requested with; `undefined` for a lock. */
  readonly limit: number | undefined;
  /** Why, as data: see {@link LockFailedReason}. */
  readonly reason: LockFailedReason;

  /**
   * Makes the error; its message names the mode, the key and what went wrong.
   *
   * @param message What went wrong, in a few words ("timed out after 50 ms").
   * @param details The key, the mode, the reason and the underlying cause.
   */
  constructor(message: string, details: LockFailedDetails) {
    super(`Could not acquire ${describe(details)}: ${message}`, { cause: details.cause });
    this.name = "LockFailed";
    this.key = details.key;
    this.exclusive = details.exclusive;
    this.limit = details.limit;
    this.reason = details.reason;
  }
}

/**
 * A held lock was taken away by the backend: its connection died, or the state was closed. It is
 * the `reason` of the lock's aborted {@link Lock.signal}; nothing re-acquires the lock.
 *
 * @example Stop working when the lock is lost
 * ```ts
 * import { LocalState, LockLost } from "@momotor/shared-state";
 *
 * const state = new LocalState();
 * await using lock = await state.getLock("job/7");
 * lock.signal.addEventListener("abort", () => {
 *   console.log(lock.signal.reason instanceof LockLost); // true
 * });
 * ```
 */
export class LockLost extends Error {
  /** The key of the lost lock. */
  readonly key: string;
  /** The mode the lost lock was held in; `false` for a permit. */
  readonly exclusive: boolean;
  /** For a permit: its `limit`; `undefined` for a lock. */
  readonly limit: number | undefined;
  /** Why, as data: see {@link LockLostReason}. */
  readonly reason: LockLostReason;

  /**
   * Makes the error; its message names the mode, the key and what happened.
   *
   * @param message What happened, in a few words ("the state was closed").
   * @param details The key, the mode, the reason and the underlying cause.
   */
  constructor(message: string, details: LockLostDetails) {
    super(`Lost ${describe(details)}: ${message}`, { cause: details.cause });
    this.name = "LockLost";
    this.key = details.key;
    this.exclusive = details.exclusive;
    this.limit = details.limit;
    this.reason = details.reason;
  }
}
