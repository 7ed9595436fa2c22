/**
 * While `run` waits for a lock longer than a second, a line on stderr says so:
 * which key, which mode, how long so far and how long at most (issue 11), then again every
 * minute; and once the lock comes, after how long. Silent for a wait shorter than a second.
 */

import { duration, lockName, permitName, tell } from "./messages.ts";

/** The first line comes after this long a wait. */
export const FIRST_NOTICE_MS = 1000;
/** Then one line every so often. */
export const REPEAT_NOTICE_MS = 60_000;

/** A running notice; {@link WaitNotice.stop} ends it. */
export class WaitNotice {
  readonly #started = performance.now();
  readonly #what: string;
  readonly #limit: string;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #told = false;

  /**
   * Starts counting.
   *
   * @param key The key waited for.
   * @param exclusive The mode waited for.
   * @param timeout The wait's timeout in milliseconds, `undefined` for none.
   * @param limit Issue 13: for a permit, its limit (`exclusive` is then ignored).
   */
  constructor(key: string, exclusive: boolean, timeout: number | undefined, limit?: number) {
    this.#what = limit === undefined ? lockName(key, exclusive) : permitName(key, limit);
    this.#limit = timeout === undefined ? "no timeout" : `gives up after ${duration(timeout)}`;
    this.#timer = setTimeout(() => this.#tell(), FIRST_NOTICE_MS);
  }

  #tell(): void {
    this.#told = true;
    const waited = duration(performance.now() - this.#started);
    tell(`waiting for the ${this.#what}: ${waited} so far (${this.#limit})`);
    this.#timer = setTimeout(() => this.#tell(), REPEAT_NOTICE_MS);
  }

  /** Ends the notice; after a notice, `acquired` says after how long the lock came. */
  stop(acquired: boolean): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (acquired && this.#told) {
      tell(`got the ${this.#what} after ${duration(performance.now() - this.#started)}`);
    }
  }
}
