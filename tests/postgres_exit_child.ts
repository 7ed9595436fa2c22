/**
 * A child process of tests/postgres_faults_test.ts (issue 9): against a server that misbehaves, a
 * request fails with LockFailed, the state is closed, and then the process must exit by itself
 * (no reconnect loop, no connection still being set up keeps it alive). Prints one JSON line.
 * Arguments: the database URL, and the request to make: `wait` (no timeout), `timeout` (300 ms)
 * or `test` (testLock).
 */

import process from "node:process";
import { LockFailed } from "../mod.ts";
import { PostgresState } from "../backends/postgres.ts";

const [url, request] = process.argv.slice(-2);
const state = new PostgresState(url, { heartbeatInterval: 200 });
const started = performance.now();
let outcome: string;
try {
  if (request === "test") await state.testLock("exit-child");
  else await state.getLock("exit-child", request === "timeout" ? { timeout: 300 } : {});
  outcome = "granted";
} catch (error) {
  outcome = error instanceof LockFailed ? "LockFailed" : `other: ${String(error)}`;
  if (error instanceof Error) console.error(error.message);
}
const failedAfter = Math.round(performance.now() - started);
await state.close();
console.log(JSON.stringify({ outcome, failedAfter, connections: state.connections }));
