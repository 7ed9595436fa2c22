/**
 * The in-process group: LocalState against the in-process lock libraries, five scenarios.
 * Runtime-neutral, so that it runs under Deno on the sources and under Node on the npm build.
 *
 * Every critical section checks the lock's promise (never two exclusive holders, never shared with
 * exclusive), so that a wrongly driven library fails loudly instead of looking fast.
 *
 * @module
 */

import {
  calibrate,
  canCollectGarbage,
  collectGarbage,
  type Effort,
  liveHeap,
  median,
  settle,
  timeRun,
  type Workload,
} from "./harness.ts";
import type { Cell, GroupResult, ScenarioResult } from "./results.ts";
import { type Locker, type Subject, SUBJECTS } from "./subjects.ts";

/** Tasks in the contended scenarios. */
const TASKS = 100;
/** Keys of the mixed scenario. */
const MIXED_KEYS = 10;
/** Keys of the distinct-keys scenario. */
const DISTINCT_KEYS = 100_000;

interface Scenario {
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

/** `TASKS` tasks take turns on one key; each holds it across a microtask. */
function contendedExclusive(locker: Locker): Workload {
  return async (ops) => {
    let holders = 0;
    const body = async () => {
      if (++holders !== 1) throw new Error("two exclusive holders at once");
      await null;
      holders--;
    };
    const task = async () => {
      for (let i = ops / TASKS; i > 0; i--) await locker.run("contended", true, body);
    };
    await Promise.all(Array.from({ length: TASKS }, task));
  };
}

/** A small, seeded pseudo-random generator (mulberry32), so that every subject gets one plan. */
function random(seed: number): () => number {
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
    const readers = new Array<number>(MIXED_KEYS).fill(0);
    const writers = new Array<number>(MIXED_KEYS).fill(0);
    const exclusiveBodies = keys.map((_, k) => async () => {
      if (writers[k]++ !== 0 || readers[k] !== 0) throw new Error("exclusive holder not alone");
      await null;
      writers[k]--;
    });
    const sharedBodies = keys.map((_, k) => async () => {
      readers[k]++;
      if (writers[k] !== 0) throw new Error("shared holder beside an exclusive one");
      await null;
      readers[k]--;
    });
    const task = async (_: unknown, index: number) => {
      const next = random(index + 1);
      for (let i = ops / TASKS; i > 0; i--) {
        const k = Math.floor(next() * MIXED_KEYS);
        const exclusive = next() < 0.1;
        await locker.run(keys[k], exclusive, exclusive ? exclusiveBodies[k] : sharedBodies[k]);
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

const SCENARIOS: readonly Scenario[] = [
  {
    title: "uncontended exclusive acquire+release",
    needsShared: false,
    startOps: 2_000,
    granularity: 1,
    workload: sequential("uncontended", true),
  },
  {
    title: "uncontended shared acquire+release",
    needsShared: true,
    startOps: 2_000,
    granularity: 1,
    workload: sequential("uncontended", false),
  },
  {
    title: `${TASKS} tasks contending for one key, exclusive`,
    needsShared: false,
    startOps: 2_000,
    granularity: TASKS,
    workload: contendedExclusive,
  },
  {
    title: `${TASKS} tasks, ${MIXED_KEYS} keys, 90 % shared / 10 % exclusive`,
    needsShared: true,
    startOps: 2_000,
    granularity: TASKS,
    workload: mixed,
  },
  {
    title: `${DISTINCT_KEYS.toLocaleString("en")} distinct keys, each locked once`,
    needsShared: false,
    startOps: 1_000,
    granularity: 1,
    fixedOps: DISTINCT_KEYS,
    measuresHeap: true,
    workload: distinct,
  },
];

function skipReason(subject: Subject, scenario: Scenario): string | undefined {
  if (subject.unavailable !== undefined) return subject.unavailable;
  if (scenario.needsShared && !subject.shared) return "no shared mode";
  return undefined;
}

/** One timed round of one subject; a fresh set of locks each time. */
async function measureRound(
  subject: Subject,
  scenario: Scenario,
  ops: number,
): Promise<{ opsPerSec: number; heapBytes?: number }> {
  const locker = subject.create(scenario.needsShared);
  const workload = scenario.workload(locker);
  const before = scenario.measuresHeap ? liveHeap() : (collectGarbage(), 0);
  const ms = await timeRun(workload, ops);
  const opsPerSec = ops / (Math.max(ms, 0.001) / 1000);
  if (!scenario.measuresHeap) return { opsPerSec };
  await settle(); // a library's deferred clean-up counts as done
  const heapBytes = liveHeap() - before;
  keepAlive(locker);
  return { opsPerSec, heapBytes };
}

/** Keeps `value` reachable until here, so that the heap measured before still holds it. */
const sink: unknown[] = [];
function keepAlive(value: unknown): void {
  sink.push(value);
  sink.pop();
}

/** Warms up and picks the operation count of a round (tiny in the smoke round). */
async function chooseOps(subject: Subject, scenario: Scenario, effort: Effort): Promise<number> {
  const fresh = () => scenario.workload(subject.create(scenario.needsShared));
  if (effort.smoke) return Math.max(200, scenario.granularity);
  if (scenario.fixedOps !== undefined) {
    await timeRun(fresh(), scenario.fixedOps); // the warm-up
    return scenario.fixedOps;
  }
  return await calibrate((ops) => fresh()(ops), effort, scenario.startOps, scenario.granularity);
}

async function measureScenario(
  scenario: Scenario,
  effort: Effort,
  log: (line: string) => void,
): Promise<ScenarioResult> {
  const cells: Record<string, Cell> = {};
  const active: { subject: Subject; ops: number; rates: number[]; heaps: number[] }[] = [];
  for (const subject of SUBJECTS) {
    const skipped = skipReason(subject, scenario);
    if (skipped !== undefined) {
      cells[subject.name] = { skipped };
      continue;
    }
    const ops = await chooseOps(subject, scenario, effort);
    active.push({ subject, ops, rates: [], heaps: [] });
  }
  for (let round = 0; round < effort.rounds; round++) {
    // Rotate the order so that no subject always runs right after the same neighbour.
    for (let i = 0; i < active.length; i++) {
      const entry = active[(i + round) % active.length];
      const { opsPerSec, heapBytes } = await measureRound(entry.subject, scenario, entry.ops);
      entry.rates.push(opsPerSec);
      if (heapBytes !== undefined) entry.heaps.push(heapBytes);
    }
  }
  for (const { subject, rates, heaps } of active) {
    const cell: Cell = { opsPerSec: median(rates) };
    if (heaps.length > 0 && canCollectGarbage) cell.heapBytes = median(heaps);
    cells[subject.name] = cell;
  }
  log(`  ${scenario.title}: done`);
  return { title: scenario.title, unit: "ops/s", targetFastest: true, cells };
}

/**
 * Runs every in-process scenario on every subject.
 *
 * @param runtime The runtime's name and version, for the table title.
 * @param effort How much to measure.
 * @param log Progress lines (stderr, say).
 */
export async function runInProcessGroup(
  runtime: string,
  effort: Effort,
  log: (line: string) => void,
): Promise<GroupResult> {
  log(`In-process group under ${runtime}${effort.smoke ? " (smoke)" : ""}`);
  const scenarios: ScenarioResult[] = [];
  for (const scenario of SCENARIOS) scenarios.push(await measureScenario(scenario, effort, log));
  const remarks = canCollectGarbage ? [] : [
    "no heap numbers: the runtime was started without exposing `gc()`",
  ];
  return {
    title: `In process, ${runtime}`,
    runtime,
    subjects: SUBJECTS.map(({ name, how, unavailable }) => ({ name, how, unavailable })),
    scenarios,
    rounds: effort.rounds,
    remarks,
  };
}
