/**
 * The broker group: lock services across processes. Our broker (a Deno server; Deno clients, and
 * Node clients with `ws`) and PostgresState against the npm packages users pick for locks between
 * processes (`mutex-server`, `live-mutex`, `redis-semaphore`, `@sesamecare-oss/redlock`), and the
 * floors (a WebSocket echo round trip, a Redis `PING`, `select 1`, the raw advisory-lock pair).
 *
 * Three scenarios, each in fresh OS processes (`net_child.ts`), the subjects taking turns round by
 * round: uncontended acquire+release latency, timed in slices alternating with the subject's
 * floor in the same process; 4 processes × 4 tasks on 3 keys (rate, hand-off latency); 200
 * clients (4 processes × 50 connections) × 20 acquire+release on 10 keys (total time, latency).
 * Every critical section checks mutual exclusion across processes (see `net_child.ts`); the
 * violations are part of the table.
 *
 * A subject whose service is missing (no Redis, no PostgreSQL, no Node or npm build) is listed as
 * not measured, with the reason. Deno only (it starts Node processes for the Node subjects).
 *
 * @module
 */

import { type Effort, median, percentile, sorted } from "./harness.ts";
import type { NetJob, NetResult } from "./net_child.ts";
import {
  BENCH_TOKEN,
  type FloorInfo,
  type FloorName,
  FLOORS,
  NET_SUBJECTS,
  type NetEndpoints,
  type NetSubject,
} from "./net_subjects.ts";
import { nodeUnavailable, prepareNode } from "./node.ts";
import { distributionOf } from "./charts.ts";
import { chartLink, formatRate, formatRatio } from "./report.ts";
import type { Chart, DistributionRow, GroupResult } from "./results.ts";

const HERE = new URL(".", import.meta.url).pathname;
const CONFIG = `${HERE}deno.json`;
const DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres";
const DEFAULT_REDIS_URL = "redis://127.0.0.1:6379";
const MUTEX_SERVER_PASSWORD = "bench-password";

/** How much to measure. */
interface NetEffort {
  rounds: number;
  uncontended: { warmupMs: number; runMs: number };
  processes: { processes: number; tasks: number; keys: number; warmupMs: number; runMs: number };
  clients: { processes: number; clients: number; ops: number; keys: number; deadlineMs: number };
}

function netEffort(effort: Effort): NetEffort {
  return effort.smoke
    ? {
      rounds: 1,
      uncontended: { warmupMs: 20, runMs: 100 },
      processes: { processes: 2, tasks: 2, keys: 3, warmupMs: 20, runMs: 150 },
      clients: { processes: 2, clients: 4, ops: 3, keys: 10, deadlineMs: 20_000 },
    }
    : {
      rounds: 3,
      uncontended: { warmupMs: 300, runMs: 1500 },
      processes: { processes: 4, tasks: 4, keys: 3, warmupMs: 300, runMs: 1500 },
      clients: { processes: 4, clients: 50, ops: 20, keys: 10, deadlineMs: 60_000 },
    };
}

/** A process spoken to line by line: `ready`, then `go`, then one line of JSON. */
class Process {
  readonly #process: Deno.ChildProcess;
  readonly #stdout: ReadableStreamDefaultReader<string>;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #stderr: Promise<string>;
  readonly #timer: ReturnType<typeof setTimeout>;
  #buffered = "";

  constructor(command: string, args: string[], timeoutMs: number) {
    this.#process = new Deno.Command(command, {
      args,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#stdout = this.#process.stdout.pipeThrough(new TextDecoderStream()).getReader();
    this.#stdin = this.#process.stdin.getWriter();
    this.#stderr = new Response(this.#process.stderr).text();
    // Every run is bounded: a stuck peer is killed, and its measurement fails.
    this.#timer = setTimeout(() => this.kill(), timeoutMs);
  }

  async line(): Promise<string> {
    while (!this.#buffered.includes("\n")) {
      const { value, done } = await this.#stdout.read();
      if (done) {
        const status = await this.#process.status;
        throw new Error(`process ended (${status.code}):\n${(await this.#stderr).slice(-4000)}`);
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
    if (line !== word) throw new Error(`process said ${line.slice(0, 200)}, not ${word}`);
  }

  go(): Promise<void> {
    return this.#stdin.write(new TextEncoder().encode("go\n"));
  }

  /** Closes stdin and waits for the end. */
  async end(): Promise<void> {
    await this.#stdin.close().catch(() => {});
    await this.#process.status;
    clearTimeout(this.#timer);
  }

  kill(): void {
    try {
      this.#process.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
}

/** The services, started for the group and stopped after it. */
interface Services {
  endpoints: NetEndpoints;
  /** Why a subject cannot run here, by what it needs (absent: it can). */
  missing: Partial<Record<NetSubject["needs"] | "node", string>>;
  nodeDir: string | undefined;
  stop(): Promise<void>;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

async function redisAnswers(url: string): Promise<string | undefined> {
  const { hostname, port } = new URL(url);
  try {
    const connection = await Deno.connect({ hostname, port: Number(port || 6379) });
    try {
      await connection.write(new TextEncoder().encode("PING\r\n"));
      const buffer = new Uint8Array(64);
      const read = await Promise.race([
        connection.read(buffer),
        new Promise<null>((resolve) => setTimeout(() => resolve(null), 2000)),
      ]);
      const answer = read === null ? "" : new TextDecoder().decode(buffer.subarray(0, read));
      return answer.startsWith("+PONG") ? undefined : `Redis at ${url} did not answer PING`;
    } finally {
      connection.close();
    }
  } catch (error) {
    return `no Redis at ${url} (${error instanceof Error ? error.message : error})`;
  }
}

async function postgresAnswers(url: string): Promise<string | undefined> {
  const { default: postgres } = await import("postgres");
  const sql = postgres(url, { max: 1, connect_timeout: 3, onnotice: () => {} });
  try {
    await sql`select 1`;
    return undefined;
  } catch (error) {
    return `no PostgreSQL answers (${error instanceof Error ? error.message : error})`;
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
}

async function startServices(log: (line: string) => void): Promise<Services> {
  const missing: Services["missing"] = {};
  const stops: (() => Promise<void>)[] = [];
  const databaseUrl = Deno.env.get("DATABASE_URL") ?? DEFAULT_DATABASE_URL;
  const redisUrl = Deno.env.get("REDIS_URL") ?? DEFAULT_REDIS_URL;
  const redis = await redisAnswers(redisUrl);
  if (redis !== undefined) missing.redis = redis;
  const pg = await postgresAnswers(databaseUrl);
  if (pg !== undefined) {
    if (Deno.env.get("REQUIRE_POSTGRES") === "1") throw new Error(pg);
    missing.postgres = pg;
  }

  // Our broker and the echo floor: a Deno server process.
  const broker = new Process(Deno.execPath(), [
    "run",
    "--allow-all",
    "--config",
    CONFIG,
    `${HERE}broker_server.ts`,
    BENCH_TOKEN,
  ], 3_600_000);
  const { port } = JSON.parse(await broker.line()) as { port: number };
  stops.push(() => broker.end());

  let nodeDir: string | undefined;
  const nodeReason = await nodeUnavailable(log);
  if (nodeReason !== undefined) missing.node = nodeReason;
  else nodeDir = await prepareNode();

  const endpoints: NetEndpoints = {
    brokerUrl: `ws://127.0.0.1:${port}/`,
    token: BENCH_TOKEN,
    echoUrl: `ws://127.0.0.1:${port}/echo`,
    mutexServerUrl: "",
    mutexServerPassword: MUTEX_SERVER_PASSWORD,
    liveMutexPort: 0,
    redisUrl,
    databaseUrl,
    applicationName: `ssbench-net-${Deno.pid}`,
  };
  if (nodeDir !== undefined) {
    for (const kind of ["mutex-server", "live-mutex"] as const) {
      const peerPort = freePort();
      const server = new Process(
        "node",
        [`${nodeDir}/peer_server.js`, kind, String(peerPort), MUTEX_SERVER_PASSWORD],
        3_600_000,
      );
      try {
        await server.expect("ready");
      } catch (error) {
        missing[kind] = `its server did not start (${String(error).slice(0, 200)})`;
        server.kill();
        continue;
      }
      stops.push(() => server.end());
      if (kind === "mutex-server") endpoints.mutexServerUrl = `ws://127.0.0.1:${peerPort}`;
      else endpoints.liveMutexPort = peerPort;
    }
  }
  return {
    endpoints,
    missing,
    nodeDir,
    stop: async () => {
      await Promise.all(stops.map((stop) => stop()));
    },
  };
}

function whyMissing(subject: NetSubject, services: Services): string | undefined {
  if (subject.runtime === "node" && services.missing.node !== undefined) {
    return services.missing.node;
  }
  if (subject.needs === "broker") return undefined;
  if (subject.needs === "redis" || subject.needs === "postgres") {
    return services.missing[subject.needs];
  }
  if (services.nodeDir === undefined) return services.missing.node;
  return services.missing[subject.needs];
}

function childProcess(subject: NetSubject, job: NetJob, services: Services): Process {
  const timeoutMs = 120_000;
  if (subject.runtime === "node") {
    return new Process(
      "node",
      [`${services.nodeDir}/net_child.js`, JSON.stringify(job)],
      timeoutMs,
    );
  }
  return new Process(Deno.execPath(), [
    "run",
    "--allow-all",
    "--config",
    CONFIG,
    `${HERE}net_child.ts`,
    JSON.stringify(job),
  ], timeoutMs);
}

/** Runs `jobs` in processes started together; resolves with their results. */
async function measure(
  subject: NetSubject,
  jobs: NetJob[],
  services: Services,
): Promise<NetResult[]> {
  const processes = jobs.map((job) => childProcess(subject, job, services));
  try {
    await Promise.all(processes.map((process) => process.expect("ready")));
    await Promise.all(processes.map((process) => process.go()));
    const results = await Promise.all(
      processes.map(async (process) => JSON.parse(await process.line()) as NetResult),
    );
    await Promise.all(processes.map((process) => process.end()));
    return results;
  } finally {
    for (const process of processes) process.kill();
  }
}

/** Per key: `[requested, entered, left]` of each hold, merged from every process of a run. */
function handoffs(results: NetResult[]): { handoffs: number[]; overlaps: number } {
  const byKey = new Map<number, [number, number, number][]>();
  for (const { records = [] } of results) {
    for (let i = 0; i < records.length; i += 4) {
      const key = records[i];
      let holds = byKey.get(key);
      if (holds === undefined) byKey.set(key, holds = []);
      holds.push([records[i + 1], records[i + 2], records[i + 3]]);
    }
  }
  const found: number[] = [];
  let overlaps = 0;
  for (const holds of byKey.values()) {
    holds.sort((a, b) => a[1] - b[1]);
    for (let i = 1; i < holds.length; i++) {
      const [, , previousLeft] = holds[i - 1];
      const [requested, entered] = holds[i];
      if (entered < previousLeft) overlaps++;
      else if (requested < previousLeft) found.push((entered - previousLeft) * 1000);
    }
  }
  return { handoffs: found, overlaps };
}

/** What one subject gave in the three scenarios, pooled over rounds. */
interface Row {
  skipped?: string;
  latencies: number[];
  floors: Partial<Record<FloorName, number[]>>;
  /** Floor p50 ÷ lock p50 per uncontended run: the ratio to the floor, measured alongside. */
  floorRatios: number[];
  rates: number[];
  handoffs: number[];
  overlaps: number;
  clientMs: number[];
  clientLatencies: number[];
  violations: number;
  /** Violations found by the marker files, by scenario. */
  violationsIn: Record<NetJob["plan"], number>;
  errors: number;
  firstError?: string;
  unfinished: number;
}

function emptyRow(): Row {
  return {
    latencies: [],
    floors: {},
    floorRatios: [],
    rates: [],
    handoffs: [],
    overlaps: 0,
    clientMs: [],
    clientLatencies: [],
    violations: 0,
    violationsIn: { uncontended: 0, processes: 0, clients: 0 },
    errors: 0,
    unfinished: 0,
  };
}

function absorb(row: Row, results: NetResult[], plan: NetJob["plan"]): void {
  for (const result of results) {
    row.violations += result.violations;
    row.violationsIn[plan] += result.violations;
    row.errors += result.errors;
    row.firstError ??= result.firstError;
    row.unfinished += result.unfinished ?? 0;
  }
}

const floorInfo = (name: FloorName): FloorInfo => FLOORS.find((floor) => floor.name === name)!;

/** The p50 latency of the subject's floor, as the same number of round trips as the lock. */
function floorCost(name: FloorName, samples: number[]): number {
  const info = floorInfo(name);
  return percentile(sorted([...samples]), 0.5) * 2 / info.roundTrips;
}

function job(
  subject: NetSubject,
  services: Services,
  plan: NetJob["plan"],
  seed: number,
  extra: Partial<NetJob>,
): NetJob {
  return {
    subject: subject.name,
    endpoints: services.endpoints,
    plan,
    warmupMs: 0,
    runMs: 0,
    keys: 1,
    seed,
    ...extra,
  };
}

async function markerDir(): Promise<string> {
  const base = await Deno.stat("/dev/shm").then((stat) => stat.isDirectory, () => false)
    ? "/dev/shm"
    : undefined;
  return await Deno.makeTempDir({ dir: base, prefix: "ssbench-markers-" });
}

async function runRound(
  subject: NetSubject,
  row: Row,
  services: Services,
  effort: NetEffort,
  round: number,
): Promise<void> {
  // Uncontended, with the floor alongside.
  const [single] = await measure(subject, [
    job(subject, services, "uncontended", round + 1, { ...effort.uncontended }),
  ], services);
  absorb(row, [single], "uncontended");
  row.latencies.push(...single.latencies ?? []);
  for (const [name, samples] of Object.entries(single.floors ?? {})) {
    (row.floors[name as FloorName] ??= []).push(...samples);
  }
  const floorSamples = single.floors?.[subject.floor] ?? [];
  if (floorSamples.length > 0 && (single.latencies?.length ?? 0) > 0) {
    const lockP50 = percentile(sorted([...single.latencies!]), 0.5);
    row.floorRatios.push(lockP50 / floorCost(subject.floor, floorSamples));
  }

  // 4 processes × 4 tasks on 3 keys.
  const { processes, tasks, keys, warmupMs, runMs } = effort.processes;
  let dir = await markerDir();
  try {
    const results = await measure(
      subject,
      Array.from(
        { length: processes },
        (_, i) =>
          job(subject, services, "processes", round * 100 + i + 1, {
            tasks,
            keys,
            warmupMs,
            runMs,
            markerDir: dir,
          }),
      ),
      services,
    );
    absorb(row, results, "processes");
    row.rates.push(results.reduce((sum, { ops, ms }) => sum + ops / (ms / 1000), 0));
    const merged = handoffs(results);
    row.handoffs.push(...merged.handoffs);
    row.overlaps += merged.overlaps;
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }

  // 200 clients × 20 acquire+release on 10 keys.
  const c = effort.clients;
  dir = await markerDir();
  try {
    const results = await measure(
      subject,
      Array.from(
        { length: c.processes },
        (_, i) =>
          job(subject, services, "clients", round * 100 + i + 1, {
            clients: c.clients,
            opsPerClient: c.ops,
            keys: c.keys,
            deadlineMs: c.deadlineMs,
            markerDir: dir,
          }),
      ),
      services,
    );
    absorb(row, results, "clients");
    row.clientMs.push(Math.max(...results.map(({ ms }) => ms)));
    for (const result of results) row.clientLatencies.push(...result.latencies ?? []);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Microseconds as µs, ms or s, three significant digits at most. */
function us(value: number): string {
  if (Number.isNaN(value)) return "—";
  if (value >= 1_000_000) return `${(value / 1_000_000).toPrecision(3)} s`;
  if (value >= 10_000) return `${Math.round(value / 1000)} ms`;
  if (value >= 1000) return `${(value / 1000).toPrecision(3)} ms`;
  return `${Math.round(value)} µs`;
}

const ms = (value: number) =>
  value >= 1000 ? `${(value / 1000).toPrecision(3)} s` : `${Math.round(value)} ms`;

function latencyPair(values: number[]): [string, string] {
  const s = sorted([...values]);
  return [us(percentile(s, 0.5)), us(percentile(s, 0.99))];
}

/** The floors, pooled from every process that timed them alongside its locks. */
function pooledFloors(rows: Map<NetSubject, Row>): Map<FloorName, number[]> {
  const pooled = new Map<FloorName, number[]>();
  for (const row of rows.values()) {
    for (const [name, samples] of Object.entries(row.floors)) {
      const list = pooled.get(name as FloorName) ?? [];
      list.push(...samples);
      pooled.set(name as FloorName, list);
    }
  }
  return pooled;
}

/**
 * The group's charts: the uncontended latency of every subject and floor, the hand-off latency
 * of the process row and the latency of the crowded row, each a box plot per subject.
 */
function charts(rows: Map<NetSubject, Row>, effort: NetEffort): Chart[] {
  const c = effort.clients;
  const p = effort.processes;
  const subjectRows = (samples: (row: Row) => number[]): DistributionRow[] =>
    [...rows].map(([subject, row]) => ({
      name: subject.name,
      role: OURS.includes(subject.name) ? "ours" : "peer",
      distribution: row.skipped === undefined ? distributionOf(samples(row)) : undefined,
      missing: row.skipped,
    }));
  const pooled = pooledFloors(rows);
  const floors: DistributionRow[] = FLOORS.flatMap((floor) => {
    const samples = pooled.get(floor.name);
    return samples === undefined
      ? []
      : [{ name: floor.title, role: "floor" as const, distribution: distributionOf(samples) }];
  });
  const rounds = `${effort.rounds} round${effort.rounds === 1 ? "" : "s"}`;
  // Which subjects each floor was timed beside, e.g. "Redis PING for redis-semaphore, redlock".
  const beside = FLOORS.filter((floor) => pooled.has(floor.name)).map((floor) => {
    const names = [...rows].filter(([subject, row]) =>
      row.skipped === undefined &&
      [subject.floor, ...subject.extraFloors ?? []].includes(floor.name)
    ).map(([subject]) => subject.name);
    return `${floor.title} for ${names.join(", ")}`;
  });
  return [
    {
      type: "distribution",
      id: "broker-uncontended",
      title: "Uncontended acquire+release, across processes: latency",
      subtitle: `One process, one task, one key; pooled over ${rounds}. Floors, timed alongside ` +
        `in the same processes: ${beside.join("; ")}. A lock costs two round trips of its ` +
        "floor (the raw advisory pair is two already).",
      rows: [...subjectRows((row) => row.latencies), ...floors],
    },
    {
      type: "distribution",
      id: "broker-handoff",
      title: `${p.processes} processes × ${p.tasks} tasks on ${p.keys} keys: hand-off latency`,
      subtitle: "From a holder leaving its critical section to the next holder, already " +
        `waiting, entering its own; pooled over ${rounds}.`,
      rows: subjectRows((row) => row.handoffs),
    },
    {
      type: "distribution",
      id: "broker-clients",
      title: `${c.processes * c.clients} clients × ${c.ops} acquire+release on ${c.keys} keys: ` +
        "latency",
      subtitle: `${c.processes} processes × ${c.clients} clients started together; each ` +
        `acquire+release from request to release; pooled over ${rounds}.`,
      rows: subjectRows((row) => row.clientLatencies),
    },
  ];
}

/** Renders the group: a row per subject and per floor, then the targets and notes. */
function render(
  rows: Map<NetSubject, Row>,
  effort: NetEffort,
  smoke: boolean,
  pictures: Chart[],
): { markdown: string } {
  const c = effort.clients;
  const p = effort.processes;
  const header = [
    "Subject",
    "uncontended p50",
    "p99",
    "÷ floor alongside",
    `${p.processes} processes × ${p.tasks} tasks, ${p.keys} keys: rate`,
    "hand-off p50",
    "p99",
    `${c.processes * c.clients} clients × ${c.ops}, ${c.keys} keys: total`,
    "p50",
    "p99",
    "violations",
    "failed",
  ];
  const lines = [
    `| ${header.join(" | ")} |`,
    `| ${header.map((_, i) => (i === 0 ? "---" : "---:")).join(" | ")} |`,
  ];
  const ours = rows.get(NET_SUBJECTS[0])!;
  const ourRate = median(ours.rates.length > 0 ? ours.rates : [NaN]);
  const ourTotal = median(ours.clientMs.length > 0 ? ours.clientMs : [NaN]);
  for (const [subject, row] of rows) {
    if (row.skipped !== undefined) {
      lines.push(`| ${subject.name} | — (${row.skipped}) |${" |".repeat(header.length - 2)}`);
      continue;
    }
    const isOurs = subject === NET_SUBJECTS[0];
    const rate = median(row.rates);
    const total = median(row.clientMs);
    const versus = (
      ratio: number,
    ) => (isOurs || !Number.isFinite(ratio) ? "" : ` (${formatRatio(ratio)})`);
    const floor = floorInfo(subject.floor);
    const floorRatio = row.floorRatios.length > 0
      ? `${median(row.floorRatios).toFixed(2)} × ` +
        (floor.roundTrips === 1 ? `2 × ${floor.title}` : floor.title)
      : "—";
    const unfinished = row.unfinished > 0 ? ` [${row.unfinished} not started by the deadline]` : "";
    lines.push(
      `| ${
        [
          subject.name,
          ...latencyPair(row.latencies),
          floorRatio,
          `${formatRate(rate)}/s${versus(ourRate / rate)}`,
          ...latencyPair(row.handoffs),
          `${ms(total)}${versus(total / ourTotal)}${unfinished}`,
          ...latencyPair(row.clientLatencies),
          String(row.violations + row.overlaps),
          String(row.errors),
        ].join(" | ")
      } |`,
    );
  }
  const pooled = pooledFloors(rows);
  for (const floor of FLOORS) {
    const samples = pooled.get(floor.name);
    if (samples === undefined) continue;
    const blank = Array(header.length - 3).fill("").join(" | ");
    lines.push(`| ${floor.title} (floor) | ${latencyPair(samples).join(" | ")} | ${blank} |`);
  }

  const targets = judge(rows);
  const subjects = [...rows.keys()].map((subject) => `- **${subject.name}**: ${subject.how}`);
  const floors = FLOORS.map((floor) => `- **${floor.title} (floor)**: ${floor.how}`);
  const violations = [...rows].filter(([, row]) => row.violations + row.overlaps > 0).map((
    [subject, row],
  ) =>
    `- ${subject.name} let two holders into a critical section: ${row.violationsIn.uncontended} ` +
    `times uncontended (within the process), ${row.violationsIn.processes} times in the ` +
    `${p.processes}-process row and ${row.violationsIn.clients} times in the ` +
    `${c.processes * c.clients}-client row by the marker files, ${row.overlaps} overlapping ` +
    "holds by the timestamps"
  );
  const failures = [...rows].filter(([, row]) => row.firstError !== undefined).map((
    [subject, row],
  ) => `- ${subject.name} failed ${row.errors} times; the first: ${row.firstError}`);
  return {
    markdown: [
      `${smoke ? "Smoke round, numbers meaningless. " : ""}Medians of ${effort.rounds} ` +
      `round${effort.rounds === 1 ? "" : "s"}, wall clock; latencies pooled over the rounds. ` +
      "In brackets, BrokerState (Deno)'s rate ÷ the peer's, or the peer's total time ÷ " +
      "BrokerState (Deno)'s (above 1× BrokerState is faster).",
      "",
      ...lines,
      "",
      ...pictures.flatMap((chart) => [chartLink(chart), ""]),
      ...targets,
      "",
      ...subjects,
      ...floors,
      ...violations,
      ...failures,
      `- uncontended: one process, one task, one key; ${SLICES_NOTE}; acquire+release includes a ` +
      "critical section that holds the lock across one microtask. The floor column is the " +
      "lock's p50 ÷ the p50 of its floor (two round trips of it: an acquire and a release each " +
      "take one), both timed in the same process in alternating slices, so that a busy spell " +
      "hits both alike",
      `- ${p.processes} processes × ${p.tasks} tasks: each task locks a random key of ${p.keys} ` +
      `for ${p.runMs} ms (after ${p.warmupMs} ms of warm-up); rates summed over ` +
      "the processes. Hand-off: from the moment a holder leaves its critical section to the " +
      "moment the next holder of the key, already waiting then, enters its own (timestamps " +
      "merged across processes)",
      `- ${c.processes * c.clients} clients: ${c.processes} processes × ${c.clients} clients, ` +
      "each its own connection (PostgresState: one state per process, its tasks the clients: " +
      `${c.processes * c.clients} connections would exceed \`max_connections\`), each doing ` +
      `${c.ops} acquire+release on random keys of ${c.keys}, all started together; total: from ` +
      "the go-ahead until the last process finished",
      "- violations: critical sections that found another holder of their key inside, across " +
      "processes (an `O_EXCL` marker file per key, created on entry and removed on exit), plus " +
      "holds whose merged timestamps overlap; failed: acquisitions or releases that threw",
    ].join("\n"),
  };
}

/** Our subjects: their failure fails the benchmark (the smoke round in CI is for them). */
const OURS = ["BrokerState (Deno)", "BrokerState (Node, ws)", "PostgresState"];

const SLICES_NOTE = "10 slices of locking alternate with 10 slices of each floor";

/** The targets of the issue, judged on the rows. */
function judge(rows: Map<NetSubject, Row>): string[] {
  const lines: string[] = ["Targets:", ""];
  const verdict = (ok: boolean) => (ok ? "met" : "**missed**");
  const find = (name: string) => [...rows].find(([subject]) => subject.name === name);
  for (const name of ["BrokerState (Deno)", "BrokerState (Node, ws)"]) {
    const entry = find(name);
    if (entry === undefined || entry[1].floorRatios.length === 0) continue;
    const ratio = median(entry[1].floorRatios);
    lines.push(
      `- ${name}, uncontended ≤ 1.05 × two WebSocket round trips: ${verdict(ratio <= 1.05)} ` +
        `(${ratio.toFixed(2)} ×)`,
    );
  }
  const pg = find("PostgresState");
  if (pg !== undefined && pg[1].floorRatios.length > 0) {
    const ratio = median(pg[1].floorRatios);
    lines.push(
      `- PostgresState, uncontended ≤ 1.05 × raw \`pg_advisory_lock\` + \`unlock\`: ` +
        `${verdict(ratio <= 1.05)} (${ratio.toFixed(2)} ×)`,
    );
  }
  const peers = [...rows].filter(([subject, row]) =>
    row.skipped === undefined && !subject.name.startsWith("BrokerState") &&
    subject.name !== "PostgresState"
  );
  for (const name of ["BrokerState (Deno)", "BrokerState (Node, ws)", "PostgresState"]) {
    const entry = find(name);
    if (entry === undefined || entry[1].skipped !== undefined || peers.length === 0) continue;
    const rate = median(entry[1].rates);
    const total = median(entry[1].clientMs);
    const bestRate = peers.reduce((best, [s, r]) => {
      const value = median(r.rates);
      return value > best[1] ? [s.name, value] as const : best;
    }, ["", 0] as readonly [string, number]);
    const bestTotal = peers.reduce((best, [s, r]) => {
      const value = median(r.clientMs);
      return value < best[1] ? [s.name, value] as const : best;
    }, ["", Infinity] as readonly [string, number]);
    lines.push(
      `- ${name} ahead of every peer across processes: ` +
        `${verdict(rate >= bestRate[1] && total <= bestTotal[1])} (rate ${
          formatRatio(rate / bestRate[1])
        } ${bestRate[0]}; 200 clients ${formatRatio(bestTotal[1] / total)} ${bestTotal[0]})`,
    );
  }
  return lines;
}

/**
 * Runs the broker group.
 *
 * @param effort How much to measure (`smoke`: one tiny round of everything).
 * @param log Progress lines.
 */
export async function runBrokerGroup(
  effort: Effort,
  log: (line: string) => void,
): Promise<GroupResult> {
  const net = netEffort(effort);
  const runtime = `Deno ${Deno.version.deno}`;
  log(`Broker group${effort.smoke ? " (smoke)" : ""}`);
  const services = await startServices(log);
  const rows = new Map<NetSubject, Row>();
  try {
    for (const subject of NET_SUBJECTS) {
      const row = emptyRow();
      const reason = whyMissing(subject, services);
      if (reason !== undefined) row.skipped = reason;
      rows.set(subject, row);
    }
    // BENCH_SUBJECTS=name,name measures only those (for investigations; the report says so).
    const only = Deno.env.get("BENCH_SUBJECTS")?.split(",");
    const active = NET_SUBJECTS.filter((subject) =>
      rows.get(subject)!.skipped === undefined &&
      (only === undefined || only.includes(subject.name))
    );
    for (const subject of NET_SUBJECTS) {
      if (!active.includes(subject)) rows.get(subject)!.skipped ??= "not selected (BENCH_SUBJECTS)";
    }
    for (let round = 0; round < net.rounds; round++) {
      for (let i = 0; i < active.length; i++) {
        const subject = active[(i + round) % active.length];
        const row = rows.get(subject)!;
        if (row.skipped !== undefined) continue;
        const started = performance.now();
        try {
          await runRound(subject, row, services, net, round);
        } catch (error) {
          // A peer that breaks is reported as such; our own subjects breaking fails the run.
          if (OURS.includes(subject.name)) throw error;
          row.skipped = `failed: ${String(error).split("\n").slice(0, 3).join(" ").slice(0, 300)}`;
          log(`  ${subject.name} failed: ${error}`);
          continue;
        }
        log(
          `  round ${round + 1}/${net.rounds} ${subject.name}: ` +
            `${((performance.now() - started) / 1000).toFixed(1)} s`,
        );
      }
    }
  } finally {
    await services.stop();
  }
  const pictures = charts(rows, net);
  const { markdown } = render(rows, net, effort.smoke, pictures);
  return {
    title: "Across processes: broker, PostgreSQL and the network lock services",
    runtime,
    subjects: [],
    scenarios: [],
    rounds: net.rounds,
    remarks: [],
    markdown,
    charts: pictures,
  };
}
