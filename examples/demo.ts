/**
 * The demo: graders read a shared cache under shared locks while a refresher rebuilds it under an
 * exclusive lock, and a timeline shows who waits, who holds and in which mode.
 *
 *     deno task demo
 *
 * It runs on the in-memory LocalState, all workers in this process.
 */

import { LocalState, type StateABC } from "../mod.ts";
import { runWorker, type Step, Timeline } from "./demo_workers.ts";

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

async function main(): Promise<void> {
  const timeline = new Timeline(performance.now(), (line) => console.log(line));
  console.log(`shared-state demo: ${Object.keys(WORKERS).length} workers on one LocalState`);
  console.log(
    `key ${JSON.stringify(KEY)}; graders read it shared, the refresher writes it exclusive\n`,
  );
  await using state: StateABC = new LocalState();
  await Promise.all(
    Object.entries(WORKERS).map(([name, steps]) => runWorker(state, KEY, name, steps, timeline)),
  );
  console.log(`\n${timeline.summary()}`);
}

await main();
