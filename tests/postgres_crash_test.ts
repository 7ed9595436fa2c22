/**
 * A process that dies while it waits for a lock (killed, crashed, a serverless function frozen and
 * reaped) must not stay in PostgreSQL's queue: its backend, blocked in the wait, notices the
 * closed connection (client_connection_check_interval, PostgreSQL 14+) and leaves, so that it
 * does not keep later requests out. The child is tests/postgres_waiter.ts.
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { after, describe, it } from "node:test";
import { scriptCommand } from "./child_script.ts";
import {
  adminClient,
  DATABASE_URL,
  postgresSkip,
  runName,
  testState,
  waitingInPostgres,
} from "./postgres_env.ts";

const skip = await postgresSkip();
describe("PostgresState in a process that dies while waiting", { skip }, () => {
  const admin = skip ? undefined : adminClient();
  after(() => admin?.end());

  for (const mode of ["session", "transaction"] as const) {
    it(`leaves PostgreSQL's queue with the dead process (${mode} mode)`, async (t) => {
      const [{ version }] =
        await admin!`select current_setting('server_version_num')::int as version`;
      if (version < 140000) {
        t.skip("needs PostgreSQL 14 (client_connection_check_interval)");
        return;
      }
      const app = `ss-test-crash-${mode}`;
      const namespace = `crash-${Date.now()}`;
      const readers = testState(`${app}-readers`, { namespace });
      const later = testState(`${app}-later`, { namespace });
      try {
        const read = await readers.getLock("crash", { exclusive: false });
        const args = [DATABASE_URL, namespace, "crash", mode, runName(app)];
        const { command, args: commandArgs } = scriptCommand("postgres_waiter", args);
        const child = spawn(
          command,
          commandArgs,
          {
            cwd: fileURLToPath(new URL("..", import.meta.url)),
            stdio: ["ignore", "inherit", "inherit"],
          },
        );
        const exited = new Promise((resolve) => child.on("exit", resolve));
        await waitingInPostgres(
          admin!,
          app,
          1,
          "the child's exclusive request waiting in PostgreSQL",
        );
        child.kill("SIGKILL");
        await exited;
        // Its backend notices the closed connection within a second or so and leaves the queue.
        await waitingInPostgres(admin!, app, 0, "the dead process's wait gone from pg_locks");
        const reader = await later.getLock("crash", { exclusive: false, timeout: 5000 });
        await reader.release();
        await read.release();
        assert.equal(await later.testLock("crash"), true);
      } finally {
        await readers.close();
        await later.close();
      }
    });
  }
});
