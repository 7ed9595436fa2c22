/**
 * The waiting phase of one lock request, the same in every backend (issue 10): the promise the
 * caller awaits, the deadline timer, the abort listener, and settling exactly once. Permits (issue
 * 13) wait the same way: their `requested` carries the limit, which their failures name.
 */

import type { LockFailed } from "../errors.ts";
import type { Lock, LockRequest } from "../lock.ts";
import { DeadlineTimer } from "./deadline.ts";
import { aborted, type Requested, timedOut } from "./failures.ts";

/** Why a request stopped waiting on its own. */
export type GiveUpReason = "timeout" | "aborted";

/**
 * A request that waits: settle it with {@link RequestWait.grant} or {@link RequestWait.fail}.
 * When its timeout passes or its signal aborts first, it fails by itself (with the reason's
 * {@link LockFailed}) and then calls `onGiveUp`, so that the backend takes it out of its queue.
 */
export class RequestWait<T = Lock> {
  /** What the caller awaits. */
  readonly promise: Promise<T>;
  #resolve!: (value: T) => void;
  #reject!: (error: LockFailed) => void;
  #timer: DeadlineTimer | undefined;
  #onAbort: (() => void) | undefined;
  #settled = false;

  /**
   * Starts waiting.
   *
   * @param requested The key and the mode, for the failure.
   * @param request The validated request: its deadline and signal.
   * @param onGiveUp Called once the request failed by itself, to leave the backend's queue.
   */
  constructor(
    readonly requested: Requested,
    readonly request: LockRequest,
    onGiveUp: (wait: RequestWait<T>, why: GiveUpReason) => void,
  ) {
    this.promise = new Promise<T>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    const { deadline, signal } = request;
    if (deadline !== undefined && !request.tryOnce) {
      this.#timer = new DeadlineTimer(deadline, () => {
        if (this.fail(timedOut(requested, request.timeout))) onGiveUp(this, "timeout");
      });
    }
    if (signal !== undefined) {
      this.#onAbort = () => {
        if (this.fail(aborted(requested, signal))) onGiveUp(this, "aborted");
      };
      signal.addEventListener("abort", this.#onAbort, { once: true });
    }
  }

  /** Whether it was granted or failed already. */
  get settled(): boolean {
    return this.#settled;
  }

  /** Grants it; `false` (and nothing done) if it was settled already. */
  grant(value: T): boolean {
    if (!this.#settle()) return false;
    this.#resolve(value);
    return true;
  }

  /** Fails it; `false` (and nothing done) if it was settled already. */
  fail(error: LockFailed): boolean {
    if (!this.#settle()) return false;
    this.#reject(error);
    return true;
  }

  #settle(): boolean {
    if (this.#settled) return false;
    this.#settled = true;
    this.#timer?.cancel();
    if (this.#onAbort !== undefined) {
      this.request.signal!.removeEventListener("abort", this.#onAbort);
    }
    return true;
  }
}
