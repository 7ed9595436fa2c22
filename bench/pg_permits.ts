/**
 * Rows of the PostgreSQL group for issue 13: PostgresState's permits (counting semaphores on
 * advisory-lock slots) and multi-key locks. Only PostgresState has them, so the other subjects'
 * cells say so. Each measurement runs in fresh OS processes started together, as the rest of the
 * group does; this file is also the measuring process (`pg_permits.ts '<job as JSON>'`).
 *
 * - uncontended `getPermit` + `release()`, and `getLocks` on two keys + `release()`, each timed
 *   against `select 1` round trips in alternating slices of the same process: the cost in round
 *   trips;
 * - 4 processes × 4 tasks on one permit key with limit 3: tries, waits in PostgreSQL's queue,
 *   notifications and nudges under contention, with the limit checked within each process.
 *
 * @module
 */

import { PostgresState } from "../backends/postgres.ts";
import { median } from "./harness.ts";
import { NAMESPACE, rawClient } from "./pg_subjects.ts";
import type { Cell, ScenarioResult } from "./results.ts";

/** What a measuring process does. */
interface PermitJob {
  kind: "permit" | "locks" | "contended";
  url: string;
  applicationName: string;
  tasks: number;
  warmupMs: number;
  runMs: number;
}

/** What it reports: operations and their time, and with pings alongside, those too. */
interface PermitResult {
  ops: number;
  ms: number;
  pings?: number;
  pingMs?: number;
  /** The most permits held at once in the process (contended). */
  most?: number;
}

/** Timing of the rows, as the group gives it. */
export interface PermitEffort {
  rounds: number;
  warmupMs: number;
  runMs: number;
}

const LIMIT = 3;
const SLICES = 10;

/** Runs `op` until `ms` have passed; the count and the time taken. */
async function timed(op: () => Promise<void>, ms: number): Promise<{ ops: number; ms: number }> {
  const started = performance.now();
  let ops = 0;
  while (performance.now() - started < ms) {
    await op();
    ops++;
  }
  return { ops, ms: performance.now() - started };
}

/** The measuring process. */
async function measure(job: PermitJob, ready: () => Promise<void>): Promise<PermitResult> {
  const state = new PostgresState(job.url, {
    namespace: NAMESPACE,
    clientOptions: { connection: { application_name: job.applicationName } },
  });
  const ping = rawClient(job.url, `${job.applicationName}-ping`);
  try {
    if (job.kind === "contended") {
      let holding = 0;
      let most = 0;
      const task = async (ms: number) => {
        const started = performance.now();
        let ops = 0;
        while (performance.now() - started < ms) {
          const permit = await state.getPermit("bench/permits", { limit: LIMIT });
          if (++holding > LIMIT) throw new Error(`${holding} permits held, limit ${LIMIT}`);
          most = Math.max(most, holding);
          await null;
          holding--;
          await permit.release();
          ops++;
        }
        return ops;
      };
      const run = async (ms: number) => {
        const started = performance.now();
        const counts = await Promise.all(Array.from({ length: job.tasks }, () => task(ms)));
        return { ops: counts.reduce((a, b) => a + b, 0), ms: performance.now() - started };
      };
      await run(job.warmupMs);
      await ready();
      return { ...await run(job.runMs), most };
    }
    const op = job.kind === "permit"
      ? async () => await (await state.getPermit("bench/permit", { limit: LIMIT })).release()
      : async () => await (await state.getLocks(["bench/a", "bench/b"])).release();
    const pinger = async () => void await ping.unsafe("select 1");
    const interleaved = async (ms: number) => {
      const result = { ops: 0, ms: 0, pings: 0, pingMs: 0 };
      for (let i = 0; i < SLICES; i++) {
        const pings = await timed(pinger, ms / SLICES / 2);
        result.pings += pings.ops;
        result.pingMs += pings.ms;
        const ops = await timed(op, ms / SLICES / 2);
        result.ops += ops.ops;
        result.ms += ops.ms;
      }
      return result;
    };
    await interleaved(job.warmupMs);
    await ready();
    return await interleaved(job.runMs);
  } finally {
    await state.close();
    await ping.end({ timeout: 1 });
  }
}

/** Starts measuring processes of `job`, lets them go together, and collects their results. */
async function runProcesses(job: PermitJob, processes: number): Promise<PermitResult[]> {
  const children = Array.from({ length: processes }, () =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        "--config",
        new URL("./deno.json", import.meta.url).pathname,
        new URL(import.meta.url).pathname,
        JSON.stringify(job),
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn());
  const outputs = children.map((child) => {
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    return async (): Promise<string> => {
      while (!buffered.includes("\n")) {
        const { value, done } = await lines.read();
        if (done) {
          const status = await child.status;
          const stderr = await new Response(child.stderr).text();
          throw new Error(`permit measuring process ended (${status.code}):\n${stderr}`);
        }
        buffered += value;
      }
      const line = buffered.slice(0, buffered.indexOf("\n"));
      buffered = buffered.slice(line.length + 1);
      return line;
    };
  });
  for (const line of outputs) {
    if (await line() !== "ready") throw new Error("a permit measuring process did not start");
  }
  const writers = children.map((child) => child.stdin.getWriter());
  await Promise.all(writers.map((writer) => writer.write(new TextEncoder().encode("go\n"))));
  const results = await Promise.all(outputs.map(async (line) => JSON.parse(await line())));
  await Promise.all(writers.map((writer) => writer.close().catch(() => {})));
  await Promise.all(children.map(async (child) => {
    await child.status;
    await child.stderr.cancel().catch(() => {});
  }));
  return results;
}

/**
 * Measures the rows: PostgresState's cells, the other subjects' cells skipped.
 *
 * @param url The database.
 * @param effort Rounds, warm-up and timed run of each process.
 * @param subjects The group's subject names, PostgresState first.
 * @param log Progress lines.
 */
export async function permitRows(
  url: string,
  effort: PermitEffort,
  subjects: readonly string[],
  log: (line: string) => void,
): Promise<ScenarioResult[]> {
  const rows: ScenarioResult[] = [];
  const cells = (cell: Cell): Record<string, Cell> =>
    Object.fromEntries(
      subjects.map((
        name,
        i,
      ) => [name, i === 0 ? cell : { skipped: "no permits or multi-key locks" }]),
    );
  const specs = [
    {
      kind: "permit",
      title: `uncontended \`getPermit\` (limit ${LIMIT}) + release`,
      processes: 1,
      tasks: 1,
    },
    { kind: "locks", title: "uncontended `getLocks` on 2 keys + release", processes: 1, tasks: 1 },
    {
      kind: "contended",
      title: `4 processes × 4 tasks, one permit key, limit ${LIMIT}`,
      processes: 4,
      tasks: 4,
    },
  ] as const;
  for (const spec of specs) {
    const rates: number[] = [];
    const factors: number[] = [];
    let most = 0;
    for (let round = 0; round < effort.rounds; round++) {
      const results = await runProcesses({
        kind: spec.kind,
        url,
        applicationName: `ssbench-permits-${Deno.pid}-${spec.kind}-${round}`,
        tasks: spec.tasks,
        warmupMs: effort.warmupMs,
        runMs: effort.runMs,
      }, spec.processes);
      rates.push(results.reduce((sum, { ops, ms }) => sum + ops / (ms / 1000), 0));
      const [{ ops, ms, pings, pingMs }] = results;
      if (pings !== undefined && pingMs !== undefined && ops > 0 && pings > 0) {
        factors.push((ms / ops) / (pingMs / pings));
      }
      for (const result of results) most = Math.max(most, result.most ?? 0);
    }
    const target = factors.length > 0
      ? `${median(factors).toFixed(2)} × a \`select 1\` round trip timed alongside`
      : `the limit held in every process (at most ${most} of ${LIMIT} at once in one)`;
    rows.push({
      title: spec.title,
      unit: "ops/s",
      targetFastest: false,
      target,
      cells: cells({ opsPerSec: median(rates) }),
    });
    log(`  ${spec.title}: done`);
  }
  return rows;
}

if (import.meta.main) {
  const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
  const say = (line: string) => Deno.stdout.writeSync(new TextEncoder().encode(`${line}\n`));
  try {
    const result = await measure(JSON.parse(Deno.args[0]) as PermitJob, async () => {
      say("ready");
      let buffered = "";
      while (!buffered.includes("\n")) {
        const { value, done } = await lines.read();
        if (done) throw new Error("stdin closed before the go-ahead");
        buffered += value;
      }
    });
    say(JSON.stringify(result));
    Deno.exit(0);
  } catch (error) {
    console.error(error instanceof Error ? error.stack : error);
    Deno.exit(1);
  }
}
