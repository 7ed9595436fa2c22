/**
 * The contract every backend implements: {@link StateABC}, the {@link Lock} it hands out and the
 * {@link LockOptions} of a request.
 *
 * @module
 */

import type { LockFailed } from "./errors.ts";
import { aborted, closed } from "./internal/failures.ts";
import {
  checkFunction,
  checkKey,
  checkTestOptions,
  parseLockOptions,
} from "./internal/arguments.ts";

/** How to ask for a lock. Every field is optional. */
export interface LockOptions {
  /** Exclusive (one holder) or shared (many holders). Default `true`, as in the Python seed. */
  exclusive?: boolean;
  /**
   * How long to wait, in milliseconds, measured from the call. Leave it out to wait for ever;
   * `0` tries once and never waits. Negative, `NaN` and `Infinity` are a `RangeError`.
   */
  timeout?: number;
  /** Aborting it ends the wait with {@link LockFailed}, whose `cause` is the signal's reason. */
  signal?: AbortSignal;
}

/** Options of {@link StateABC.testLock}. */
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

/**
 * Named read/write locks: per key, many holders in shared mode or one in exclusive mode, served
 * first come, first served. The TypeScript form of Python's `momotor.shared.state.StateABC`.
 *
 * Argument checks, the closed state and `withLock` live here; a backend implements
 * {@link StateABC.acquire}, {@link StateABC.probe} and {@link StateABC.shutdown}.
 *
 * @example
 * ```ts
 * import { LocalState, type StateABC } from "@momotor/shared-state";
 *
 * async function refresh(state: StateABC) {
 *   await using _lock = await state.getLock("cache"); // exclusive by default
 *   // … rebuild the cache …
 * }
 * await refresh(new LocalState());
 * ```
 */
export abstract class StateABC implements AsyncDisposable {
  #closed = false;

  /** `true` once {@link StateABC.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Acquires the lock on `key`, waiting in line behind earlier requests.
   *
   * @param key Any string.
   * @param options Mode, timeout and abort signal.
   * @returns The held lock.
   * @throws {LockFailed} on timeout, abort, unreachable backend or closed state.
   * @throws {TypeError} for a non-string key, an unknown option or an ill-typed one.
   * @throws {RangeError} for a negative or non-finite timeout.
   */
  getLock(key: string, options?: LockOptions): Promise<Lock> {
    return this.#getLock(key, options, "getLock options");
  }

  /**
   * Whether a {@link StateABC.getLock} with this mode and `timeout: 0` would succeed right now.
   * The answer is transient: another worker may take the lock the moment after.
   *
   * @param key Any string.
   * @param options The mode to test for (default exclusive).
   * @returns `true` when the lock is not held in a conflicting way.
   * @throws {LockFailed} when the state is closed or the backend cannot be reached.
   */
  testLock(key: string, options?: TestLockOptions): Promise<boolean> {
    let exclusive: boolean;
    try {
      checkKey(key);
      exclusive = checkTestOptions(options);
    } catch (error) {
      return Promise.reject(error);
    }
    const failure = this.#refusal(key, exclusive, undefined);
    if (failure !== undefined) return Promise.reject(failure);
    return this.probe(key, exclusive);
  }

  /**
   * Runs `fn` while holding the lock on `key`, and releases the lock when `fn` returns or throws.
   *
   * @example
   * ```ts
   * import { LocalState } from "@momotor/shared-state";
   *
   * const state = new LocalState();
   * const total = await state.withLock("counter", () => 41 + 1);
   * ```
   *
   * @param key Any string.
   * @param fn The critical section; it receives the held lock.
   * @param options Mode, timeout and abort signal.
   * @returns What `fn` returns.
   */
  async withLock<T>(
    key: string,
    fn: (lock: Lock) => T | Promise<T>,
    options?: LockOptions,
  ): Promise<T> {
    checkFunction(fn, "fn");
    const lock = await this.#getLock(key, options, "withLock options");
    try {
      return await fn(lock);
    } finally {
      await lock.release();
    }
  }

  /**
   * Closes the state: waiting requests fail with {@link LockFailed}, held locks are released and
   * their signals aborted with `LockLost`, and connections the state opened itself are ended.
   * Later calls fail with {@link LockFailed}. Closing twice is harmless; it never rejects.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.shutdown();
  }

  /** The same as {@link StateABC.close}, for `await using state = …`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /**
   * The backend's acquire. Arguments are valid, the state is open and the signal not aborted.
   * Must settle with a held lock or reject with {@link LockFailed}.
   *
   * @param key The key to lock.
   * @param request The validated request.
   */
  protected abstract acquire(key: string, request: LockRequest): Promise<Lock>;

  /**
   * The backend's {@link StateABC.testLock}. Arguments are valid and the state is open.
   *
   * @param key The key to test.
   * @param exclusive The mode to test for.
   */
  protected abstract probe(key: string, exclusive: boolean): Promise<boolean>;

  /** The backend's {@link StateABC.close}: runs once; must not reject. */
  protected abstract shutdown(): Promise<void>;

  /** {@link StateABC.getLock}, with the options named as the caller's call names them. */
  #getLock(key: string, options: LockOptions | undefined, what: string): Promise<Lock> {
    let request: LockRequest;
    try {
      checkKey(key);
      request = parseLockOptions(options, what);
    } catch (error) {
      return Promise.reject(error);
    }
    const failure = this.#refusal(key, request.exclusive, request.signal);
    if (failure !== undefined) return Promise.reject(failure);
    return this.acquire(key, request);
  }

  #refusal(
    key: string,
    exclusive: boolean,
    signal: AbortSignal | undefined,
  ): LockFailed | undefined {
    if (this.#closed) return closed({ key, exclusive });
    if (signal?.aborted) return aborted({ key, exclusive }, signal);
    return undefined;
  }
}
