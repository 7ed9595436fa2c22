/**
 * The data of the lock contract: {@link LockOptions} of a request, the validated
 * {@link LockRequest} a backend receives, and the {@link Lock} it hands out. Apart from
 * `state.ts` so that the argument checks in `internal/` need not import the abstract class.
 *
 * @module
 */

/** How to ask for a lock. Every field is optional. */
export interface LockOptions {
  /** Exclusive (one holder) or shared (many holders). Default `true`, as in Python's `momotor.shared.state`. */
  exclusive?: boolean;
  /**
   * How long to wait, in milliseconds, measured from the call. Leave it out to wait for ever;
   * `0` tries once and never waits. Negative, `NaN` and `Infinity` are a `RangeError`.
   */
  timeout?: number;
  /** Aborting it ends the wait with {@link LockFailed}, whose `cause` is the signal's reason. */
  signal?: AbortSignal;
}

/** Options of `StateABC.testLock`. */
export interface TestLockOptions {
  /** The mode to test for. Default `true`. */
  exclusive?: boolean;
}

/**
 * A held lock. Release it with {@link Lock.release}, or let `await using` do it.
 *
 * @example
 * ```ts
 * import { LocalState } from "@momotor/shared-state";
 *
 * const state = new LocalState();
 * {
 *   await using lock = await state.getLock("cache", { exclusive: false });
 *   console.log(lock.key, lock.exclusive); // "cache" false
 * } // released here
 * ```
 */
export interface Lock extends AsyncDisposable {
  /** The key this lock holds. */
  readonly key: string;
  /** `true` when held exclusively, `false` when shared. */
  readonly exclusive: boolean;
  /**
   * Aborted, with a `LockLost` reason, when the backend loses the lock (a dead connection, a
   * closed state). Pass it on to work done under the lock, so that the work stops with it.
   */
  readonly signal: AbortSignal;
  /**
   * Frees the lock. Resolves once it really is free (a `testLock` right after sees it so). Calling
   * it again, or after the lock was lost, does nothing. It never rejects.
   */
  release(): Promise<void>;
}

/**
 * A validated lock request, as the abstract class hands it to a backend.
 * Backends outside this package can implement {@link StateABC} against it.
 */
export interface LockRequest {
  /** The requested mode. */
  readonly exclusive: boolean;
  /**
   * When the wait ends, on the `performance.now()` clock; `undefined` waits for ever. Equal to the
   * call's time for a `timeout: 0` request, which must not wait at all.
   */
  readonly deadline: number | undefined;
  /** The caller's timeout in milliseconds, for messages; `undefined` waits for ever. */
  readonly timeout: number | undefined;
  /** `true` for `timeout: 0`: try once. */
  readonly tryOnce: boolean;
  /** The caller's signal, if any; not yet aborted when the backend sees the request. */
  readonly signal: AbortSignal | undefined;
}
