/**
 * Transaction mode behind a real transaction-mode pooler (PgBouncer `pool_mode=transaction`),
 * whose URL is in `POOLER_URL`; skipped, loudly, without it. The conformance suite runs through
 * the pooler, and aborted waits must never cancel another client's query: the pooler hands a
 * server backend to another client between transactions.
 *
 *     POOLER_URL=postgres://postgres@127.0.0.1:6432/postgres deno task test
 */

import assert from "node:assert/strict";
import process from "node:process";
import { after, describe, it } from "node:test";
import postgres from "postgres";
import { LockFailed } from "../mod.ts";
import { PostgresState } from "../backends/postgres.ts";
import { conformanceSuite } from "../testing.ts";
import { macrotask, random } from "../testing/helpers.ts";
import { postgresBackend, postgresSkip, runName, testState } from "./postgres_env.ts";

const POOLER_URL = process.env.POOLER_URL;
const serverSkip = await postgresSkip();
const skip = serverSkip ||
  (POOLER_URL ? false : "SKIPPED: set POOLER_URL to a transaction-mode pooler (PgBouncer)");
if (!serverSkip && !POOLER_URL) {
  console.error(`\n!!!!! SKIPPING POOLER TESTS: POOLER_URL is not set. !!!!!\n`);
}
const APP = "ss-test-pooler";

function pooledState(namespace: string, options = {}): PostgresState {
  return new PostgresState(POOLER_URL!, {
    namespace,
    mode: "transaction",
    clientOptions: { connection: { application_name: runName(APP) } },
    ...options,
  });
}

conformanceSuite(
  "PostgresState (transaction mode, through a transaction pooler)",
  postgresBackend(
    skip,
    APP,
    () => pooledState("conformance-pooler"),
  ),
);

describe("PostgresState behind a transaction pooler", { skip }, () => {
  const bystanders: postgres.Sql[] = [];
  after(() => Promise.all(bystanders.map((sql) => sql.end())));

  it("never cancels another client's query when it ends a wait", async () => {
    const namespace = `pooler-${Date.now()}`;
    const holder = testState(`${APP}-holder`, { namespace });
    const waiter = pooledState(namespace, { maxConnections: 4 });
    let running = true;
    const tally = { bystanderQueries: 0, aborted: 0 };
    const cancelled: string[] = [];
    try {
      const held = await holder.getLock("contended");
      // Other clients of the pooler, whose server backends our sessions' earlier ones become.
      const clients = Array.from({ length: 6 }, () => {
        const sql = postgres(POOLER_URL!, { max: 1, prepare: false, onnotice: () => {} });
        bystanders.push(sql);
        return (async () => {
          while (running) {
            try {
              await sql`select pg_sleep(0.01)`;
              tally.bystanderQueries++;
            } catch (error) {
              cancelled.push(String(error));
            }
          }
        })();
      });
      const next = random(3);
      for (let i = 0; i < 100; i++) {
        const controller = new AbortController();
        const request = waiter.getLock("contended", {
          exclusive: next() < 0.5,
          signal: controller.signal,
        });
        await macrotask(2 + next() * 10);
        controller.abort();
        await assert.rejects(request, LockFailed);
        tally.aborted++;
      }
      running = false;
      await Promise.all(clients);
      assert.deepEqual(cancelled, [], "a query of another client was cancelled");
      assert.ok(tally.bystanderQueries > 0);
      await held.release();
      const lock = await waiter.getLock("contended", { timeout: 5000 });
      await lock.release();
      console.log(JSON.stringify(tally));
    } finally {
      running = false;
      await holder.close();
      await waiter.close();
    }
  });
});
