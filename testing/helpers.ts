/** Small async helpers for the tests: no sleeps as synchronisation. */

/** A promise with its settle functions outside. */
export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

/** Makes a {@link Deferred}. */
export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** What a promise did: "pending" when it has not settled by the time queued callbacks ran. */
export type Outcome<T> =
  | { status: "pending" }
  | { status: "fulfilled"; value: T }
  | { status: "rejected"; reason: unknown };

/** Watches a promise (handling its rejection) and tells its outcome so far. */
export function watch<T>(
  promise: Promise<T>,
): { readonly outcome: Outcome<T>; done: Promise<void> } {
  const watcher = { outcome: { status: "pending" } as Outcome<T>, done: Promise.resolve() };
  watcher.done = promise.then(
    (value) => {
      watcher.outcome = { status: "fulfilled", value };
    },
    (reason) => {
      watcher.outcome = { status: "rejected", reason };
    },
  );
  return watcher;
}

/** Lets timers that are already due run: a macrotask turn, not a synchronisation sleep. */
export function macrotask(ms = 0): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A seeded pseudo-random generator (mulberry32), so that a failing interleaving can be replayed. */
export function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Checks the lock invariant from inside critical sections: never two writers, never mixed. */
export class InvariantMonitor {
  readonly #readers = new Map<string, number>();
  readonly #writers = new Map<string, number>();
  violations: string[] = [];
  entered = 0;

  enter(key: string, exclusive: boolean): void {
    this.entered++;
    const readers = this.#readers.get(key) ?? 0;
    const writers = this.#writers.get(key) ?? 0;
    if (writers > 0 || (exclusive && readers > 0)) {
      this.violations.push(
        `${
          exclusive ? "writer" : "reader"
        } entered ${key} with ${writers} writers, ${readers} readers`,
      );
    }
    if (exclusive) this.#writers.set(key, writers + 1);
    else this.#readers.set(key, readers + 1);
  }

  exit(key: string, exclusive: boolean): void {
    const map = exclusive ? this.#writers : this.#readers;
    map.set(key, (map.get(key) ?? 0) - 1);
  }
}

/**
 * Checks the permit invariant from inside critical sections (issue 13): for every L, at most L
 * holders of a key whose own limit is L or less (with one limit for all: at most `limit`).
 */
export class PermitMonitor {
  readonly #limits = new Map<string, number[]>();
  violations: string[] = [];
  entered = 0;
  /** The most holders of one key seen at once. */
  most = 0;

  enter(key: string, limit: number): void {
    this.entered++;
    const limits = this.#limits.get(key) ?? [];
    this.#limits.set(key, limits);
    limits.push(limit);
    limits.sort((a, b) => a - b);
    this.most = Math.max(this.most, limits.length);
    // The i-th smallest limit (1-based) must be at least i.
    const broken = limits.findIndex((held, i) => held < i + 1);
    if (broken >= 0) {
      this.violations.push(
        `a holder with limit ${limit} entered ${key} with holders of limits ${limits.join(", ")}`,
      );
    }
  }

  exit(key: string, limit: number): void {
    const limits = this.#limits.get(key) ?? [];
    const index = limits.indexOf(limit);
    if (index < 0) this.violations.push(`exit from ${key} (limit ${limit}) without an enter`);
    else limits.splice(index, 1);
    if (limits.length === 0) this.#limits.delete(key);
  }
}
