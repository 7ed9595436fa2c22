/**
 * A child process of the multi-process test (tests/postgres_processes_test.ts), runnable by Deno
 * on the sources and by Node on the compiled package: it contends for shared keys through a
 * PostgresState and records, from inside each critical section, when it entered and left, and
 * increments a per-key counter under exclusive locks with a read, a pause and a write, so that
 * two writers at once would lose an update.
 *
 * With `refusal` set (issue 9: session mode behind a transaction pooler), a request refused with
 * a LockFailed matching it is counted, the state is replaced by a new one (at most `states` in
 * all), and a lost lock is recorded as left the moment its signal aborts.
 *
 * Protocol: the JSON {@link WorkerConfig} is the first argument; the child prints `ready` once
 * connected, waits for a line on stdin, runs, prints one JSON line of {@link WorkerReport} and
 * exits with 0.
 */

import process from "node:process";
import { createInterface } from "node:readline";
import postgres from "postgres";
import { LockFailed } from "../mod.ts";
import { PostgresState } from "../backends/postgres.ts";
import { random } from "../testing/helpers.ts";

/** What the parent tells a child. */
export interface WorkerConfig {
  /** The database. */
  url: string;
  /** Number of this process, in the log. */
  index: number;
  /** Table of `(seq bigserial, proc, key, exclusive, event)` rows. */
  eventTable: string;
  /** Table of `(key, value)` counters incremented under exclusive locks. */
  counterTable: string;
  /** The state's options. */
  namespace: string;
  mode: "session" | "transaction";
  handoffWindow: number;
  applicationName: string;
  /** Keys contended for. */
  keys: string[];
  /** Concurrent loops in this process, and critical sections per loop. */
  loops: number;
  iterations: number;
  seed: number;
  /** Where the events are recorded, if not `url`. */
  logUrl?: string;
  /** Source of the RegExp that a refusal's message matches (see above). */
  refusal?: string;
  /** With `refusal`: states made in all, the first included. */
  states?: number;
  /**
   * Issue 13: `"permits"` takes permits of this limit (recorded as shared) instead of locks;
   * `"multi"` takes every key at once with `getLocks`, in an order of its own each time.
   */
  kind?: "locks" | "permits" | "multi";
  /** With `kind: "permits"`: the limit. */
  limit?: number;
}

/** What a child reports. */
export interface WorkerReport {
  index: number;
  exclusive: number;
  shared: number;
  failed: number;
  refused?: number;
  lost?: number;
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function main(config: WorkerConfig): Promise<WorkerReport> {
  // One connection in refusal mode: an exit recorded when a lock is lost is executed after the
  // enter it follows, in the order sent.
  const log = postgres(config.logUrl ?? config.url, {
    max: config.refusal === undefined ? 2 : 1,
    onnotice: () => {},
  });
  const newState = () =>
    new PostgresState(config.url, {
      namespace: config.namespace,
      mode: config.mode,
      handoffWindow: config.handoffWindow,
      clientOptions: { connection: { application_name: config.applicationName } },
    });
  let state = newState();
  const retired: PostgresState[] = [];
  const refusal = config.refusal === undefined ? undefined : new RegExp(config.refusal);
  const report: WorkerReport = { index: config.index, exclusive: 0, shared: 0, failed: 0 };
  if (refusal !== undefined) report.refused = report.lost = 0;
  const events = log(config.eventTable);
  const counters = log(config.counterTable);
  const record = (key: string, exclusive: boolean, event: "enter" | "exit") =>
    log`insert into ${events} (proc, key, exclusive, event)
        values (${config.index}, ${key}, ${exclusive}, ${event})`;
  try {
    // Connected and warmed up before the start line, so that the processes really contend.
    // (Behind a transaction pooler, warming up would only use up a state on its refusal.)
    if (refusal === undefined) await state.testLock(config.keys[0]);
    await log`select 1`;
    console.log("ready");
    await new Promise<void>((resolve) => {
      const lines = createInterface({ input: process.stdin });
      lines.once("line", () => {
        lines.close();
        resolve();
      });
    });
    await Promise.all(Array.from({ length: config.loops }, async (_, loop) => {
      const next = random(config.seed * 100 + loop);
      for (let i = 0; i < config.iterations; i++) {
        const key = config.keys[Math.floor(next() * config.keys.length)];
        const kind = config.kind ?? "locks";
        const exclusive = kind === "multi" || (kind === "locks" && next() < 0.5);
        const timeout = next() < 0.2 ? next() * 20 : undefined;
        let lock;
        const current = state;
        // `multi`: every key, in an order of this iteration's own; recorded on the first key.
        const order = [...config.keys].sort(() => next() - 0.5);
        try {
          lock = kind === "permits"
            ? await current.getPermit(key, { limit: config.limit!, timeout })
            : kind === "multi"
            ? await current.getLocks(order, { timeout })
            : await current.getLock(key, { exclusive, timeout });
        } catch (error) {
          if (error instanceof LockFailed && refusal?.test(error.message)) {
            report.refused!++;
            if (state === current && retired.length + 1 < (config.states ?? 1)) {
              retired.push(current);
              state = newState();
            }
            continue;
          }
          // Behind the pooler, the clean-up of refused connections ends server connections that
          // carry what they left, and the pooler may just have handed one to another of our
          // connections: that one fails as unreachable, which is no breach of the invariant.
          const ended = refusal !== undefined && error instanceof LockFailed &&
            error.reason === "unreachable";
          if (!(error instanceof LockFailed) || (timeout === undefined && !ended)) throw error;
          report.failed++;
          continue;
        }
        // A lost lock (refusal mode) counts as left the moment its signal aborts.
        let exit: Promise<unknown> | undefined;
        if (refusal !== undefined) {
          lock.signal.addEventListener("abort", () => {
            report.lost!++;
            exit ??= record(key, exclusive, "exit");
          }, { once: true });
        }
        // `multi`: the other keys are recorded around the first, held all the while.
        const others = kind === "multi" ? config.keys.filter((k) => k !== key) : [];
        try {
          for (const other of others) await record(other, exclusive, "enter");
          await record(key, exclusive, "enter");
          if (exclusive) {
            const [row] = await log`select value from ${counters} where key = ${key}`;
            await pause(next() * 3);
            await log`update ${counters} set value = ${row.value + 1} where key = ${key}`;
            report.exclusive++;
          } else {
            await pause(next() * 3);
            report.shared++;
          }
          if (lock.signal.aborted && refusal === undefined) throw lock.signal.reason;
          exit ??= record(key, exclusive, "exit");
          await exit;
          for (const other of others) await record(other, exclusive, "exit");
        } finally {
          await lock.release();
        }
      }
    }));
    return report;
  } finally {
    await Promise.all([...retired, state].map((s) => s.close()));
    await log.end({ timeout: 5 });
  }
}

const config = JSON.parse(process.argv.at(-1)!) as WorkerConfig;
main(config).then(
  (report) => {
    console.log(JSON.stringify(report));
    process.exit(0);
  },
  (error) => {
    console.error(`worker ${config.index} failed:`, error);
    process.exit(1);
  },
);
