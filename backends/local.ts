/**
 * {@link LocalState}: named read/write locks in the memory of one process (or one worker).
 *
 * @module
 */

import { checkOptions, optionNames, optionTypeError } from "../internal/arguments.ts";
import { BaseLock, RELEASED } from "../internal/base_lock.ts";
import { busy, closed } from "../internal/failures.ts";
import { nextProcessToken } from "../internal/fencing.ts";
import { holderEntry, labelOf, requestTime } from "../internal/holders.ts";
import { append, type List, unlink } from "../internal/intrusive_list.ts";
import { RequestWait } from "../internal/request_wait.ts";
import { backendLogger, debugEnabled } from "../internal/log.ts";
import {
  type Lock,
  type LockHolder,
  type LockInfo,
  type LockRequest,
  type Permit,
  type PermitRequest,
  StateABC,
} from "../state.ts";
import { PermitTable } from "./local_permits.ts";

const log = backendLogger("local");

/** Options of {@link LocalState}. */
export interface LocalStateOptions {
  /** A name for this state in debug logs, to tell several apart. */
  name?: string;
}

const LOCAL_OPTIONS = optionNames<LocalStateOptions>({ name: true });

/** Who holds a key and who waits for it. Exists only while someone does (then it is deleted). */
class KeyState implements List<LocalLock> {
  /** Number of shared holders. */
  shared = 0;
  /** Whether an exclusive holder has it. */
  exclusive = false;
  /** The queue of waiting requests, first come first. */
  head: LocalLock | undefined = undefined;
  tail: LocalLock | undefined = undefined;
  /** The holders, so that `close()` can abort their signals and `inspect` list them. */
  readonly holders: List<LocalLock> = { head: undefined, tail: undefined };

  get unused(): boolean {
    return this.shared === 0 && !this.exclusive && this.head === undefined;
  }
}

/** A request, then a held lock: it sits in its key's queue while waiting, in the held list after. */
class LocalLock extends BaseLock {
  prev: LocalLock | undefined = undefined;
  next: LocalLock | undefined = undefined;
  /** Set while the request waits in its key's queue. */
  wait: RequestWait | undefined = undefined;
  readonly entry: KeyState;
  readonly #state: LocalState;
  readonly #release: (lock: LocalLock) => void;

  constructor(
    state: LocalState,
    release: (lock: LocalLock) => void,
    entry: KeyState,
    key: string,
    exclusive: boolean,
  ) {
    super(key, exclusive);
    this.#state = state;
    this.#release = release;
    this.entry = entry;
  }

  protected unlock(): Promise<void> {
    if (!this.#state.closed) this.#release(this);
    return RELEASED;
  }

  /** A token of this process's counter (see `internal/fencing.ts`). */
  protected override fence(): Promise<bigint> {
    return Promise.resolve(nextProcessToken());
  }
}

/**
 * In-memory named read/write locks for the tasks of one process: per key, many shared holders or
 * one exclusive holder, granted first come, first served (a waiting exclusive request blocks shared
 * requests that arrive after it). Acquire and release are O(1); a key takes memory only while it is
 * held or awaited.
 *
 * It is the reference backend: every other backend passes the same conformance suite.
 *
 * @example
 * ```ts
 * import { LocalState } from "@momotor/shared-state";
 *
 * await using state = new LocalState();
 * {
 *   await using _reader = await state.getLock("cache", { exclusive: false });
 *   console.log(await state.testLock("cache", { exclusive: false })); // true: readers share
 *   console.log(await state.testLock("cache")); // false: a writer would wait
 * }
 * ```
 */
export class LocalState extends StateABC {
  readonly #entries = new Map<string, KeyState>();
  readonly #name: string;
  readonly #releaseLock = (lock: LocalLock) => this.#release(lock);
  /** Counting semaphores (issue 13), apart from the locks: a permit key is not a lock key. */
  readonly #permits = new PermitTable();
  /**
   * The entry of the key released last, kept (unused) in the map so that a key locked over and
   * over does not allocate, insert and delete an entry each time. At most one: unused keys still
   * take no memory beyond this one entry.
   */
  #spare: { key: string; entry: KeyState } | undefined = undefined;

  /**
   * Makes an empty state.
   *
   * @param options A name for debug logs.
   * @throws {TypeError} for an unknown or ill-typed option.
   */
  constructor(options: LocalStateOptions = {}) {
    super();
    checkOptions(options, LOCAL_OPTIONS, "LocalState options");
    if (options.name !== undefined && typeof options.name !== "string") {
      throw optionTypeError("LocalState options", "name", "a string", options.name);
    }
    this.#name = options.name ?? "local";
  }

  /**
   * Number of keys (lock keys and permit keys) held or awaited right now (unused keys take no
   * memory).
   */
  get size(): number {
    return this.#entries.size - (this.#spare === undefined ? 0 : 1) + this.#permits.size;
  }

  /** Grants at once when the key is free and nobody waits, else queues the request. */
  protected acquire(key: string, request: LockRequest): Promise<Lock> {
    const { exclusive } = request;
    let entry = this.#entries.get(key);
    if (entry === undefined) {
      entry = new KeyState();
      this.#entries.set(key, entry);
    } else if (entry === this.#spare?.entry) {
      this.#spare = undefined;
    } else if (
      entry.head !== undefined || entry.exclusive || (exclusive && entry.shared > 0)
    ) {
      return this.#wait(key, entry, request);
    }
    const lock = new LocalLock(this, this.#releaseLock, entry, key, exclusive);
    this.#hold(lock);
    return Promise.resolve(lock);
  }

  /** Answers from the key's entry, without waiting. */
  protected probe(key: string, exclusive: boolean): Promise<boolean> {
    const entry = this.#entries.get(key);
    // A queue is never left with a grantable head, so any entry in use means a holder exists.
    const free = entry === undefined || entry.unused ||
      (!exclusive && !entry.exclusive && entry.head === undefined);
    return Promise.resolve(free);
  }

  /**
   * The key's holders and waiters in this state. Since when: what the broker told for its
   * clients, and for a waiting request with a timeout its start; no clock is read on the fast path.
   */
  protected override inspectKey(key: string): Promise<LockInfo> {
    const holders: LockHolder[] = [];
    const waiters: LockHolder[] = [];
    const entry = this.#entries.get(key);
    if (entry !== undefined) {
      for (let lock = entry.holders.head; lock !== undefined; lock = lock.next) {
        const label = labelOf(lock);
        holders.push(holderEntry(lock.exclusive, label?.since, label?.owner));
      }
      for (let lock = entry.head; lock !== undefined; lock = lock.next) {
        const request = lock.wait!.request;
        const label = labelOf(request.signal);
        waiters.push(
          holderEntry(lock.exclusive, label?.since ?? requestTime(request), label?.owner),
        );
      }
    }
    return Promise.resolve({ key, holders, waiters });
  }

  /** Grants at once when nobody waits and fewer than `limit` hold the key, else queues. */
  protected acquirePermit(key: string, request: PermitRequest): Promise<Permit> {
    return this.#permits.acquire(key, request);
  }

  /** Answers from the permit key's entry, without waiting. */
  protected probePermit(key: string, limit: number): Promise<boolean> {
    return Promise.resolve(this.#permits.probe(key, limit));
  }

  /** Fails every waiting request and marks every held lock lost. */
  protected shutdown(): Promise<void> {
    this.#permits.close();
    const held: LocalLock[] = [];
    for (const entry of this.#entries.values()) {
      for (let lock = entry.head; lock !== undefined; lock = entry.head) {
        unlink(entry, lock);
        this.#settle(lock).fail(closed(lock));
      }
      for (let lock = entry.holders.head; lock !== undefined; lock = entry.holders.head) {
        unlink(entry.holders, lock);
        held.push(lock);
      }
    }
    this.#entries.clear();
    this.#spare = undefined;
    for (const lock of held) lock.lose("closed", "the state was closed");
    log.debug("{name}: closed", { name: this.#name });
    return Promise.resolve();
  }

  #wait(key: string, entry: KeyState, request: LockRequest): Promise<Lock> {
    const { exclusive } = request;
    if (request.tryOnce) return Promise.reject(busy({ key, exclusive }));
    const lock = new LocalLock(this, this.#releaseLock, entry, key, exclusive);
    lock.wait = new RequestWait<Lock>(lock, request, () => this.#gaveUp(lock));
    append(entry, lock);
    if (debugEnabled(log)) {
      log.debug("{name}: waiting for {mode} lock on {key}", {
        name: this.#name,
        mode: exclusive ? "exclusive" : "shared",
        key,
      });
    }
    return lock.wait.promise;
  }

  /** Marks a lock held (from the fast path or the queue). */
  #hold(lock: LocalLock): void {
    if (lock.exclusive) lock.entry.exclusive = true;
    else lock.entry.shared++;
    append(lock.entry.holders, lock);
  }

  #release(lock: LocalLock): void {
    const entry = lock.entry;
    unlink(entry.holders, lock);
    if (lock.exclusive) entry.exclusive = false;
    else entry.shared--;
    if (entry.head !== undefined) this.#grantWaiting(entry);
    if (entry.unused) this.#keepSpare(lock.key, entry);
  }

  /** Keeps the entry of a key that became unused as the spare, dropping the previous spare. */
  #keepSpare(key: string, entry: KeyState): void {
    const spare = this.#spare;
    if (spare?.entry === entry) return;
    if (spare !== undefined) {
      this.#entries.delete(spare.key);
      spare.key = key;
      spare.entry = entry;
    } else {
      this.#spare = { key, entry };
    }
  }

  /** Grants the head of the queue while it fits: one exclusive, or a run of shared requests. */
  #grantWaiting(entry: KeyState): void {
    for (let lock = entry.head; lock !== undefined; lock = entry.head) {
      if (entry.exclusive || (lock.exclusive && entry.shared > 0)) return;
      unlink(entry, lock);
      const wait = this.#settle(lock);
      this.#hold(lock);
      wait.grant(lock);
      if (lock.exclusive) return;
    }
  }

  /** A waiting request timed out or was aborted: it leaves the queue and nothing behind. */
  #gaveUp(lock: LocalLock): void {
    if (lock.wait === undefined) return;
    lock.wait = undefined;
    const entry = lock.entry;
    unlink(entry, lock);
    // An exclusive request that leaves may unblock the shared requests behind it.
    if (entry.head !== undefined) this.#grantWaiting(entry);
    if (entry.unused) this.#entries.delete(lock.key);
  }

  /** Ends the waiting phase of `lock`. */
  #settle(lock: LocalLock): RequestWait {
    const wait = lock.wait!;
    lock.wait = undefined;
    return wait;
  }
}
