/**
 * Issue 12's costs, measured apart from the main benchmark (`deno task bench`):
 *
 * - in process: LocalState's uncontended acquire+release, plain; plain while another state of the
 *   process is instrumented (what "zero cost when not instrumented" means); instrumented with the
 *   API's no-op provider; instrumented with the SDK's MeterProvider. Each subject in fresh
 *   processes of its own, interleaved; operations per CPU-second, median of the rounds.
 * - PostgreSQL (`DATABASE_URL`): per mode, acquire+release with and without `fencingToken()`,
 *   `inspect(key)`, and a `select 1` round trip, in alternating slices in one process; median
 *   milliseconds per operation.
 *
 * Usage: `deno run --config bench/deno.json --allow-all bench/observability.ts [local] [postgres]`
 *
 * @module
 */

import { execFile } from "node:child_process";
import process from "node:process";
import { metrics } from "@opentelemetry/api";
import { MeterProvider } from "@opentelemetry/sdk-metrics";
import postgres from "postgres";
import { LocalState, type StateABC } from "../mod.ts";
import { PostgresState } from "../backends/postgres.ts";
import { instrument } from "../opentelemetry.ts";
import { median } from "./harness.ts";

const SUBJECTS = {
  plain: "LocalState",
  "plain-beside": "LocalState, another state of the process instrumented",
  "noop-api": "instrumented, the API's no-op providers",
  sdk: "instrumented, the SDK's MeterProvider (no reader)",
} as const;
type Subject = keyof typeof SUBJECTS;

/** One measuring process: ops per CPU-second of each round. */
async function measureLocal(subject: Subject): Promise<number[]> {
  let state: StateABC = new LocalState();
  if (subject === "plain-beside") instrument(new LocalState(), {});
  if (subject === "noop-api") {
    state = instrument(state, { meterProvider: metrics.getMeterProvider() });
  }
  if (subject === "sdk") state = instrument(state, { meterProvider: new MeterProvider() });
  const run = async (ops: number) => {
    for (let i = 0; i < ops; i++) {
      const lock = await state.getLock("key");
      await lock.release();
    }
  };
  const ops = 200_000;
  await run(ops); // warm-up
  const rates: number[] = [];
  for (let round = 0; round < 5; round++) {
    const started = process.cpuUsage();
    await run(ops);
    const { user, system } = process.cpuUsage(started);
    rates.push(ops / ((user + system) / 1e6));
  }
  return rates;
}

function child(subject: Subject): Promise<number[]> {
  const self = new URL(import.meta.url).pathname;
  const config = new URL("./deno.json", import.meta.url).pathname;
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ["run", "--allow-all", "--config", config, self, `--child=${subject}`],
      (error, stdout, stderr) => {
        if (error !== null) reject(new Error(`${subject}: ${stderr}`));
        else resolve(JSON.parse(stdout.trim().split("\n").at(-1)!));
      },
    );
  });
}

async function local(): Promise<void> {
  const rates = new Map<Subject, number[]>();
  for (let process = 0; process < 4; process++) {
    for (const subject of Object.keys(SUBJECTS) as Subject[]) {
      rates.set(subject, [...rates.get(subject) ?? [], ...await child(subject)]);
    }
  }
  const base = median(rates.get("plain")!);
  console.log(
    "| LocalState, uncontended exclusive acquire+release | ops per CPU-second | ÷ plain |",
  );
  console.log("| --- | ---: | ---: |");
  for (const [subject, values] of rates) {
    const rate = median(values);
    console.log(
      `| ${SUBJECTS[subject]} | ${(rate / 1e6).toFixed(2)} M | ${(rate / base).toFixed(2)} |`,
    );
  }
}

async function pg(): Promise<void> {
  const url = process.env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres";
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  const slices = 10;
  const perSlice = 100;
  const rows: string[] = [];
  try {
    for (const mode of ["session", "transaction"] as const) {
      const state = new PostgresState(url, { mode, namespace: `bench-observability-${mode}` });
      const subjects: Record<string, () => Promise<unknown>> = {
        "`select 1` round trip": () => sql`select 1`,
        "acquire+release": async () => (await state.getLock("k")).release(),
        "acquire+`fencingToken()`+release": async () => {
          const lock = await state.getLock("k");
          await lock.fencingToken();
          await lock.release();
        },
        "`inspect(key)`, the key held by this state": async () => {
          const lock = await state.getLock("k");
          await state.inspect("k");
          await lock.release();
        },
      };
      const times = new Map<string, number[]>();
      for (let slice = -1; slice < slices; slice++) {
        for (const [name, op] of Object.entries(subjects)) {
          const start = performance.now();
          for (let i = 0; i < perSlice; i++) await op();
          const ms = (performance.now() - start) / perSlice;
          if (slice >= 0) times.set(name, [...times.get(name) ?? [], ms]); // slice -1: warm-up
        }
      }
      await state.close();
      for (const [name, values] of times) {
        rows.push(`| ${mode} | ${name} | ${median(values).toFixed(3)} ms |`);
      }
    }
  } finally {
    await sql.end();
  }
  console.log("| mode | operation | median per operation |");
  console.log("| --- | --- | ---: |");
  for (const row of rows) console.log(row);
}

const childArg = process.argv.find((arg) => arg.startsWith("--child="));
if (childArg !== undefined) {
  console.log(JSON.stringify(await measureLocal(childArg.slice(8) as Subject)));
} else {
  const groups = process.argv.slice(2);
  if (groups.length === 0 || groups.includes("local")) await local();
  if (groups.length === 0 || groups.includes("postgres")) await pg();
}
