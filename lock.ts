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
  /**
   * A fencing token: greater than the token of every earlier holder of this key whose hold ended
   * before this one began, across the backend's whole scope (every process on a PostgreSQL
   * database, every client of a broker, this process for `LocalState`). Pass it along with every
   * write made under the lock, and have the store refuse a write whose token is not newer than the
   * last one it accepted (`UPDATE … SET fence = $token WHERE fence < $token`): a holder that lost
   * its lock without knowing (a long pause, a dead connection) can then no longer overwrite the
   * work of the next one.
   *
   * Made on the first call, while the lock is held, and the same value on every later call. Ask
   * before `release()`: a lock released or lost before its first call rejects (a lost one with
   * its {@link Lock.signal}'s `LockLost`). Shared holders get tokens too, distinct, in no
   * particular order among holders at the same time.
   */
  fencingToken(): Promise<bigint>;
}

/**
 * One holder of a lock, or one request waiting for it, as `StateABC.inspect` reports it.
 * Backends fill in what they know; PostgreSQL and the broker add fields of their own.
 */
export interface LockHolder {
  /** The mode held or awaited. */
  exclusive: boolean;
  /**
   * Since when it holds or waits, where the backend knows (see each backend): `LocalState`
   * records no clock time on its fast path.
   */
  since?: Date;
  /**
   * Who holds or waits, where the backend knows: a PostgreSQL session (`application (pid 4242,
   * 10.0.0.5)`), a broker client (`grader-7 (broker connection 12 from 10.0.0.5)`).
   */
  owner?: string;
}

/** Who holds a key and who waits for it, right now: the answer of `StateABC.inspect`. */
export interface LockInfo {
  /** The key asked about. */
  key: string;
  /** Every holder: one exclusive, or any number of shared ones. */
  holders: LockHolder[];
  /** Every waiting request, the longest-waiting first where the backend knows the order. */
  waiters: LockHolder[];
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

// ---- Permits and multi-key locks (issue 13) ----

/** How to ask for a permit (`StateABC.getPermit`). `limit` is required. */
export interface PermitOptions {
  /**
   * The most holders of the key at once: a positive safe integer. Each request is judged by its
   * own limit (see `StateABC.getPermit`).
   */
  limit: number;
  /** As for a lock: milliseconds from the call; left out waits for ever; `0` tries once. */
  timeout?: number;
  /** Aborting it ends the wait with {@link LockFailed}, whose `cause` is the signal's reason. */
  signal?: AbortSignal;
}

/** Options of `StateABC.testPermit`. */
export interface TestPermitOptions {
  /** The limit to test for: a positive safe integer. */
  limit: number;
}

/**
 * A held permit of a counting semaphore: one of at most `limit` holders of its key. Release it
 * with {@link Permit.release}, or let `await using` do it.
 *
 * @example
 * ```ts
 * import { LocalState } from "@momotor/shared-state";
 *
 * const state = new LocalState();
 * {
 *   await using permit = await state.getPermit("payment-api", { limit: 3 });
 *   console.log(permit.key, permit.limit); // "payment-api" 3
 * } // released here
 * ```
 */
export interface Permit extends AsyncDisposable {
  /** The key of the semaphore. A permit key is not a lock key: the two never conflict. */
  readonly key: string;
  /** The limit this permit was requested with. */
  readonly limit: number;
  /** Aborted, with a `LockLost` reason, when the backend loses the permit (as for a lock). */
  readonly signal: AbortSignal;
  /** Frees the permit; resolves once it is free. Idempotent; never rejects. */
  release(): Promise<void>;
}

/** A validated permit request, as the abstract class hands it to a backend (`exclusive` is `false`). */
export interface PermitRequest extends LockRequest {
  /** The requested limit: a positive safe integer. */
  readonly limit: number;
}

/**
 * Locks held on several keys at once (`StateABC.getLocks`), all in the same mode: taken all or
 * none, released together.
 *
 * @example
 * ```ts
 * import { LocalState } from "@momotor/shared-state";
 *
 * const state = new LocalState();
 * {
 *   await using locks = await state.getLocks(["account/7", "account/3"]);
 *   console.log(locks.keys); // ["account/7", "account/3"]
 * } // both released here
 * ```
 */
export interface MultiLock extends AsyncDisposable {
  /** The distinct keys held, in the order the caller first named them. */
  readonly keys: readonly string[];
  /** `true` when every key is held exclusively, `false` when shared. */
  readonly exclusive: boolean;
  /**
   * Aborted, with the `LockLost` of the first key lost, when the backend loses any of the locks;
   * the others are released then.
   */
  readonly signal: AbortSignal;
  /** Frees every lock; resolves once all are free. Idempotent; never rejects. */
  release(): Promise<void>;
}
