/** The part of a {@link Lock} that every backend shares: lazy signal, single release, loss. */

import { LockLost, type LockLostReason } from "../errors.ts";
import type { Lock } from "../lock.ts";

/** A settled `release()` result, shared: freeing many locks needs no promise each. */
export const RELEASED: Promise<void> = Promise.resolve();

/**
 * A held lock. A backend subclass frees the lock in {@link BaseLock.unlock}, and calls
 * {@link BaseLock.lose} when the backend takes the lock away.
 *
 * The signal is created on first use: most locks are released without anyone reading it, and an
 * AbortController costs more than the rest of an uncontended acquire.
 */
export abstract class BaseLock implements Lock {
  readonly key: string;
  readonly exclusive: boolean;
  #controller: AbortController | undefined;
  #lost: LockLost | undefined;
  #release: Promise<void> | undefined;

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

  release(): Promise<void> {
    return this.#release ??= this.unlock();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }

  /**
   * The backend lost this lock: abort its signal with {@link LockLost}; `release()` becomes a
   * no-op. Does nothing once released or lost.
   *
   * @param reason Why, as data.
   * @param message What happened, in a few words.
   * @param cause The underlying error, if any.
   */
  lose(reason: LockLostReason, message: string, cause?: unknown): void {
    if (this.#release !== undefined) return;
    this.#release = RELEASED;
    this.#lost = new LockLost(message, { key: this.key, exclusive: this.exclusive, reason, cause });
    this.#controller?.abort(this.#lost);
  }

  /** Frees the lock in the backend. Called at most once; must never reject. */
  protected abstract unlock(): Promise<void>;
}
