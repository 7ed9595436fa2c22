/**
 * Measuring: warm-up, calibrated rounds, medians, heap after a forced GC. Runtime-neutral (web
 * globals and `node:process` only), so the same code measures under Deno and under Node.
 *
 * @module
 */

import process from "node:process";

/** How much measuring to do. */
export interface Effort {
  /** `true` for the CI smoke round: tiny fixed sizes, one round, numbers meaningless. */
  smoke: boolean;
  /** Fresh processes per subject and scenario, interleaved between subjects. */
  processes: number;
  /** Timed rounds in each process, after its warm-up. The median of all rounds is reported. */
  rounds: number;
  /** Wanted duration of one timed round, in milliseconds (operation counts are calibrated). */
  roundMs: number;
}

/** Full measurement: 4 processes × 3 rounds of about 150 ms each, after calibration and warm-up. */
export const FULL_EFFORT: Effort = { smoke: false, processes: 4, rounds: 3, roundMs: 150 };

/** The CI smoke round: checks that the code runs; the numbers mean nothing. */
export const SMOKE_EFFORT: Effort = { smoke: true, processes: 1, rounds: 1, roundMs: 0 };

/**
 * Whether this runtime lacks `Promise.withResolvers` (Node 20; Node 22 and Deno have it), which
 * mortice (through it-queue) and @rocicorp/lock call.
 */
export const lacksWithResolvers: boolean =
  typeof (Promise as { withResolvers?: unknown }).withResolvers !== "function";

/** Installs the usual polyfill of `Promise.withResolvers` where it is missing, so peers run. */
export function polyfillWithResolvers(): void {
  if (!lacksWithResolvers) return;
  Object.defineProperty(Promise, "withResolvers", {
    configurable: true,
    writable: true,
    value<T>() {
      let resolve!: (value: T | PromiseLike<T>) => void;
      let reject!: (reason?: unknown) => void;
      const promise = new Promise<T>((yes, no) => {
        resolve = yes;
        reject = no;
      });
      return { promise, resolve, reject };
    },
  });
}

/** A group that cannot run here (no npm build, no database): said, not a failure. */
export class GroupSkipped extends Error {}

/** Runs `ops` operations of one scenario on one subject. */
export type Workload = (ops: number) => Promise<void>;

/** The `q` quantile (0 to 1) of values sorted ascending; NaN for none. */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/** Sorts numbers ascending, in place, and returns them. */
export function sorted(values: number[]): number[] {
  return values.sort((a, b) => a - b);
}

/** The median of `values` (which must not be empty). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** Runs a full garbage collection when the runtime exposes one (`--expose-gc`). */
export function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/** Whether {@link collectGarbage} really collects, i.e. heap numbers are meaningful. */
export const canCollectGarbage: boolean = typeof (globalThis as { gc?: unknown }).gc === "function";

/** Bytes of live JavaScript heap after a full GC. */
export function liveHeap(): number {
  collectGarbage();
  return process.memoryUsage().heapUsed;
}

/** Lets timers and pending callbacks run (a library's deferred clean-up, for instance). */
export function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 5));
}

/**
 * Times one run of `ops` operations; returns milliseconds of CPU time (user and system, every
 * thread of the process, the garbage collector's included). An in-process workload never waits
 * for anything outside the process, so its CPU time is its running time, minus the spells in which
 * other processes of a busy machine had the core: those make wall-clock rounds of the same code
 * differ by 2× on a shared machine. CPU time still moves with what runs on the sibling core.
 */
export async function timeRun(workload: Workload, ops: number): Promise<number> {
  const started = process.cpuUsage();
  await workload(ops);
  const { user, system } = process.cpuUsage(started);
  return (user + system) / 1000;
}

/**
 * Warms `workload` up and finds how many operations take about `effort.roundMs`, doubling from
 * `startOps`; the result is a multiple of `granularity` (e.g. the number of tasks).
 */
export async function calibrate(
  workload: Workload,
  effort: Effort,
  startOps: number,
  granularity = 1,
): Promise<number> {
  const round = (ops: number) => Math.max(granularity, Math.round(ops / granularity) * granularity);
  let ops = round(startOps);
  if (effort.smoke) return ops;
  let ms = await timeRun(workload, ops);
  while (ms < effort.roundMs / 4 && ops < 1e8) {
    ops *= 4;
    ms = await timeRun(workload, ops);
  }
  // Those runs were partly cold (the compilers' threads count in CPU time): measured warm, at the
  // size they suggest, the code is often several times faster, so measure twice more.
  for (let i = 0; i < 2; i++) {
    ops = round(ops * effort.roundMs / Math.max(ms, 0.001));
    ms = await timeRun(workload, ops);
  }
  return round(ops * effort.roundMs / Math.max(ms, 0.001));
}
