/**
 * The in-process scenarios. Every critical section checks the lock's promise (never two exclusive
 * holders, never shared with exclusive), so that a wrongly driven library fails loudly instead of
 * looking fast. Runtime-neutral.
 *
 * @module
 */

import type { Workload } from "./harness.ts";
import type { Locker } from "./subjects.ts";

/** Tasks in the contended scenarios. */
const TASKS = 100;
/** Keys of the mixed scenario. */
const MIXED_KEYS = 10;
/** Keys of the distinct-keys scenario. */
const DISTINCT_KEYS = 100_000;

/** A workload measured on every subject. */
export interface Scenario {
  /** A short name, for the command line of a measuring process. */
  id: string;
  /** The row title. */
  title: string;
  /** Whether readers take part (libraries without shared locks sit it out). */
  needsShared: boolean;
  /** Operations of the first calibration run. */
  startOps: number;
  /** Operation counts are multiples of this. */
  granularity: number;
  /** A fixed operation count instead of calibrating. */
  fixedOps?: number;
  /** Whether to measure the heap retained after a round. */
  measuresHeap?: boolean;
  workload(locker: Locker): Workload;
}

const noop = () => {};

function sequential(key: string, exclusive: boolean): (locker: Locker) => Workload {
  return (locker) => async (ops) => {
    for (let i = 0; i < ops; i++) await locker.run(key, exclusive, noop);
  };
}

/**
 * Critical sections that check the lock's promise on each of `count` keys and hold the lock across
 * a microtask: `exclusive[k]` must be alone on key `k`, `shared[k]` beside no exclusive holder.
 */
export function guardedBodies(
  count: number,
): { exclusive: (() => Promise<void>)[]; shared: (() => Promise<void>)[] } {
  const readers = new Array<number>(count).fill(0);
  const writers = new Array<number>(count).fill(0);
  const exclusive = readers.map((_, k) => async () => {
    if (writers[k]++ !== 0 || readers[k] !== 0) throw new Error("exclusive holder not alone");
    await null;
    writers[k]--;
  });
  const shared = readers.map((_, k) => async () => {
    readers[k]++;
    if (writers[k] !== 0) throw new Error("shared holder beside an exclusive one");
    await null;
    readers[k]--;
  });
  return { exclusive, shared };
}

/** `TASKS` tasks take turns on one key; each holds it across a microtask. */
function contendedExclusive(locker: Locker): Workload {
  return async (ops) => {
    const body = guardedBodies(1).exclusive[0];
    const task = async () => {
      for (let i = ops / TASKS; i > 0; i--) await locker.run("contended", true, body);
    };
    await Promise.all(Array.from({ length: TASKS }, task));
  };
}

/** A small, seeded pseudo-random generator (mulberry32), so that every subject gets one plan. */
export function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `TASKS` tasks over `MIXED_KEYS` keys: 90 % shared, 10 % exclusive, held across a microtask. */
function mixed(locker: Locker): Workload {
  return async (ops) => {
    const keys = Array.from({ length: MIXED_KEYS }, (_, k) => `mixed/${k}`);
    const bodies = guardedBodies(MIXED_KEYS);
    const task = async (_: unknown, index: number) => {
      const next = random(index + 1);
      for (let i = ops / TASKS; i > 0; i--) {
        const k = Math.floor(next() * MIXED_KEYS);
        const exclusive = next() < 0.1;
        await locker.run(keys[k], exclusive, (exclusive ? bodies.exclusive : bodies.shared)[k]);
      }
    };
    await Promise.all(Array.from({ length: TASKS }, task));
  };
}

let distinctKeys: string[] | undefined;

/** Each of `ops` distinct keys locked once, one after the other. */
function distinct(locker: Locker): Workload {
  distinctKeys ??= Array.from({ length: DISTINCT_KEYS }, (_, i) => `job/${i}/result`);
  const keys = distinctKeys;
  return async (ops) => {
    for (let i = 0; i < ops; i++) await locker.run(keys[i], true, noop);
  };
}

/** The in-process scenarios, in table order. */
export const SCENARIOS: readonly Scenario[] = [
  {
    id: "exclusive",
    title: "uncontended exclusive acquire+release",
    needsShared: false,
    startOps: 2_000,
    granularity: 1,
    workload: sequential("uncontended", true),
  },
  {
    id: "shared",
    title: "uncontended shared acquire+release",
    needsShared: true,
    startOps: 2_000,
    granularity: 1,
    workload: sequential("uncontended", false),
  },
  {
    id: "contended",
    title: `${TASKS} tasks contending for one key, exclusive`,
    needsShared: false,
    startOps: 2_000,
    granularity: TASKS,
    workload: contendedExclusive,
  },
  {
    id: "mixed",
    title: `${TASKS} tasks, ${MIXED_KEYS} keys, 90 % shared / 10 % exclusive`,
    needsShared: true,
    startOps: 2_000,
    granularity: TASKS,
    workload: mixed,
  },
  {
    id: "distinct",
    title: `${DISTINCT_KEYS.toLocaleString("en")} distinct keys, each locked once`,
    needsShared: false,
    startOps: 1_000,
    granularity: 1,
    fixedOps: DISTINCT_KEYS,
    measuresHeap: true,
    workload: distinct,
  },
];
