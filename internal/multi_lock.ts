/**
 * Locks on several keys, all or none, without deadlock (issue 13): the keys are taken one at a
 * time in a canonical order that every caller of the backend shares (LocalState: by key;
 * PostgreSQL: by lock id), so that no two callers ever hold one key each and wait for the other's.
 * A failure (busy, timeout, abort, close, lost connection) releases what was taken before it is
 * reported. One {@link MultiLock} stands for them all: one `release()`, one `signal`.
 */

import type { Lock, LockRequest, MultiLock } from "../lock.ts";
import { aborted } from "./failures.ts";

/** The canonical order of LocalState (and the default): by UTF-16 code units, as `sort()` does. */
export function byKey(keys: readonly string[]): string[] {
  return [...keys].sort();
}

/**
 * Takes `ordered` one key at a time with `acquireOne`; on the first failure releases what it took
 * (and waits for that) before rejecting with that failure, so that nothing is held afterwards.
 * An abort releases what was taken at once, in the abort itself: a request made right after the
 * abort (the next frame a broker reads) finds the keys free already.
 *
 * @param keys The distinct keys as the caller named them, for {@link MultiLock.keys}.
 * @param ordered The same keys in the canonical order.
 * @param request The request of every key: its mode and its signal.
 * @param acquireOne Takes one key with the request's deadline and signal; rejects with LockFailed
 *   (at once once the signal is aborted).
 */
export async function acquireAll(
  keys: readonly string[],
  ordered: readonly string[],
  request: LockRequest,
  acquireOne: (key: string) => Promise<Lock>,
): Promise<MultiLock> {
  const { exclusive, signal } = request;
  const held: Lock[] = [];
  let abortedDuring = false;
  const onAbort = () => {
    abortedDuring = true;
    for (const lock of held) lock.release();
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for (const key of ordered) {
      const lock = await acquireOne(key);
      held.push(lock);
      // Granted as the signal aborted: the request fails all the same, holding nothing.
      if (abortedDuring) throw aborted({ key, exclusive }, signal!);
    }
  } catch (error) {
    await Promise.all(held.map((lock) => lock.release()));
    throw error;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
  return new HeldLocks(keys, exclusive, held);
}

/** Locks held together: released together, lost together. */
export class HeldLocks implements MultiLock {
  readonly keys: readonly string[];
  readonly exclusive: boolean;
  readonly #locks: readonly Lock[];
  readonly #controller = new AbortController();
  #release: Promise<void> | undefined;

  /**
   * @param keys The keys as the caller named them.
   * @param exclusive The mode of every lock.
   * @param locks The held locks; when one is lost, the others are released.
   */
  constructor(keys: readonly string[], exclusive: boolean, locks: readonly Lock[]) {
    this.keys = Object.freeze([...keys]);
    this.exclusive = exclusive;
    this.#locks = locks;
    for (const lock of locks) {
      const signal = lock.signal;
      if (signal.aborted) {
        this.#lose(signal.reason);
        break;
      }
      signal.addEventListener("abort", () => this.#lose(signal.reason), { once: true });
    }
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  release(): Promise<void> {
    return this.#release ??= Promise.all(this.#locks.map((lock) => lock.release())).then(() => {});
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }

  /** One lock was lost: the signal says which, and the others are released. */
  #lose(reason: unknown): void {
    if (this.#release !== undefined) return;
    this.release();
    this.#controller.abort(reason);
  }
}
