/**
 * The part of a {@link Lock} (and of a {@link Permit}) that every backend shares: lazy signal,
 * single release, loss.
 */

import { LockLost, type LockLostReason } from "../errors.ts";
import type { Lock, Permit } from "../lock.ts";
import type { Requested } from "./failures.ts";

/** A settled `release()` result, shared: freeing many locks needs no promise each. */
export const RELEASED: Promise<void> = Promise.resolve();

/**
 * Something held: a lock or a permit. A backend subclass frees it in {@link BaseHold.unlock}, and
 * calls {@link BaseHold.lose} when the backend takes it away.
 *
 * The signal is created on first use: most locks are released without anyone reading it, and an
 * AbortController costs more than the rest of an uncontended acquire.
 */
abstract class BaseHold {
  #controller: AbortController | undefined;
  #lost: LockLost | undefined;
  #release: Promise<void> | undefined;

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
    const { key, exclusive, limit } = this.requested;
    this.#lost = new LockLost(message, { key, exclusive, limit, reason, cause });
    this.#controller?.abort(this.#lost);
  }

  /** Frees the lock in the backend. Called at most once; must never reject. */
  protected abstract unlock(): Promise<void>;
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
