/**
 * Application-level heartbeats (browsers cannot send WebSocket pings): each side pings every
 * interval and declares the peer dead after two intervals without any frame from it. A half-open
 * connection is therefore noticed within three intervals.
 */

/** Checks that the peer is alive; runs from construction until {@link Heartbeat.stop}. */
export class Heartbeat {
  #lastHeard = performance.now();
  readonly #timer: ReturnType<typeof setInterval>;

  /**
   * @param interval Milliseconds between checks (and pings).
   * @param ping Sends a ping; called every interval while the peer is alive.
   * @param dead Called once when the peer was silent for two intervals; the heartbeat stops.
   */
  constructor(interval: number, ping: () => void, dead: (silentFor: number) => void) {
    this.#timer = setInterval(() => {
      const silentFor = performance.now() - this.#lastHeard;
      if (silentFor > 2 * interval) {
        this.stop();
        dead(silentFor);
      } else {
        ping();
      }
    }, interval);
  }

  /** Records that a frame arrived. */
  heard(): void {
    this.#lastHeard = performance.now();
  }

  /** Stops the checks; harmless twice. */
  stop(): void {
    clearInterval(this.#timer);
  }
}

/** Validates a heartbeat interval option; `undefined` gives `fallback`. */
export function checkInterval(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0 || value > 2 ** 31 - 1) {
    throw new RangeError(`${name} must be a number of milliseconds > 0, got ${String(value)}`);
  }
  return value;
}
