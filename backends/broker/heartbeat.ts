/**
 * Application-level heartbeats (browsers cannot send WebSocket pings): the client pings every
 * interval and the broker answers at once; each side declares the other dead after two intervals
 * without any frame from it, so a half-open connection is noticed within three intervals.
 *
 * Only the client pings: a frame that gets no prompt answer leaves its TCP segment unacknowledged
 * for the peer's delayed-ACK time (40 ms on Linux), and a runtime that cannot disable Nagle's
 * algorithm (Deno's WebSocket client) would hold its next frame that long.
 */

import { optionRangeError, optionTypeError } from "../../internal/arguments.ts";

/** Checks that the peer is alive; runs from construction until {@link Heartbeat.stop}. */
export class Heartbeat {
  /** When a tick last saw that a frame had arrived (or the start). */
  #lastHeard = performance.now();
  /**
   * A frame arrived since the last tick. A flag, not a clock read per frame (issue 14: the clock
   * read was a tenth of the broker's per-frame cost); the tick reads the clock instead.
   */
  #heard = false;
  readonly #timer: ReturnType<typeof setInterval>;

  /**
   * @param interval Milliseconds between checks (and pings).
   * @param ping Sends a ping (or nothing); called every interval while the peer is alive.
   * @param dead Called once when the peer was silent for two intervals; the heartbeat stops.
   */
  constructor(interval: number, ping: () => void, dead: (silentFor: number) => void) {
    this.#timer = setInterval(() => {
      const now = performance.now();
      if (this.#heard) {
        this.#heard = false;
        this.#lastHeard = now;
      }
      // Seen at tick granularity: silent for two intervals since the tick that last saw a frame
      // is two to three intervals since that frame.
      const silentFor = now - this.#lastHeard;
      if (silentFor >= 2 * interval) {
        this.stop();
        dead(silentFor);
      } else {
        ping();
      }
    }, interval);
  }

  /** Records that a frame arrived. */
  heard(): void {
    this.#heard = true;
  }

  /** Stops the checks; harmless twice. */
  stop(): void {
    clearInterval(this.#timer);
  }
}

/**
 * Validates an interval option (milliseconds, > 0); `undefined` gives `fallback`.
 *
 * @param what The options' name in messages (`"BrokerState options"`).
 */
export function checkInterval(
  value: unknown,
  what: string,
  name: string,
  fallback: number,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number") {
    throw optionTypeError(what, name, "a number of milliseconds", value);
  }
  if (!(value > 0) || value > 2 ** 31 - 1) {
    throw optionRangeError(what, name, "a number of milliseconds > 0 and < 2^31", value);
  }
  return value;
}
