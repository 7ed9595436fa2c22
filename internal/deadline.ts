/** Timers for wait deadlines that survive delays of 2^31 ms and more. */

/** setTimeout fires at once for delays above this (a signed 32-bit overflow). */
const MAX_DELAY = 2 ** 31 - 1;

/** Calls `onExpire` once `performance.now()` reaches `deadline`, unless cancelled first. */
export class DeadlineTimer {
  #id: ReturnType<typeof setTimeout> | undefined;
  readonly #deadline: number;
  readonly #onExpire: () => void;

  constructor(deadline: number, onExpire: () => void) {
    this.#deadline = deadline;
    this.#onExpire = onExpire;
    this.#arm();
  }

  #arm(): void {
    const remaining = this.#deadline - performance.now();
    this.#id = remaining > MAX_DELAY
      ? setTimeout(() => this.#arm(), MAX_DELAY)
      : setTimeout(this.#onExpire, Math.max(0, remaining));
  }

  /** Stops the timer; harmless after it fired. */
  cancel(): void {
    clearTimeout(this.#id);
  }
}
