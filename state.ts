/**
 * The contract every backend implements: {@link StateABC}, the {@link Lock} it hands out and the
 * {@link LockOptions} of a request.
 *
 * @module
 */

import type { LockFailed } from "./errors.ts";
import { aborted, closed, type Requested } from "./internal/failures.ts";
import {
  checkFunction,
  checkKey,
  checkTestOptions,
  checkTestPermitOptions,
  parseKeys,
  parseLockOptions,
  parsePermitOptions,
  show,
} from "./internal/arguments.ts";
import { acquireAll, byKey } from "./internal/multi_lock.ts";
import type {
  Lock,
  LockInfo,
  LockOptions,
  LockRequest,
  MultiLock,
  Permit,
  PermitOptions,
  PermitRequest,
  TestLockOptions,
  TestPermitOptions,
} from "./lock.ts";

export type {
  Lock,
  LockHolder,
  LockInfo,
  LockOptions,
  LockRequest,
  TestLockOptions,
} from "./lock.ts";
export type { MultiLock, Permit, PermitOptions, PermitRequest, TestPermitOptions } from "./lock.ts";

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

  // ---- Permits and multi-key locks (issue 13) ----

  /**
   * Acquires a permit of the counting semaphore `key`: at most `limit` holders at once, served
   * first come, first served. A permit key is not a lock key (`getLock` on the same string never
   * conflicts). Timeouts, aborts, `close()` and lost connections behave as for {@link getLock}.
   *
   * Each request is judged by its own `limit`: it is granted when nobody waits ahead of it and
   * fewer than `limit` permits are held (on PostgreSQL: one of the slots `0…limit-1` is free).
   * Holders who disagree on the limit therefore never make it unsafe for the strictest: at any
   * moment, for every L, at most L permits are held by requests whose limit is L or less.
   *
   * @example At most three calls to the payment API at once
   * ```ts
   * import { LocalState } from "@momotor/shared-state";
   *
   * const state = new LocalState();
   * await using _permit = await state.getPermit("payment-api", { limit: 3, timeout: 5000 });
   * // … call the API …
   * ```
   *
   * @param key Any string.
   * @param options `limit` (a positive safe integer, required), timeout and abort signal.
   * @returns The held permit.
   * @throws {LockFailed} on timeout, abort, unreachable backend or closed state.
   * @throws {TypeError} for a non-string key, an unknown option or an ill-typed one.
   * @throws {RangeError} for a limit that is not a positive safe integer, or a bad timeout.
   */
  getPermit(key: string, options: PermitOptions): Promise<Permit> {
    return this.#getPermit(key, options, "getPermit options");
  }

  /**
   * Whether a {@link StateABC.getPermit} with this limit and `timeout: 0` would succeed right
   * now. The answer is transient.
   *
   * @param key Any string.
   * @param options The limit to test for.
   * @returns `true` when a permit is free for that limit.
   * @throws {LockFailed} when the state is closed or the backend cannot be reached.
   */
  testPermit(key: string, options: TestPermitOptions): Promise<boolean> {
    let limit: number;
    try {
      checkKey(key);
      limit = checkTestPermitOptions(options);
    } catch (error) {
      return Promise.reject(error);
    }
    const failure = this.#refuse({ key, exclusive: false, limit }, undefined);
    if (failure !== undefined) return Promise.reject(failure);
    return this.probePermit(key, limit);
  }

  /**
   * Runs `fn` while holding a permit of `key`, and releases it when `fn` returns or throws.
   *
   * @example
   * ```ts
   * import { LocalState } from "@momotor/shared-state";
   *
   * const state = new LocalState();
   * const answer = await state.withPermit("payment-api", () => 42, { limit: 3 });
   * ```
   *
   * @param key Any string.
   * @param fn The work; it receives the held permit.
   * @param options `limit` (required), timeout and abort signal.
   * @returns What `fn` returns.
   */
  async withPermit<T>(
    key: string,
    fn: (permit: Permit) => T | Promise<T>,
    options: PermitOptions,
  ): Promise<T> {
    checkFunction(fn, "fn");
    const permit = await this.#getPermit(key, options, "withPermit options");
    try {
      return await fn(permit);
    } finally {
      await permit.release();
    }
  }

  /**
   * Acquires the locks on every key in `keys`, all in the mode of `options.exclusive`, all or
   * none: a request that fails (busy, timeout, abort, close) holds none of them afterwards. Keys
   * are taken in one canonical order whatever order the caller names them in (LocalState and the
   * broker: by key; PostgreSQL: by lock id), so that callers never deadlock each other. A key
   * named twice is locked once. Release them all with one {@link MultiLock.release}.
   *
   * @example Move money between two accounts
   * ```ts
   * import { LocalState } from "@momotor/shared-state";
   *
   * const state = new LocalState();
   * await using _locks = await state.getLocks(["account/7", "account/3"], { timeout: 5000 });
   * // … debit one, credit the other …
   * ```
   *
   * @param keys The keys: an array of strings, at least one.
   * @param options Mode (of every key), timeout (for them all, from the call) and abort signal.
   * @returns The held locks.
   * @throws {LockFailed} naming the key that could not be acquired.
   * @throws {TypeError} for keys that are not an array of strings, or a bad option.
   * @throws {RangeError} for an empty array of keys, or a bad timeout.
   */
  getLocks(keys: readonly string[], options?: LockOptions): Promise<MultiLock> {
    return this.#getLocks(keys, options, "getLocks options");
  }

  /**
   * Runs `fn` while holding the locks on every key in `keys` (see {@link StateABC.getLocks}), and
   * releases them all when `fn` returns or throws.
   *
   * @param keys The keys: an array of strings, at least one.
   * @param fn The critical section; it receives the held locks.
   * @param options Mode, timeout and abort signal.
   * @returns What `fn` returns.
   */
  async withLocks<T>(
    keys: readonly string[],
    fn: (locks: MultiLock) => T | Promise<T>,
    options?: LockOptions,
  ): Promise<T> {
    checkFunction(fn, "fn");
    const locks = await this.#getLocks(keys, options, "withLocks options");
    try {
      return await fn(locks);
    } finally {
      await locks.release();
    }
  }

  /**
   * The backend's {@link StateABC.getPermit}. Arguments are valid, the state is open and the
   * signal not aborted. Must settle with a held permit or reject with {@link LockFailed} (whose
   * `limit` is the request's).
   *
   * @param key The permit key.
   * @param request The validated request, with its limit.
   */
  protected abstract acquirePermit(key: string, request: PermitRequest): Promise<Permit>;

  /**
   * The backend's {@link StateABC.testPermit}. Arguments are valid and the state is open.
   *
   * @param key The permit key.
   * @param limit The limit to test for.
   */
  protected abstract probePermit(key: string, limit: number): Promise<boolean>;

  /**
   * The backend's {@link StateABC.getLocks}: by default the keys one at a time with
   * {@link StateABC.acquire}, in the order of {@link StateABC.lockOrder}, releasing what was taken
   * when one fails. Arguments are valid (distinct keys), the state is open and the signal not
   * aborted.
   *
   * @param keys The distinct keys, in the caller's order.
   * @param request The validated request, for every key.
   */
  protected acquireLocks(keys: readonly string[], request: LockRequest): Promise<MultiLock> {
    return acquireAll(keys, this.lockOrder(keys), request, (key) => {
      // The state may be closed, or the signal aborted, between two keys.
      const failure = this.#refusal(key, request.exclusive, request.signal);
      return failure === undefined ? this.acquire(key, request) : Promise.reject(failure);
    });
  }

  /**
   * The canonical order in which {@link StateABC.acquireLocks} takes keys: one total order that
   * every user of the same backing shares. By default by UTF-16 code units.
   *
   * @param keys Distinct keys.
   * @returns The same keys, in the canonical order.
   */
  protected lockOrder(keys: readonly string[]): readonly string[] {
    return byKey(keys);
  }

  #refuse(requested: Requested, signal: AbortSignal | undefined): LockFailed | undefined {
    if (this.#closed) return closed(requested);
    if (signal?.aborted) return aborted(requested, signal);
    return undefined;
  }

  #getPermit(key: string, options: PermitOptions, what: string): Promise<Permit> {
    let request: PermitRequest;
    try {
      checkKey(key);
      request = parsePermitOptions(options, what);
    } catch (error) {
      return Promise.reject(error);
    }
    const failure = this.#refuse({ key, exclusive: false, limit: request.limit }, request.signal);
    if (failure !== undefined) return Promise.reject(failure);
    return this.acquirePermit(key, request);
  }

  #getLocks(
    keys: readonly string[],
    options: LockOptions | undefined,
    what: string,
  ): Promise<MultiLock> {
    let distinct: string[];
    let request: LockRequest;
    try {
      distinct = parseKeys(keys);
      request = parseLockOptions(options, what);
    } catch (error) {
      return Promise.reject(error);
    }
    const failure = this.#refusal(distinct[0], request.exclusive, request.signal);
    if (failure !== undefined) return Promise.reject(failure);
    return this.acquireLocks(distinct, request);
  }
}
