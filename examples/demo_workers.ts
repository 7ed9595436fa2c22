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

/** What a worker reports: it asks for the lock, holds it (`waited` ms later), releases it. */
export interface DemoEvent {
  worker: string;
  what: "ready" | "asks" | "holds" | "releases";
  mode?: Step["mode"];
  waited?: number;
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** `grader-1`, or `refresher (X)` for an exclusive holder or request. */
function label(worker: string, mode: Step["mode"]): string {
  return mode === "exclusive" ? `${worker} (X)` : worker;
}

/**
 * Prints events with the time since the start, who holds the key and who waits for it in which
 * order: requests are served first come, first served, so a request waits behind the holders it
 * conflicts with and behind every request that asked before it (a shared request behind a queued
 * exclusive one waits even while only readers hold the key).
 */
export class Timeline {
  #start = performance.now();
  readonly #print: (line: string) => void;
  readonly #holders = new Map<string, Step["mode"]>();
  /** Requests asked and not yet granted, in the order they asked. */
  readonly #queue: { worker: string; mode: Step["mode"] }[] = [];
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
    let note = "";
    if (event.what === "asks") {
      // Whom this request is behind, as first come, first served has it.
      const ahead = this.#queue.map((entry) => label(entry.worker, entry.mode));
      const conflicting = [...this.#holders]
        .filter(([, held]) => mode === "exclusive" || held === "exclusive")
        .map(([name, held]) => label(name, held));
      const behind = ahead.length > 0 ? [...conflicting, ...ahead] : conflicting;
      if (behind.length > 0) note = `  → waits behind ${behind.join(", ")}`;
      this.#queue.push({ worker: event.worker, mode });
    } else if (event.what === "holds") {
      const index = this.#queue.findIndex((entry) => entry.worker === event.worker);
      if (index >= 0) this.#queue.splice(index, 1);
      this.#holders.set(event.worker, mode);
      this.#waits.push(event.waited ?? 0);
      note = `  after ${event.waited?.toFixed(0)} ms`;
    } else {
      this.#holders.delete(event.worker);
    }
    const seconds = ((performance.now() - this.#start) / 1000).toFixed(3);
    const holders = [...this.#holders].map(([name, held]) => label(name, held)).join(", ");
    const queue = this.#queue.map((entry) => label(entry.worker, entry.mode)).join(", ");
    this.#print(
      `+${seconds}s  ${event.worker.padEnd(10)} ${event.what.padEnd(8)} ${mode.padEnd(9)}  ` +
        `holders: ${(holders || "-").padEnd(30)} queue: ${queue || "-"}${note}`,
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
    report({ worker: name, what: "asks", mode: step.mode });
    const asked = performance.now();
    await using _lock = await state.getLock(key, { exclusive: step.mode === "exclusive" });
    report({ worker: name, what: "holds", mode: step.mode, waited: performance.now() - asked });
    await delay(step.ms);
    report({ worker: name, what: "releases", mode: step.mode });
  }
}
