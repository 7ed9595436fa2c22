/** The workers of the demo and the timeline they print. */

import type { StateABC } from "../mod.ts";

/** One visit to the critical section. */
export interface Step {
  mode: "shared" | "exclusive";
  /** How long the lock is held. */
  ms: number;
  /** How long to work before asking for the lock. */
  after?: number;
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Prints events with the time since the start and who holds the key. */
export class Timeline {
  readonly #start: number;
  readonly #print: (line: string) => void;
  readonly #holders = new Map<string, string>();
  #waits: number[] = [];

  constructor(start: number, print: (line: string) => void) {
    this.#start = start;
    this.#print = print;
  }

  event(worker: string, what: "waits" | "holds" | "releases", mode: Step["mode"]): void {
    if (what === "holds") this.#holders.set(worker, mode);
    if (what === "releases") this.#holders.delete(worker);
    const seconds = ((performance.now() - this.#start) / 1000).toFixed(3);
    const holders = [...this.#holders].map(([name, m]) =>
      `${name}${m === "exclusive" ? "(X)" : ""}`
    );
    this.#print(
      `+${seconds}s  ${worker.padEnd(10)} ${what.padEnd(8)} ${mode.padEnd(9)}  holders: ${
        holders.join(", ") || "-"
      }`,
    );
  }

  waited(ms: number): void {
    this.#waits.push(ms);
  }

  summary(): string {
    const total = this.#waits.reduce((sum, ms) => sum + ms, 0);
    const longest = Math.max(0, ...this.#waits);
    return `${this.#waits.length} critical sections, ${
      total.toFixed(0)
    } ms waited in all, longest wait ${longest.toFixed(0)} ms`;
  }
}

/** Runs one worker's steps against `state`, reporting to `timeline`. */
export async function runWorker(
  state: StateABC,
  key: string,
  name: string,
  steps: Step[],
  timeline: Timeline,
): Promise<void> {
  for (const step of steps) {
    await delay(step.after ?? 0);
    timeline.event(name, "waits", step.mode);
    const asked = performance.now();
    await using _lock = await state.getLock(key, { exclusive: step.mode === "exclusive" });
    timeline.waited(performance.now() - asked);
    timeline.event(name, "holds", step.mode);
    await delay(step.ms);
    timeline.event(name, "releases", step.mode);
  }
}
