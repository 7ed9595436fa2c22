/**
 * The demo: graders read a shared cache under shared locks while a refresher rebuilds it under an
 * exclusive lock, and a timeline shows who holds the key, who waits for it in which order, and
 * whom each request waits behind.
 *
 *     deno task demo                                   # every worker in this process, LocalState
 *     DATABASE_URL=postgres://… deno task demo         # one OS process per worker, PostgresState
 */

import { LocalState } from "../mod.ts";
import { type DemoEvent, runWorker, type Step, Timeline } from "./demo_workers.ts";

const KEY = "grading/cache";

/** Three graders read the cache; one refresher rebuilds it twice. */
const WORKERS: Record<string, Step[]> = {
  "grader-1": [{ mode: "shared", ms: 120 }, { mode: "shared", ms: 80 }, { mode: "shared", ms: 60 }],
  "grader-2": [{ mode: "shared", ms: 90, after: 30 }, { mode: "shared", ms: 100 }],
  "grader-3": [{ mode: "shared", ms: 70, after: 150 }, { mode: "shared", ms: 50 }],
  "refresher": [{ mode: "exclusive", ms: 150, after: 60 }, {
    mode: "exclusive",
    ms: 100,
    after: 100,
  }],
};

const databaseUrl = Deno.env.get("DATABASE_URL");

/** Child process mode: `demo.ts --worker NAME`, reporting events as JSON lines on stdout. */
async function runChild(name: string, url: string): Promise<void> {
  const { PostgresState } = await import("../backends/postgres.ts");
  await using state = new PostgresState(url, { namespace: "shared-state-demo" });
  const report = (event: DemoEvent) => console.log(JSON.stringify(event));
  report({ worker: name, what: "ready" });
  // Start together: the parent writes a line on stdin once every worker is connected and ready.
  await Deno.stdin.readable.getReader().read();
  await runWorker(state, KEY, name, WORKERS[name], report);
}

/** Runs every worker as its own OS process and merges their events into one timeline. */
async function runProcesses(url: string, timeline: Timeline): Promise<void> {
  const children = Object.keys(WORKERS).map((name) => {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", import.meta.filename!, "--worker", name],
      env: { DATABASE_URL: url },
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    return { name, child, lines: lines(child.stdout) };
  });
  // Wait until each worker says it is ready, then let them all go.
  for (const { name, lines } of children) {
    const first = await lines.next();
    if (first.done) throw new Error(`worker ${name} exited before it was ready`);
  }
  timeline.restart();
  await Promise.all(children.map(async ({ child }) => {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode("go\n"));
    await writer.close();
  }));
  await Promise.all(children.map(async ({ name, child, lines }) => {
    for await (const line of lines) timeline.record(JSON.parse(line));
    const status = await child.status;
    if (!status.success) throw new Error(`worker ${name} failed with exit code ${status.code}`);
  }));
}

async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffered = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buffered += chunk;
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      yield buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
    }
  }
}

async function main(): Promise<void> {
  const workerFlag = Deno.args.indexOf("--worker");
  if (workerFlag >= 0) return await runChild(Deno.args[workerFlag + 1], databaseUrl!);

  const timeline = new Timeline((line) => console.log(line));
  const names = Object.keys(WORKERS);
  if (databaseUrl) {
    console.log(`shared-state demo: ${names.length} OS processes, PostgresState`);
    console.log(`database: ${new URL(databaseUrl).host}, key ${JSON.stringify(KEY)}`);
  } else {
    console.log(`shared-state demo: ${names.length} workers in one process, LocalState`);
    console.log(`key ${JSON.stringify(KEY)} (set DATABASE_URL to run them as OS processes)`);
  }
  console.log("graders read the cache in shared mode; the refresher rebuilds it exclusively.");
  console.log(
    "First come, first served: a request waits behind the holders it conflicts with and behind\n" +
      "every request queued before it, so a grader that asks after the refresher waits even\n" +
      "while only graders hold the key (the refresher is not starved). (X) = exclusive.\n",
  );
  if (databaseUrl) {
    await runProcesses(databaseUrl, timeline);
  } else {
    await using state = new LocalState();
    const report = (event: DemoEvent) => timeline.record(event);
    await Promise.all(names.map((name) => runWorker(state, KEY, name, WORKERS[name], report)));
  }
  console.log(`\n${timeline.summary()}`);
}

await main();
