/**
 * A measuring process of the broker group: one subject, one scenario. It connects and warms up,
 * prints `ready`, waits for a line on stdin (so that the processes of a measurement start
 * together), runs, prints one line of JSON ({@link NetResult}), and exits.
 *
 * Runtime-neutral (`node:` modules only): Deno runs it for the Deno subjects, Node its compiled
 * copy for the Node subjects. Usage: `net_child '<NetJob as JSON>'`.
 *
 * Mutual exclusion is checked from inside the critical sections, across processes: each holder
 * creates a marker file for its key with `O_EXCL` (`wx`) on entry and removes it on exit, so a
 * second holder of the key, in any process, finds the file there (a violation). Each critical
 * section also records when it was requested, entered and left (`performance.timeOrigin +
 * performance.now()`, comparable across processes to a few microseconds), from which the group
 * runner computes the hand-off latency and checks once more that no two holds of a key overlap.
 *
 * @module
 */

import { closeSync, openSync, unlinkSync } from "node:fs";
import process from "node:process";
import {
  createFloor,
  type Floor,
  type FloorName,
  NET_SUBJECTS,
  type NetEndpoints,
  type NetLocker,
  type NetSubject,
} from "./net_subjects.ts";

/** What the group runner asks of a measuring process. */
export interface NetJob {
  subject: string;
  endpoints: NetEndpoints;
  /**
   * `uncontended`: one task, one key, slices of locking alternating with slices of each floor.
   * `processes`: `tasks` tasks on `keys` keys for `runMs`. `clients`: `clients` clients, each
   * `opsPerClient` acquire+release on `keys` keys, as fast as they go.
   */
  plan: "uncontended" | "processes" | "clients";
  warmupMs: number;
  runMs: number;
  keys: number;
  tasks?: number;
  clients?: number;
  opsPerClient?: number;
  /** Directory of the marker files (shared by the processes of one measurement). */
  markerDir?: string;
  /** The `clients` plan stops starting operations after this long (a stuck peer). */
  deadlineMs?: number;
  seed: number;
}

/** What a measuring process reports. */
export interface NetResult {
  /** Critical sections completed in the timed run. */
  ops: number;
  /** Time of the timed run (`clients`: from the go-ahead until every client finished). */
  ms: number;
  /** Latency of each acquire+release, microseconds (`uncontended`, `clients`). */
  latencies?: number[];
  /** Round trips of each floor timed alongside, microseconds (`uncontended`). */
  floors?: Partial<Record<FloorName, number[]>>;
  /** `processes`: per critical section `[key, requested, entered, left]`, flattened, ms. */
  records?: number[];
  /** Critical sections that found another holder's marker for their key. */
  violations: number;
  /** Acquisitions or releases that failed. */
  errors: number;
  firstError?: string;
  /** `clients`: operations not started before the deadline. */
  unfinished?: number;
}

const SLICES = 10;

const now = () => performance.timeOrigin + performance.now();

/** A seeded pseudo-random generator (mulberry32), as in scenarios.ts. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const round = (us: number) => Math.round(us * 10) / 10;

class Counters {
  violations = 0;
  errors = 0;
  firstError: string | undefined;

  fail(error: unknown): void {
    this.errors++;
    this.firstError ??= error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    if (this.errors > 1000) throw new Error(`too many failures, first: ${this.firstError}`);
  }
}

/**
 * Critical sections that check, across processes, that their holder is alone on its key: an
 * `O_EXCL` marker file per key, created on entry and removed on exit; held across a microtask.
 */
function markerBodies(dir: string, keys: number, counters: Counters) {
  return Array.from({ length: keys }, (_, k) => {
    const path = `${dir}/k${k}`;
    return async () => {
      let mine = false;
      try {
        closeSync(openSync(path, "wx"));
        mine = true;
      } catch {
        counters.violations++;
      }
      await null;
      if (mine) unlinkSync(path);
    };
  });
}

/** Critical sections of one process that check it holds each key alone; across a microtask. */
function localBody(counters: Counters) {
  let holders = 0;
  return async () => {
    if (holders++ !== 0) counters.violations++;
    await null;
    holders--;
  };
}

async function uncontended(
  locker: NetLocker,
  floors: [FloorName, Floor][],
  ms: number,
  counters: Counters,
): Promise<NetResult> {
  const body = localBody(counters);
  const latencies: number[] = [];
  const floorSamples: Partial<Record<FloorName, number[]>> = {};
  let ops = 0;
  let lockMs = 0;
  const slice = ms / SLICES / (floors.length + 1);
  for (let i = 0; i < SLICES; i++) {
    for (const [name, floor] of floors) {
      const samples = floorSamples[name] ??= [];
      const end = performance.now() + slice;
      while (performance.now() < end) {
        const started = performance.now();
        await floor.ping();
        samples.push(round((performance.now() - started) * 1000));
      }
    }
    const started = performance.now();
    const end = started + slice;
    while (performance.now() < end) {
      const t = performance.now();
      try {
        await locker.run("bench/u", body);
      } catch (error) {
        counters.fail(error);
        continue;
      }
      latencies.push(round((performance.now() - t) * 1000));
      ops++;
    }
    lockMs += performance.now() - started;
  }
  return { ops, ms: lockMs, latencies, floors: floorSamples, violations: 0, errors: 0 };
}

async function processes(
  locker: NetLocker,
  job: NetJob,
  ms: number,
  counters: Counters,
  record: boolean,
): Promise<NetResult> {
  const bodies = markerBodies(job.markerDir!, job.keys, counters);
  const keys = Array.from({ length: job.keys }, (_, k) => `bench/p/${k}`);
  const records: number[] = [];
  let ops = 0;
  const started = performance.now();
  const end = started + ms;
  const task = async (_: unknown, index: number) => {
    const next = random(job.seed * 1000 + index + 1);
    while (performance.now() < end) {
      const k = Math.floor(next() * job.keys);
      const requested = now();
      let entered = 0;
      let left = 0;
      try {
        await locker.run(keys[k], async () => {
          entered = now();
          await bodies[k]();
          left = now();
        });
      } catch (error) {
        counters.fail(error);
        continue;
      }
      ops++;
      if (record) records.push(k, requested, entered, left);
    }
  };
  await Promise.all(Array.from({ length: job.tasks ?? 1 }, task));
  return { ops, ms: performance.now() - started, records, violations: 0, errors: 0 };
}

async function clients(
  lockers: NetLocker[],
  job: NetJob,
  counters: Counters,
): Promise<NetResult> {
  const bodies = markerBodies(job.markerDir!, job.keys, counters);
  const keys = Array.from({ length: job.keys }, (_, k) => `bench/c/${k}`);
  const latencies: number[] = [];
  const count = job.clients ?? 1;
  const perClient = job.opsPerClient ?? 1;
  const started = performance.now();
  const deadline = started + (job.deadlineMs ?? 60_000);
  let ops = 0;
  let unfinished = 0;
  const client = async (_: unknown, index: number) => {
    const locker = lockers[index % lockers.length];
    const next = random(job.seed * 1000 + index + 1);
    for (let i = 0; i < perClient; i++) {
      if (performance.now() > deadline) {
        unfinished += perClient - i;
        return;
      }
      const k = Math.floor(next() * job.keys);
      const t = performance.now();
      try {
        await locker.run(keys[k], bodies[k]);
      } catch (error) {
        counters.fail(error);
        continue;
      }
      latencies.push(round((performance.now() - t) * 1000));
      ops++;
    }
  };
  await Promise.all(Array.from({ length: count }, client));
  return { ops, ms: performance.now() - started, latencies, unfinished, violations: 0, errors: 0 };
}

let buffered = "";
const waiting: (() => void)[] = [];
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk: string) => {
  buffered += chunk;
  while (buffered.includes("\n") && waiting.length > 0) {
    buffered = buffered.slice(buffered.indexOf("\n") + 1);
    waiting.shift()!();
  }
});
function nextLine(): Promise<void> {
  if (buffered.includes("\n")) {
    buffered = buffered.slice(buffered.indexOf("\n") + 1);
    return Promise.resolve();
  }
  return new Promise((resolve) => waiting.push(resolve));
}

/** Writes a line; resolves once it is flushed (Node writes to a pipe asynchronously). */
function say(line: string): Promise<void> {
  return new Promise((resolve) => process.stdout.write(`${line}\n`, () => resolve()));
}

/** Closes what was opened, but never waits long: a stuck peer must not keep the process. */
async function closeAll(closers: (() => Promise<void>)[]): Promise<void> {
  const all = Promise.allSettled(closers.map((close) => close()));
  await Promise.race([all, new Promise((resolve) => setTimeout(resolve, 2000))]);
}

async function main(job: NetJob): Promise<NetResult> {
  const subject: NetSubject | undefined = NET_SUBJECTS.find((s) => s.name === job.subject);
  if (subject === undefined) throw new Error(`unknown subject ${job.subject}`);
  const counters = new Counters();
  const closers: (() => Promise<void>)[] = [];
  let result: NetResult;
  try {
    if (job.plan === "clients") {
      const count = subject.oneClientPerProcess ? 1 : job.clients ?? 1;
      const lockers = await Promise.all(
        Array.from({ length: count }, () => subject.create(job.endpoints)),
      );
      for (const locker of lockers) closers.push(() => locker.close());
      // Every client connects and takes a lock once before the timed run.
      await Promise.all(lockers.map((locker, i) => locker.run(`bench/warm/${i}`, () => {})));
      await say("ready");
      await nextLine();
      result = await clients(lockers, job, counters);
    } else {
      const locker = await subject.create(job.endpoints);
      closers.push(() => locker.close());
      if (job.plan === "uncontended") {
        const floors: [FloorName, Floor][] = [];
        for (const name of [subject.floor, ...subject.extraFloors ?? []]) {
          const floor = await createFloor(name, job.endpoints);
          closers.push(() => floor.close());
          floors.push([name, floor]);
        }
        await uncontended(locker, floors, job.warmupMs, counters);
        await say("ready");
        await nextLine();
        result = await uncontended(locker, floors, job.runMs, counters);
      } else {
        await processes(locker, job, job.warmupMs, counters, false);
        await say("ready");
        await nextLine();
        result = await processes(locker, job, job.runMs, counters, true);
      }
    }
  } catch (error) {
    await closeAll(closers);
    throw error;
  }
  result.violations = counters.violations;
  result.errors = counters.errors;
  if (counters.firstError !== undefined) result.firstError = counters.firstError;
  await say(JSON.stringify(result));
  await closeAll(closers);
  return result;
}

try {
  await main(JSON.parse(process.argv[process.argv.length - 1]) as NetJob);
  process.exit(0);
} catch (error) {
  process.stderr.write(`${error instanceof Error ? error.stack : error}\n`);
  process.exit(1);
}
