/**
 * A worker for tests/postgres_fencing_test.ts, runnable by Deno on the sources and by Node on the
 * compiled package: takes an exclusive lock through its own PostgresState (waiting for it if it
 * must), prints `{"token": "…", "pid": …}` (its fencing token, as text) once it holds it, then
 * holds on until a line arrives on stdin, releases, closes and exits 0.
 *
 * Usage: `pg_fencer.ts <url> <namespace> <key> <mode> <application name>`.
 */

import process from "node:process";
import { createInterface } from "node:readline";
import { PostgresState } from "../../backends/postgres.ts";

const [url, namespace, key, mode, applicationName] = process.argv.slice(-5);
const state = new PostgresState(url, {
  namespace,
  mode: mode as "session" | "transaction",
  clientOptions: { connection: { application_name: applicationName } },
});
try {
  const lock = await state.getLock(key);
  const token = await lock.fencingToken();
  process.stdout.write(`${JSON.stringify({ token: String(token), pid: process.pid })}\n`);
  await new Promise<void>((resolve) => {
    const lines = createInterface({ input: process.stdin });
    lines.once("line", () => resolve());
    lines.once("close", () => resolve());
  });
  await lock.release();
  await state.close();
  process.exit(0);
} catch (error) {
  process.stderr.write(`pg_fencer: ${error}\n`);
  await state.close();
  process.exit(1);
}
