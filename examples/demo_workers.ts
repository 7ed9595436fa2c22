/** The workers of the demo and the timeline they report to. */

import type { StateABC } from "../mod.ts";

/** One visit to the critical section. */
export interface Step {
  mode: "shared" | "exclusive";
  /** How long the lock is held. */
  ms: number;
  /** How long to work before asking for the lock. */
  after?: number;
}

/** What a worker reports; `waited` comes with "holds". */
export interface DemoEvent {
  worker: string;
  what: "ready" | "waits" | "holds" | "releases";
  mode?: Step["mode"];
  waited?: number;
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Prints events with the time since the start and who holds the key. */
export class Timeline {
  #start = performance.now();
  readonly #print: (line: string) => void;
  readonly #holders = new Map<string, Step["mode"]>();
  readonly #waits: number[] = [];

  constructor(print: (line: string) => void) {
    this.#print = print;
  }

  /** Counts time from now on. */
  restart(): void {
    this.#start = performance.now();
  }

  record(event: DemoEvent): void {
    if (event.what === "ready") return;
    const mode = event.mode!;
    if (event.what === "holds") {
      this.#holders.set(event.worker, mode);
      this.#waits.push(event.waited ?? 0);
    }
    if (event.what === "releases") this.#holders.delete(event.worker);
    const seconds = ((performance.now() - this.#start) / 1000).toFixed(3);
    const holders = [...this.#holders].map(([name, m]) => m === "exclusive" ? `${name} (X)` : name);
    const waited = event.what === "holds" ? ` after ${event.waited?.toFixed(0)} ms` : "";
    this.#print(
      `+${seconds}s  ${event.worker.padEnd(10)} ${event.what.padEnd(8)} ${mode.padEnd(9)}` +
        `  holders: ${holders.join(", ") || "-"}${waited}`,
    );
  }

  summary(): string {
    const total = this.#waits.reduce((sum, ms) => sum + ms, 0);
    const longest = Math.max(0, ...this.#waits);
    return `${this.#waits.length} critical sections, ${total.toFixed(0)} ms waited in all, ` +
      `longest wait ${longest.toFixed(0)} ms`;
  }
}

/** Runs one worker's steps against `state`, reporting each event. */
export async function runWorker(
  state: StateABC,
  key: string,
  name: string,
  steps: Step[],
  report: (event: DemoEvent) => void,
): Promise<void> {
  for (const step of steps) {
    await delay(step.after ?? 0);
    report({ worker: name, what: "waits", mode: step.mode });
    const asked = performance.now();
    await using _lock = await state.getLock(key, { exclusive: step.mode === "exclusive" });
    report({ worker: name, what: "holds", mode: step.mode, waited: performance.now() - asked });
    await delay(step.ms);
    report({ worker: name, what: "releases", mode: step.mode });
  }
}
