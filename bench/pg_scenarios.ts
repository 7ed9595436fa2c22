/**
 * The PostgreSQL scenarios, as plain data a measuring process can be given, and the workloads that
 * run them. Every critical section checks the lock's promise within its process, as in the
 * in-process group.
 *
 * @module
 */

import type { PgLocker } from "./pg_subjects.ts";
import { guardedBodies, random } from "./scenarios.ts";

/** What one measuring process does for a timed scenario. */
export interface PgPlan {
  /** `"ping"`: `select 1` round trips; `"locks"`: critical sections. */
  kind: "ping" | "locks";
  /** Tasks in the process, each running critical sections one after the other. */
  tasks: number;
  /** Keys the tasks pick from at random. */
  keys: number;
  /** The share of shared requests (0: all exclusive). */
  sharedFraction: number;
  /**
   * Alternate short slices of the plan with slices of `select 1` round trips on a connection of
   * its own, so that the lock's latency can be set against a round trip timed at the same moments
   * (on a busy machine, rows timed a minute apart cannot be compared).
   */
  interleavePing?: boolean;
}

/** A row of the PostgreSQL table. */
export interface PgScenario {
  /** A short name, for logs. */
  id: string;
  /** The row title. */
  title: string;
  /** OS processes that run the plan at the same time. */
  processes: number;
  /** The plan of each process; `undefined` for the held-locks count. */
  plan?: PgPlan;
  /** Locks held at once, for the connection count. */
  held?: number;
}

/** Tasks of the single-process contention row. */
export const CONTENDING_TASKS = 100;
/** Locks held at once in the connection count row. */
export const HELD_LOCKS = 1_000;

/** The rows, in table order. */
export const PG_SCENARIOS: readonly PgScenario[] = [
  {
    id: "uncontended",
    title: "uncontended exclusive acquire+release",
    processes: 1,
    plan: { kind: "locks", tasks: 1, keys: 1, sharedFraction: 0, interleavePing: true },
  },
  {
    id: "contended",
    title: `${CONTENDING_TASKS} tasks in one process, one key, exclusive`,
    processes: 1,
    plan: { kind: "locks", tasks: CONTENDING_TASKS, keys: 1, sharedFraction: 0 },
  },
  {
    id: "processes-exclusive",
    title: "4 processes × 4 tasks, 3 keys, exclusive",
    processes: 4,
    plan: { kind: "locks", tasks: 4, keys: 3, sharedFraction: 0 },
  },
  {
    id: "processes-mixed",
    title: "4 processes × 4 tasks, 3 keys, 75 % shared / 25 % exclusive",
    processes: 4,
    plan: { kind: "locks", tasks: 4, keys: 3, sharedFraction: 0.75 },
  },
  {
    id: "held",
    title: `connections open while ${HELD_LOCKS.toLocaleString("en")} locks are held`,
    processes: 1,
    held: HELD_LOCKS,
  },
];

/**
 * Runs `plan` on `locker`, starting operations until `ms` milliseconds have passed; returns the
 * operations (critical sections or round trips) completed and the time they took, the last ones
 * included. `seed` makes each process's random plan its own.
 */
export async function runFor(
  locker: PgLocker,
  plan: PgPlan,
  ms: number,
  seed: number,
): Promise<{ ops: number; ms: number }> {
  const started = performance.now();
  const end = started + ms;
  let ops = 0;
  if (plan.kind === "ping") {
    if (locker.ping === undefined) throw new Error("this subject has no round trip to time");
    while (performance.now() < end) {
      await locker.ping();
      ops++;
    }
    return { ops, ms: performance.now() - started };
  }
  const keys = Array.from({ length: plan.keys }, (_, k) => `bench/${k}`);
  const bodies = guardedBodies(plan.keys);
  const task = async (_: unknown, index: number) => {
    const next = random(seed * 1000 + index + 1);
    while (performance.now() < end) {
      const k = Math.floor(next() * plan.keys);
      const exclusive = next() >= plan.sharedFraction;
      await locker.run(keys[k], exclusive, (exclusive ? bodies.exclusive : bodies.shared)[k]);
      ops++;
    }
  };
  await Promise.all(Array.from({ length: plan.tasks }, task));
  return { ops, ms: performance.now() - started };
}

/**
 * Takes `count` exclusive locks on distinct keys and keeps them; resolves once all are held, with
 * a function that releases them all.
 */
export async function holdMany(
  locker: PgLocker,
  count: number,
): Promise<() => Promise<void>> {
  let letGo!: () => void;
  const gate = new Promise<void>((resolve) => letGo = resolve);
  let held = 0;
  let allHeld!: () => void;
  const ready = new Promise<void>((resolve) => allHeld = resolve);
  const runs = Array.from({ length: count }, (_, i) =>
    locker.run(`held/${i}`, true, () => {
      if (++held === count) allHeld();
      return gate;
    }));
  // A failure before all are held must not leave the caller waiting for ever.
  await Promise.race([ready, Promise.all(runs)]);
  return async () => {
    letGo();
    await Promise.all(runs);
  };
}
