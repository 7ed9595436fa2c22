/**
 * A child process of tests/postgres_crash_test.ts, runnable by Deno on the sources and by Node on
 * the compiled package: it asks for an exclusive lock on a key someone else holds and waits, until
 * the parent kills it. Arguments: the database URL, the namespace, the key, the mode and the
 * application name.
 */

import process from "node:process";
import { PostgresState } from "../backends/postgres.ts";

const [url, namespace, key, mode, applicationName] = process.argv.slice(-5);
const state = new PostgresState(url, {
  namespace,
  mode: mode as "session" | "transaction",
  clientOptions: { connection: { application_name: applicationName } },
});
state.getLock(key).then(
  () => {
    console.error("the lock was granted, but the parent holds it");
    process.exit(1);
  },
  (error) => {
    console.error(`the wait failed: ${String(error)}`);
    process.exit(1);
  },
);
