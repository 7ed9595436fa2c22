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
  show,
} from "./internal/arguments.ts";
import type { Lock, LockInfo, LockOptions, LockRequest, TestLockOptions } from "./lock.ts";

export type {
  Lock,
  LockHolder,
  LockInfo,
  LockOptions,
  LockRequest,
  TestLockOptions,
} from "./lock.ts";

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

  // --- Fencing and observability (issue 12) ---------------------------------------------------

  /**
   * Who holds `key` and who waits for it, right now, across the backend's whole scope: every
   * process on the PostgreSQL database, every client of a broker. For finding a stuck lock; the
   * answer is transient.
   *
   * @example
   * ```ts
   * import { LocalState } from "@momotor/shared-state";
   *
   * const state = new LocalState();
   * const lock = await state.getLock("report");
   * const info = await state.inspect("report");
   * console.log(info.holders.length, info.waiters.length); // 1 0
   * await lock.release();
   * ```
   *
   * @param key Any string.
   * @returns The holders and the waiters, each with its mode and, where the backend knows, since
   *   when and who.
   * @throws {LockFailed} when the state is closed or the backend cannot be reached.
   * @throws {TypeError} for a non-string key.
   */
  inspect(key: string): Promise<LockInfo> {
    try {
      checkKey(key);
    } catch (error) {
      return Promise.reject(error);
    }
    const failure = this.#refusal(key, true, undefined);
    if (failure !== undefined) return Promise.reject(failure);
    return this.inspectKey(key);
  }

  /**
   * The backend's {@link StateABC.inspect}. The key is a string and the state is open. Backends
   * of this package all implement it; the default, for backends written before it existed,
   * rejects (and fails the conformance suite's inspect tests).
   *
   * @param key The key to describe.
   */
  protected inspectKey(key: string): Promise<LockInfo> {
    return Promise.reject(
      new Error(`${this.constructor.name} cannot inspect locks (asked about ${show(key)})`),
    );
  }

  // --- end of issue 12 ------------------------------------------------------------------------

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
