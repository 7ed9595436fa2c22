/**
 * A measuring process of the in-process group: one subject, some scenarios, a fresh JIT. Each
 * library runs in processes of its own so that no library's code shapes the optimisation of
 * another's (a call site shared by six libraries is megamorphic and hides the differences).
 * Runtime-neutral: the same file runs under Deno and, compiled, under Node.
 *
 * Usage: `in_process_child SUBJECT SCENARIO[,SCENARIO…] ROUNDS [OPS|calibrate|smoke]`; prints one
 * line of JSON: per scenario the operation count, the rates and the heap retained per round.
 *
 * @module
 */

import process from "node:process";
import {
  calibrate,
  canCollectGarbage,
  FULL_EFFORT,
  liveHeap,
  polyfillWithResolvers,
  settle,
  timeRun,
} from "./harness.ts";
import { type Scenario, SCENARIOS } from "./scenarios.ts";
import { type Subject, SUBJECTS } from "./subjects.ts";

/** What a measuring process reports for one scenario. */
export interface ChildReport {
  /** Operations per round. */
  ops: number;
  /** Operations per second, per round. */
  rates: number[];
  /** Heap retained after each round, in bytes (scenarios that measure it, with `gc()`). */
  heaps: number[];
}

/** Keeps `value` reachable until here, so that the heap measured before still holds it. */
const sink: unknown[] = [];
function keepAlive(value: unknown): void {
  sink.push(value);
  sink.pop();
}

/**
 * The heap a fresh set of locks retains after `ops` operations, or `undefined` without `gc()`.
 * Untimed: the forced full GCs shrink V8's young generation, so that the code run right after
 * scavenges more often, which would tax the libraries that allocate more per operation.
 */
async function measureHeap(
  subject: Subject,
  scenario: Scenario,
  ops: number,
): Promise<number | undefined> {
  if (!canCollectGarbage) return undefined;
  const locker = subject.create(scenario.needsShared);
  const workload = scenario.workload(locker); // (makes the scenario's shared keys, if not yet)
  const before = liveHeap();
  await workload(ops);
  await settle(); // a library's deferred clean-up counts as done
  const heap = liveHeap() - before;
  keepAlive(locker);
  // An untimed run lets the young generation grow back before the next timed one.
  await scenario.workload(subject.create(scenario.needsShared))(ops);
  return heap;
}

/**
 * One timed round on a fresh set of locks; no forced GC anywhere near it. The heap is measured
 * before the first round of a process only (it hardly varies; the slowest peers take seconds).
 */
async function measureRound(
  subject: Subject,
  scenario: Scenario,
  ops: number,
  first: boolean,
): Promise<{ rate: number; heap?: number }> {
  const heap = scenario.measuresHeap && first
    ? await measureHeap(subject, scenario, ops)
    : undefined;
  const ms = await timeRun(scenario.workload(subject.create(scenario.needsShared)), ops);
  return { rate: ops / (Math.max(ms, 0.001) / 1000), heap };
}

/** Warms up and picks the operation count of a round. */
async function chooseOps(subject: Subject, scenario: Scenario, mode: string): Promise<number> {
  const fresh = () => scenario.workload(subject.create(scenario.needsShared));
  if (mode === "smoke") return Math.max(200, scenario.granularity);
  if (mode === "calibrate") {
    if (scenario.fixedOps !== undefined) {
      await timeRun(fresh(), scenario.fixedOps);
      return scenario.fixedOps;
    }
    return await calibrate(
      (ops) => fresh()(ops),
      FULL_EFFORT,
      scenario.startOps,
      scenario.granularity,
    );
  }
  const ops = Number(mode);
  if (!Number.isSafeInteger(ops) || ops <= 0) throw new Error(`bad operation count ${mode}`);
  await timeRun(fresh(), ops); // the warm-up
  return ops;
}

async function main(args: string[]): Promise<void> {
  const [subjectName, scenarioIds, roundsText, mode] = args;
  const subject = SUBJECTS.find((candidate) => candidate.name === subjectName);
  if (subject === undefined) throw new Error(`unknown subject ${subjectName}`);
  const rounds = Number(roundsText);
  const reports: Record<string, ChildReport> = {};
  for (const id of scenarioIds.split(",")) {
    const scenario = SCENARIOS.find((candidate) => candidate.id === id);
    if (scenario === undefined) throw new Error(`unknown scenario ${id}`);
    const report: ChildReport = {
      ops: await chooseOps(subject, scenario, mode),
      rates: [],
      heaps: [],
    };
    for (let round = 0; round < rounds; round++) {
      const { rate, heap } = await measureRound(subject, scenario, report.ops, round === 0);
      report.rates.push(rate);
      if (heap !== undefined) report.heaps.push(heap);
    }
    reports[id] = report;
  }
  process.stdout.write(`${JSON.stringify(reports)}\n`);
}

polyfillWithResolvers();
try {
  await main(process.argv.slice(2));
  // A library may keep a handle open (mortice's BroadcastChannel); the measuring is over.
  process.exit(0);
} catch (error) {
  process.stderr.write(`${error instanceof Error ? error.stack : error}\n`);
  process.exit(1);
}
