/**
 * A measuring process of the PostgreSQL group: one subject, one scenario. It connects and warms
 * up, prints `ready`, waits for a line on stdin (so that several processes start together), then
 * either runs the plan for the given time or, for the connection count, holds its locks until a
 * second line comes. Last it prints one line of JSON: `{ "ops": …, "ms": … }`.
 *
 * Usage: `postgres_child.ts '<ChildJob as JSON>'`.
 *
 * @module
 */

import { holdMany, type PgPlan, runFor } from "./pg_scenarios.ts";
import { PG_SUBJECTS, type PgLocker, rawClient } from "./pg_subjects.ts";

/** What the group runner asks of a measuring process. */
export interface ChildJob {
  subject: string;
  url: string;
  applicationName: string;
  /** A timed plan, or the number of locks to hold. */
  plan?: PgPlan;
  held?: number;
  warmupMs: number;
  runMs: number;
  seed: number;
}

/** What a measuring process reports. */
export interface ChildResult {
  ops: number;
  ms: number;
  /** With `plan.interleavePing`: round trips and their time, in slices between the plan's. */
  pings?: number;
  pingMs?: number;
}

/** Slices of each kind in an interleaved run. */
const SLICES = 10;

const PING: PgPlan = { kind: "ping", tasks: 1, keys: 1, sharedFraction: 0 };

/** Runs `plan` and `select 1` round trips in alternating slices of `ms / SLICES / 2` each. */
async function interleaved(
  locker: PgLocker,
  pinger: PgLocker,
  plan: PgPlan,
  ms: number,
  seed: number,
): Promise<ChildResult> {
  const slice = ms / SLICES / 2;
  const result = { ops: 0, ms: 0, pings: 0, pingMs: 0 };
  for (let i = 0; i < SLICES; i++) {
    const pings = await runFor(pinger, PING, slice, seed);
    result.pings += pings.ops;
    result.pingMs += pings.ms;
    const locks = await runFor(locker, plan, slice, seed + i);
    result.ops += locks.ops;
    result.ms += locks.ms;
  }
  return result;
}

/** Times `plan` alongside round trips on a connection of its own, opened before the warm-up. */
async function alongsidePings(locker: PgLocker, job: ChildJob): Promise<ChildResult> {
  const sql = rawClient(job.url, `${job.applicationName}-ping`);
  const pinger = { ping: async () => void await sql.unsafe("select 1") } as PgLocker;
  try {
    await interleaved(locker, pinger, job.plan!, job.warmupMs, job.seed + 7919);
    say("ready");
    await nextLine();
    return await interleaved(locker, pinger, job.plan!, job.runMs, job.seed);
  } finally {
    await sql.end({ timeout: 1 });
  }
}

const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
let buffered = "";
async function nextLine(): Promise<void> {
  while (!buffered.includes("\n")) {
    const { value, done } = await lines.read();
    if (done) throw new Error("stdin closed before the go-ahead");
    buffered += value;
  }
  buffered = buffered.slice(buffered.indexOf("\n") + 1);
}

function say(line: string): void {
  Deno.stdout.writeSync(new TextEncoder().encode(`${line}\n`));
}

async function main(job: ChildJob): Promise<ChildResult> {
  const subject = PG_SUBJECTS.find((candidate) => candidate.name === job.subject);
  if (subject === undefined) throw new Error(`unknown subject ${job.subject}`);
  const locker = await subject.create({
    url: job.url,
    applicationName: job.applicationName,
    tasks: job.plan?.tasks ?? 1,
    distinctKeys: job.held !== undefined,
  });
  try {
    if (job.held !== undefined) {
      say("ready");
      await nextLine();
      const started = performance.now();
      const release = await holdMany(locker, job.held);
      const ms = performance.now() - started;
      say("held");
      await nextLine();
      await release();
      return { ops: job.held, ms };
    }
    const plan = job.plan!;
    if (plan.interleavePing) return await alongsidePings(locker, job);
    await runFor(locker, plan, job.warmupMs, job.seed + 7919);
    say("ready");
    await nextLine();
    return await runFor(locker, plan, job.runMs, job.seed);
  } finally {
    await locker.close();
  }
}

try {
  const result = await main(JSON.parse(Deno.args[0]) as ChildJob);
  say(JSON.stringify(result));
  Deno.exit(0);
} catch (error) {
  console.error(error instanceof Error ? error.stack : error);
  Deno.exit(1);
}
