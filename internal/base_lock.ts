/** The part of a {@link Lock} that every backend shares: lazy signal, single release, loss, token. */

import { LockLost, type LockLostReason } from "../errors.ts";
import type { Lock } from "../lock.ts";

/** A settled `release()` result, shared: freeing many locks needs no promise each. */
export const RELEASED: Promise<void> = Promise.resolve();

/**
 * A held lock. A backend subclass frees the lock in {@link BaseLock.unlock}, makes its fencing
 * token in {@link BaseLock.fence}, and calls {@link BaseLock.lose} when the backend takes the lock
 * away.
 *
 * The signal is created on first use: most locks are released without anyone reading it, and an
 * AbortController costs more than the rest of an uncontended acquire. The fencing token likewise:
 * nothing is paid for it until `fencingToken()` is called.
 */
export abstract class BaseLock implements Lock {
  readonly key: string;
  readonly exclusive: boolean;
  #controller: AbortController | undefined;
  #lost: LockLost | undefined;
  #release: Promise<void> | undefined;
  #token: Promise<bigint> | undefined;
  /** `release()` was called while the token was being made: the unlock waits for it. */
  #unlockPending = false;

  constructor(key: string, exclusive: boolean) {
    this.key = key;
    this.exclusive = exclusive;
  }

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

  fencingToken(): Promise<bigint> {
    if (this.#token !== undefined) return this.#token;
    if (this.#lost !== undefined) return Promise.reject(this.#lost);
    if (this.#release !== undefined) {
      return Promise.reject(
        new Error(
          `fencingToken() was first called after release() of the lock on ${
            JSON.stringify(this.key.slice(0, 80))
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
    this.#lost = new LockLost(message, { key: this.key, exclusive: this.exclusive, reason, cause });
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
