/**
 * The part of a {@link Lock} (and of a {@link Permit}) that every backend shares: lazy signal,
 * single release, loss, and a lock's fencing token.
 */

import { LockLost, type LockLostReason } from "../errors.ts";
import type { Lock, Permit } from "../lock.ts";
import type { Requested } from "./failures.ts";

/** A settled `release()` result, shared: freeing many locks needs no promise each. */
export const RELEASED: Promise<void> = Promise.resolve();

/** Set by {@link BaseHold}'s static block, which alone can reach a hold's private loss watcher. */
let watchHold: (hold: object, onLost: ((lost: LockLost) => void) | undefined) => boolean;

/**
 * Something held: a lock or a permit. A backend subclass frees it in {@link BaseHold.unlock},
 * makes a lock's fencing token in {@link BaseHold.fence}, and calls {@link BaseHold.lose} when the
 * backend takes it away.
 *
 * The signal is created on first use: most locks are released without anyone reading it, and an
 * AbortController costs more than the rest of an uncontended acquire. The fencing token likewise:
 * nothing is paid for it until `fencingToken()` is called.
 */
abstract class BaseHold {
  #controller: AbortController | undefined;
  #lost: LockLost | undefined;
  #release: Promise<void> | undefined;
  #token: Promise<bigint> | undefined;
  /** `release()` was called while the token was being made: the unlock waits for it. */
  #unlockPending = false;
  /** The package's own watcher of a loss: see {@link watchLoss}. */
  #onLost: ((lost: LockLost) => void) | undefined = undefined;

  static {
    watchHold = (hold, onLost) => {
      if (!(hold instanceof BaseHold)) return false;
      const lost = hold.#lost;
      if (lost !== undefined) onLost?.(lost);
      else hold.#onLost = onLost;
      return true;
    };
  }

  /** What its LockLost names: the key and the mode, and a permit's limit. */
  protected abstract get requested(): Requested;

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#lost !== undefined) this.#controller.abort(this.#lost);
    }
    return this.#controller.signal;
  }

  /** `true` until released or lost. */
  get held(): boolean {
    return this.#release === undefined;
  }

  /**
   * Frees the lock. While the fencing token is being made, the unlock waits for it: a token is
   * only ever made while the lock is held (in PostgreSQL's transaction mode it is checked
   * against `pg_locks`, which a release in between would fool).
   */
  release(): Promise<void> {
    if (this.#release === undefined) {
      const token = this.#token;
      if (token === undefined) {
        this.#release = this.unlock();
      } else {
        this.#unlockPending = true;
        const unlock = () => {
          // Lost meanwhile: the backend freed it already, and its books no longer list it.
          if (!this.#unlockPending) return;
          this.#unlockPending = false;
          return this.unlock();
        };
        this.#release = token.then(unlock, unlock);
      }
    }
    return this.#release;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }

  /** A lock's `fencingToken()` (issue 12): made once, while held, by {@link BaseHold.fence}. */
  protected fencing(): Promise<bigint> {
    if (this.#token !== undefined) return this.#token;
    if (this.#lost !== undefined) return Promise.reject(this.#lost);
    if (this.#release !== undefined) {
      return Promise.reject(
        new Error(
          `fencingToken() was first called after release() of the lock on ${
            JSON.stringify(this.requested.key.slice(0, 80))
          }: ask for the token while the lock is held`,
        ),
      );
    }
    let made: Promise<bigint>;
    try {
      made = this.fence();
    } catch (error) {
      made = Promise.reject(error);
    }
    const token: Promise<bigint> = made.catch((error) => {
      // A later call may try again (while the lock is still held).
      if (this.#token === token) this.#token = undefined;
      throw this.#lost ?? error;
    });
    this.#token = token;
    return token;
  }

  /**
   * The backend lost this lock: abort its signal with {@link LockLost}; `release()` becomes a
   * no-op. Does nothing once released (a release waiting for the token only skips its unlock).
   *
   * @param reason Why, as data.
   * @param message What happened, in a few words.
   * @param cause The underlying error, if any.
   */
  lose(reason: LockLostReason, message: string, cause?: unknown): void {
    if (this.#unlockPending) {
      this.#unlockPending = false;
      return;
    }
    if (this.#release !== undefined) return;
    this.#release = RELEASED;
    const { key, exclusive, limit } = this.requested;
    this.#lost = new LockLost(message, { key, exclusive, limit, reason, cause });
    const onLost = this.#onLost;
    this.#onLost = undefined;
    onLost?.(this.#lost);
    this.#controller?.abort(this.#lost);
  }

  /** Frees the lock in the backend. Called at most once; must never reject. */
  protected abstract unlock(): Promise<void>;

  /**
   * Makes the fencing token, while the lock is held; called at most once at a time, and never
   * after `unlock`. Rejects when it cannot (the lock was lost: `fencingToken()` then rejects with
   * the lock's LockLost). Every backend of the package makes one; the default rejects.
   */
  protected fence(): Promise<bigint> {
    return Promise.reject(new Error(`${this.constructor.name} makes no fencing tokens`));
  }
}

/**
 * Issue 14: has `onLost` called once when `hold` (a lock or permit that a served state handed
 * out) is lost while held (at once if it was lost already), or stops that with `undefined`. For
 * the package's own code on a hot path (the broker's session): reading `signal` makes an
 * AbortController and a listener, which cost more than the rest of an uncontended acquire.
 * `false` when `hold` is not one of the package's own (then watch its `signal`).
 */
export function watchLoss(
  hold: object,
  onLost: ((lost: LockLost) => void) | undefined,
): boolean {
  return watchHold(hold, onLost);
}

/** A held lock: see {@link BaseHold}. */
export abstract class BaseLock extends BaseHold implements Lock {
  readonly key: string;
  readonly exclusive: boolean;

  constructor(key: string, exclusive: boolean) {
    super();
    this.key = key;
    this.exclusive = exclusive;
  }

  protected get requested(): Requested {
    return this;
  }

  fencingToken(): Promise<bigint> {
    return this.fencing();
  }
}

/** A held permit (issue 13): see {@link BaseHold}. Its LockLost names its limit. */
export abstract class BasePermit extends BaseHold implements Permit {
  readonly key: string;
  readonly limit: number;

  constructor(key: string, limit: number) {
    super();
    this.key = key;
    this.limit = limit;
  }

  /** Always `false`: a permit has no mode (its failures and losses say `exclusive: false`). */
  get exclusive(): false {
    return false;
  }

  protected get requested(): Requested {
    return this;
  }
}
