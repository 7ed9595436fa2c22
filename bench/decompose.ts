/**
 * Issue 14's latency targets, taken apart: where an uncontended acquire+release spends its time
 * beyond the floor it is judged against, measured apart from the main benchmark
 * (`deno task bench`).
 *
 * - `broker`: against two round trips of a WebSocket echo, four ways of doing the same two round
 *   trips: hand-written frames or `BrokerState` as the client, a minimal lock server (a Map, the
 *   same frames, no checks) or `brokerHandler` as the server. Servers in a Deno process of their
 *   own (`bench/broker_server.ts`), clients in this one.
 * - `postgres` (`DATABASE_URL`): against the raw `pg_advisory_lock` + `unlock` pair, the raw
 *   `pg_try_advisory_lock` form that PostgresState sends, the same with the session-marker guard of
 *   issue 9 in each statement, and PostgresState itself.
 *
 * Each subject runs in slices of 300 operations, alternating with the others (order reversed every
 * slice), so that a busy spell of this shared machine hits all alike; each slice's p50 is divided
 * by the floor's p50 of the same round, and the median of those ratios is printed with its spread
 * (the 25th to 75th percentile of the rounds).
 *
 * Usage: `deno run --config bench/deno.json --allow-all bench/decompose.ts [broker] [postgres]`
 *
 * @module
 */

import postgres from "postgres";
import { BrokerState } from "../backends/broker.ts";
import { PostgresState } from "../backends/postgres.ts";
import { percentile, sorted } from "./harness.ts";

const SLICE = 300;
const ROUNDS = 30;
const TOKEN = "decompose";

/** One way of doing an acquire+release: a function that does one. */
type Subject = { name: string; run: () => Promise<void> };

/** p50 (µs) of `SLICE` runs of `run`. */
async function slice(run: () => Promise<void>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < SLICE; i++) {
    const started = performance.now();
    await run();
    times.push((performance.now() - started) * 1000);
  }
  return percentile(sorted(times), 0.5);
}

/** Alternating slices of every subject; prints each one's ratio to the first (the floor). */
async function compare(title: string, subjects: Subject[]): Promise<void> {
  for (let warm = 0; warm < 3; warm++) for (const { run } of subjects) await slice(run);
  const ratios = subjects.map(() => [] as number[]);
  const floors: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const order = subjects.map((_, i) => i);
    if (round % 2 === 1) order.reverse();
    const p50 = new Array<number>(subjects.length);
    for (const i of order) p50[i] = await slice(subjects[i].run);
    floors.push(p50[0]);
    for (let i = 0; i < subjects.length; i++) ratios[i].push(p50[i] / p50[0]);
  }
  console.log(`\n${title} (floor p50 ${percentile(sorted(floors), 0.5).toFixed(0)} µs)\n`);
  console.log("| subject | ÷ floor, median of rounds | 25th–75th percentile |");
  console.log("| --- | ---: | ---: |");
  subjects.forEach(({ name }, i) => {
    const rounds = sorted(ratios[i]);
    const spread = `${percentile(rounds, 0.25).toFixed(2)}–${percentile(rounds, 0.75).toFixed(2)}`;
    console.log(`| ${name} | ${percentile(rounds, 0.5).toFixed(2)} | ${spread} |`);
  });
}

/** A WebSocket and one request awaiting its answer at a time. */
async function rawSocket(
  url: string,
): Promise<{ ask(text: string): Promise<string>; close(): void }> {
  const socket = new WebSocket(url);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = reject;
  });
  let answer: ((text: string) => void) | undefined;
  socket.onmessage = (event) => answer?.(event.data);
  return {
    ask: (text) =>
      new Promise((resolve) => {
        answer = resolve;
        socket.send(text);
      }),
    close: () => socket.close(),
  };
}

/** A client speaking the broker's frames by hand: hello, then acquire/release with no checks. */
async function handWritten(url: string) {
  const socket = await rawSocket(url);
  await socket.ask(JSON.stringify({ op: "hello", version: 1, token: TOKEN }));
  let id = 0;
  return {
    async run() {
      id++;
      await socket.ask(`{"op":"acquire","id":${id},"key":"k","exclusive":true}`);
      await socket.ask(`{"op":"release","id":${id}}`);
    },
    close: () => socket.close(),
  };
}

async function broker(): Promise<void> {
  const server = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", new URL("broker_server.ts", import.meta.url).pathname, TOKEN],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const reader = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let line = "";
  while (!line.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the broker server ended before it listened");
    line += value;
  }
  reader.releaseLock();
  const { port } = JSON.parse(line);
  const base = `ws://127.0.0.1:${port}`;
  const echo = await rawSocket(`${base}/echo`);
  const handToBroker = await handWritten(base);
  const handToMinimal = await handWritten(`${base}/minimal`);
  const toBroker = new BrokerState(base, { token: TOKEN });
  const toMinimal = new BrokerState(`${base}/minimal`, { token: TOKEN });
  const viaState = (state: BrokerState) => async () => {
    const lock = await state.getLock("k");
    await lock.release();
  };
  const frame = '{"op":"granted","id":12345}';
  await compare("Broker, uncontended acquire+release ÷ two WebSocket echo round trips", [
    {
      name: "two echo round trips (the floor)",
      run: () => echo.ask(frame).then(() => echo.ask(frame)).then(() => {}),
    },
    { name: "hand-written frames → minimal server", run: handToMinimal.run },
    { name: "hand-written frames → brokerHandler", run: handToBroker.run },
    { name: "BrokerState → minimal server", run: viaState(toMinimal) },
    { name: "BrokerState → brokerHandler", run: viaState(toBroker) },
  ]);
  await toBroker.close();
  await toMinimal.close();
  echo.close();
  handToBroker.close();
  handToMinimal.close();
  await server.stdin.close();
  await server.status;
}

async function database(): Promise<void> {
  const url = Deno.env.get("DATABASE_URL") ?? "postgres://postgres@127.0.0.1:5432/postgres";
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  const marker = "decompose";
  await sql.unsafe(`select set_config('shared_state.session', '${marker}', false)`);
  const guard = `where current_setting('shared_state.session', true) = '${marker}'`;
  const id = `'4242424242'::int8`;
  const state = new PostgresState(url, { namespace: "bench/decompose" });
  await compare("PostgreSQL, uncontended acquire+release ÷ the raw advisory-lock pair", [
    {
      name: "raw `pg_advisory_lock` + `unlock` (the floor)",
      run: async () => {
        await sql.unsafe(`select pg_advisory_lock(${id})`);
        await sql.unsafe(`select pg_advisory_unlock(${id})`);
      },
    },
    {
      name: "raw `pg_try_advisory_lock` + `unlock` (what PostgresState sends)",
      run: async () => {
        await sql.unsafe(`select pg_try_advisory_lock(${id}) as ok`);
        await sql.unsafe(`select pg_advisory_unlock(${id}) as ok`);
      },
    },
    {
      name: "the same with the session-marker guard of issue 9",
      run: async () => {
        await sql.unsafe(`select pg_try_advisory_lock(${id}) as ok ${guard}`);
        await sql.unsafe(`select pg_advisory_unlock(${id}) as ok ${guard}`);
      },
    },
    {
      name: "PostgresState",
      run: async () => {
        const lock = await state.getLock("k");
        await lock.release();
      },
    },
  ]);
  await state.close();
  await sql.end();
}

const groups = Deno.args.length === 0 ? ["broker", "postgres"] : Deno.args;
if (groups.includes("broker")) await broker();
if (groups.includes("postgres")) await database();
