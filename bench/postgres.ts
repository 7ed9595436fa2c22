/**
 * The PostgreSQL group: PostgresState against the npm `advisory-lock` package and the floor, raw
 * SQL through postgres.js. Every measurement runs in fresh OS processes (`postgres_child.ts`), the
 * subjects interleaved round by round; processes of one measurement start together. Deno only.
 *
 * Needs `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`); without a server
 * the group is skipped, unless `REQUIRE_POSTGRES=1` (as in CI) makes that a failure.
 *
 * @module
 */

import { type Effort, GroupSkipped, median } from "./harness.ts";
import { PG_SCENARIOS, type PgScenario } from "./pg_scenarios.ts";
import { PG_SUBJECTS, type PgSubject, rawClient } from "./pg_subjects.ts";
import { permitRows } from "./pg_permits.ts";
import type { ChildJob, ChildResult } from "./postgres_child.ts";
import { formatRatio } from "./report.ts";
import type { Cell, GroupResult, ScenarioResult } from "./results.ts";

const DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/postgres";
const CHILD = new URL("./postgres_child.ts", import.meta.url).pathname;
const CONFIG = new URL("./deno.json", import.meta.url).pathname;

/** Timing of the group: rounds per cell, warm-up and timed run of each process. */
interface PgEffort {
  rounds: number;
  warmupMs: number;
  runMs: number;
}

function pgEffort(effort: Effort): PgEffort {
  return effort.smoke
    ? { rounds: 1, warmupMs: 20, runMs: 100 }
    : { rounds: 5, warmupMs: 300, runMs: 1000 };
}

/** A measuring process, spoken to line by line. */
class Child {
  readonly #process: Deno.ChildProcess;
  readonly #stdout: ReadableStreamDefaultReader<string>;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #stderr: Promise<string>;
  #buffered = "";

  constructor(job: ChildJob) {
    this.#process = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", "--config", CONFIG, CHILD, JSON.stringify(job)],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#stdout = this.#process.stdout.pipeThrough(new TextDecoderStream()).getReader();
    this.#stdin = this.#process.stdin.getWriter();
    this.#stderr = new Response(this.#process.stderr).text();
  }

  /** The next line the process prints; fails with its stderr if it ends first. */
  async line(): Promise<string> {
    while (!this.#buffered.includes("\n")) {
      const { value, done } = await this.#stdout.read();
      if (done) {
        const status = await this.#process.status;
        throw new Error(`measuring process ended (${status.code}):\n${await this.#stderr}`);
      }
      this.#buffered += value;
    }
    const end = this.#buffered.indexOf("\n");
    const line = this.#buffered.slice(0, end);
    this.#buffered = this.#buffered.slice(end + 1);
    return line;
  }

  async expect(word: string): Promise<void> {
    const line = await this.line();
    if (line !== word) throw new Error(`measuring process said ${line}, not ${word}`);
  }

  go(): Promise<void> {
    return this.#stdin.write(new TextEncoder().encode("go\n"));
  }

  async result(): Promise<ChildResult> {
    const result = JSON.parse(await this.line()) as ChildResult;
    await this.#stdin.close().catch(() => {});
    await this.#process.status;
    return result;
  }
}

function skipReason(subject: PgSubject, scenario: PgScenario): string | undefined {
  const plan = scenario.plan;
  if (plan?.kind === "ping" && !subject.floor) return "floor only";
  if (plan !== undefined && plan.sharedFraction > 0 && !subject.shared) return "no shared mode";
  return undefined;
}

function tasksFor(subject: PgSubject, scenario: PgScenario): number {
  const tasks = scenario.plan?.tasks ?? 1;
  return Math.min(tasks, subject.maxTasks ?? tasks);
}

let runCounter = 0;
function applicationName(subject: PgSubject): string {
  const slug = subject.name.toLowerCase().replace(/[^a-z]+/g, "-").replace(/-$/, "");
  return `ssbench-${slug}-${Deno.pid}-${++runCounter}`;
}

/** What one timed measurement gives. */
interface Measurement {
  /** Operations per second, summed over the processes. */
  rate: number;
  /** With interleaved round trips: the latency of one operation ÷ two round trips' latency. */
  perTwoRoundTrips?: number;
  /** With interleaved round trips: their rate. */
  pingRate?: number;
}

/** One timed measurement: the scenario's processes start together. */
async function measureOnce(
  subject: PgSubject,
  scenario: PgScenario,
  url: string,
  effort: PgEffort,
  round: number,
): Promise<Measurement> {
  const name = applicationName(subject);
  const plan = { ...scenario.plan!, tasks: tasksFor(subject, scenario) };
  const children = Array.from({ length: scenario.processes }, (_, i) =>
    new Child({
      subject: subject.name,
      url,
      applicationName: name,
      plan,
      warmupMs: effort.warmupMs,
      runMs: effort.runMs,
      seed: round * 100 + i + 1,
    }));
  await Promise.all(children.map((child) => child.expect("ready")));
  await Promise.all(children.map((child) => child.go()));
  const results = await Promise.all(children.map((child) => child.result()));
  const rate = results.reduce((sum, { ops, ms }) => sum + ops / (ms / 1000), 0);
  const [{ ops, ms, pings, pingMs }] = results;
  if (pings === undefined || pingMs === undefined || ops === 0 || pings === 0) return { rate };
  return {
    rate,
    perTwoRoundTrips: (ms / ops) / (2 * pingMs / pings),
    pingRate: pings / pingMs * 1000,
  };
}

/** Holds locks in a fresh process and counts its connections in `pg_stat_activity`. */
async function countConnections(
  subject: PgSubject,
  scenario: PgScenario,
  url: string,
  monitor: ReturnType<typeof rawClient>,
): Promise<Cell> {
  const held = Math.min(scenario.held!, subject.maxHeld ?? Infinity);
  const name = applicationName(subject);
  const child = new Child({
    subject: subject.name,
    url,
    applicationName: name,
    held,
    warmupMs: 0,
    runMs: 0,
    seed: 1,
  });
  await child.expect("ready");
  await child.go();
  await child.expect("held");
  const [{ n }] = await monitor.unsafe(
    `select count(*)::int as n from pg_stat_activity where application_name = '${name}'`,
  );
  await child.go();
  await child.result();
  return { count: n, ...(held < scenario.held! ? { note: `${held} held` } : {}) };
}

/**
 * The target column of the rows that have one. `factors`: per subject, an uncontended
 * acquire+release in `select 1` round trips timed alongside.
 */
function judge(scenario: PgScenario, cells: Record<string, Cell>, factors: Record<string, number>) {
  const ours = cells[PG_SUBJECTS[0].name];
  const verdict = (ok: boolean) => (ok ? "met" : "**missed**");
  const factor = factors[PG_SUBJECTS[0].name];
  if (scenario.plan?.interleavePing && factor !== undefined) {
    const floor = factors[PG_SUBJECTS.find((subject) => subject.floor)!.name];
    const twoPings = `${factor.toFixed(2)} × two \`select 1\` round trips timed alongside`;
    if (floor === undefined) return `${verdict(factor <= 1.2)}: ${twoPings} (≤ 1.2 ×)`;
    // The floor's own lock+unlock, also against its own round trips: machine noise cancels.
    const perFloor = factor / floor;
    return `${verdict(perFloor <= 1.2)}: ${perFloor.toFixed(2)} × raw lock+unlock (≤ 1.2 ×); ` +
      twoPings;
  }
  if (scenario.id === "contended") {
    const peer = cells["advisory-lock"]?.opsPerSec;
    if (ours.opsPerSec === undefined || peer === undefined) return "";
    const ratio = ours.opsPerSec / peer;
    return `${verdict(ratio >= 10)}: ${formatRatio(ratio)} advisory-lock (≥ 10×)`;
  }
  if (scenario.held !== undefined && ours.count !== undefined) {
    return `${verdict(ours.count <= 2)}: ${ours.count} (≤ 2)`;
  }
  return "";
}

/** The floor's unit: `select 1` round trips, timed alongside the uncontended row's locks. */
function pingRow(rate: number): ScenarioResult {
  const cells: Record<string, Cell> = {};
  for (const subject of PG_SUBJECTS) {
    cells[subject.name] = subject.floor ? { opsPerSec: rate } : { skipped: "floor only" };
  }
  return {
    title: "`select 1` round trip, timed alongside the next row",
    unit: "ops/s",
    targetFastest: false,
    cells,
  };
}

function safeUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.password = parsed.password ? "***" : "";
    return parsed.href;
  } catch {
    return "(unparsable DATABASE_URL)";
  }
}

/**
 * Runs the PostgreSQL group.
 *
 * @param effort How much to measure (`smoke`: one short round of everything).
 * @param log Progress lines.
 * @returns The table, and the server's version for the header of `BENCHMARKS.md`.
 * @throws {GroupSkipped} when no server answers.
 */
export async function runPostgresGroups(
  effort: Effort,
  log: (line: string) => void,
): Promise<{ results: GroupResult[]; serverVersion: string }> {
  const url = Deno.env.get("DATABASE_URL") ?? DEFAULT_URL;
  const monitor = rawClient(url, `ssbench-monitor-${Deno.pid}`);
  let serverVersion: string;
  try {
    const [{ version }] = await monitor.unsafe(
      "select current_setting('server_version') as version",
    );
    serverVersion = `PostgreSQL ${version} at ${safeUrl(url)}`;
  } catch (error) {
    await monitor.end({ timeout: 0 }).catch(() => {});
    const message = `no PostgreSQL answers at ${safeUrl(url)} (${String(error)})`;
    // CI sets REQUIRE_POSTGRES=1, as for the tests: there a missing server is a failure.
    if (Deno.env.get("REQUIRE_POSTGRES") === "1") throw new Error(message);
    throw new GroupSkipped(message);
  }
  const pg = pgEffort(effort);
  const runtime = `Deno ${Deno.version.deno}`;
  log(`PostgreSQL group under ${runtime}${effort.smoke ? " (smoke)" : ""}`);
  const rows: ScenarioResult[] = [];
  const remarks: string[] = [];
  const latencyFactors: Record<string, number> = {};
  try {
    for (const scenario of PG_SCENARIOS) {
      const subjects = PG_SUBJECTS.filter((subject) => !skipReason(subject, scenario));
      const cells: Record<string, Cell> = {};
      for (const subject of PG_SUBJECTS) {
        const reason = skipReason(subject, scenario);
        if (reason !== undefined) cells[subject.name] = { skipped: reason };
      }
      if (scenario.held !== undefined) {
        for (const subject of subjects) {
          cells[subject.name] = await countConnections(subject, scenario, url, monitor);
        }
      } else {
        const rates = new Map<string, number[]>(subjects.map((subject) => [subject.name, []]));
        const factors = new Map<string, number[]>(subjects.map((subject) => [subject.name, []]));
        const pingRates: number[] = [];
        for (let round = 0; round < pg.rounds; round++) {
          for (let i = 0; i < subjects.length; i++) {
            const subject = subjects[(i + round) % subjects.length];
            const measured = await measureOnce(subject, scenario, url, pg, round);
            rates.get(subject.name)!.push(measured.rate);
            if (measured.perTwoRoundTrips !== undefined) {
              factors.get(subject.name)!.push(measured.perTwoRoundTrips);
            }
            if (measured.pingRate !== undefined) pingRates.push(measured.pingRate);
          }
        }
        for (const [name, values] of factors) {
          if (values.length === 0) continue;
          const factor = median(values);
          latencyFactors[name] = factor;
          if (name !== PG_SUBJECTS[0].name) {
            remarks.push(
              `${name}, uncontended: ${factor.toFixed(2)} × two \`select 1\` round trips timed ` +
                "alongside",
            );
          }
        }
        if (pingRates.length > 0) rows.push(pingRow(median(pingRates)));
        for (const subject of subjects) {
          const tasks = tasksFor(subject, scenario);
          cells[subject.name] = {
            opsPerSec: median(rates.get(subject.name)!),
            ...(tasks < scenario.plan!.tasks ? { note: `${tasks} tasks` } : {}),
          };
        }
      }
      rows.push({
        title: scenario.title,
        unit: scenario.held !== undefined ? "count" : "ops/s",
        targetFastest: false,
        target: judge(scenario, cells, latencyFactors),
        cells,
      });
      log(`  ${scenario.title}: done`);
    }
    rows.push(...await permitRows(url, pg, PG_SUBJECTS.map(({ name }) => name), log));
  } finally {
    await monitor.end({ timeout: 1 }).catch(() => {});
  }
  return {
    serverVersion,
    results: [{
      title: `PostgreSQL, ${runtime}`,
      runtime,
      subjects: PG_SUBJECTS.map(({ name, how }) => ({ name, how })),
      scenarios: rows,
      rounds: pg.rounds,
      targetHeader: "target",
      remarks: [
        ...remarks,
        "the uncontended row alternates 10 slices of locking with 10 slices of `select 1` round " +
        "trips on a connection of its own, in the same process, so that the latency target " +
        "compares numbers taken at the same moments; the round-trip row is the median of those " +
        "slices over every subject's processes",
        `every measurement runs in fresh processes (${pg.warmupMs} ms warm-up, then ` +
        `${pg.runMs} ms timed, all processes of a row started together); the subjects take ` +
        `turns round by round; rates are summed over the processes of a row`,
        "the connections row is a count (lower is better), read from `pg_stat_activity` by " +
        "`application_name` while the locks are held; a bracketed note says when a subject held " +
        "fewer (one connection per lock: more would exhaust the server's `max_connections`)",
        "critical sections hold the lock across one microtask and check, within each process, " +
        "that no exclusive holder has company",
      ],
    }],
  };
}
