/**
 * Runs the in-process group in the runtime that loads it and prints the result as one line of
 * JSON on stdout; progress goes to stderr. `bench/node.ts` compiles it and runs it under Node,
 * against the npm build. Arguments: `--smoke` for the CI smoke round.
 *
 * @module
 */

import process from "node:process";
import { FULL_EFFORT, SMOKE_EFFORT } from "./harness.ts";
import { runInProcessGroup } from "./in_process.ts";

const smoke = process.argv.includes("--smoke");
const result = await runInProcessGroup(
  `Node ${process.version}, npm build`,
  smoke ? SMOKE_EFFORT : FULL_EFFORT,
  (line) => process.stderr.write(`${line}\n`),
);
process.stdout.write(`${JSON.stringify(result)}\n`);
// A library may keep a handle open (mortice's BroadcastChannel); the run is over.
process.exit(0);
