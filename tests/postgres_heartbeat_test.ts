/**
 * Heartbeats: a connection that goes silent (a network loss: nothing is closed, nothing answers)
 * loses its locks with LockLost, while a busy process whose event loop was blocked for longer
 * than the heartbeat interval keeps them.
 */

import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { LockLost } from "../mod.ts";
import { PostgresState } from "../backends/postgres.ts";
import { macrotask } from "../testing/helpers.ts";
import { FaultProxy } from "./fault_proxy.ts";
import {
  aborted,
  adminClient,
  advisoryLocksOf,
  DATABASE_URL,
  lockPids,
  postgresSkip,
  runName,
  terminate,
  within,
} from "./postgres_env.ts";

const skip = await postgresSkip();

describe("PostgresState heartbeats", { skip }, () => {
  const admin = skip ? undefined : adminClient();
  after(() => admin?.end());
  const namespace = `heartbeat-${Date.now()}`;

  it("loses the locks of a connection that went silent, and works again", async () => {
    const app = "ss-test-heartbeat-silent";
    const proxy = await FaultProxy.start("forward", DATABASE_URL);
    const url = proxy.url(DATABASE_URL);
    const state = new PostgresState(url, {
      namespace,
      heartbeatInterval: 50,
      clientOptions: { connection: { application_name: runName(app) } },
    });
    try {
      const locks = await Promise.all(["s/1", "s/2", "s/3"].map((key) => state.getLock(key)));
      const holders = await lockPids(admin!, app, true);
      proxy.silent = true;
      const reasons = await within(
        Promise.all(locks.map((lock) => aborted(lock.signal))),
        "the silent connection's locks lost",
      );
      assert.ok(reasons.every((reason) => reason instanceof LockLost));
      // The server still holds them for the silent backend, until an operator or TCP ends it.
      assert.equal((await advisoryLocksOf(admin!, app)).filter((l) => l.granted).length, 3);
      await terminate(admin!, holders);
      proxy.silent = false;
      const again = await state.getLock("s/1", { timeout: 5000 });
      assert.ok(!again.signal.aborted);
      await again.release();
    } finally {
      await state.close();
      await proxy.stop();
    }
  });

  it("keeps its locks when heartbeat answers come late (slow network, busy event loop)", async () => {
    const app = "ss-test-heartbeat-late";
    const interval = 100;
    const proxy = await FaultProxy.start("forward", DATABASE_URL);
    const url = proxy.url(DATABASE_URL);
    const state = new PostgresState(url, {
      namespace,
      heartbeatInterval: interval,
      clientOptions: { connection: { application_name: runName(app) } },
    });
    try {
      const lock = await state.getLock("late");
      for (let i = 0; i < 4; i++) {
        // The next heartbeat's answer arrives after a while, but the event loop is busy then
        // and the next heartbeat tick is late: when the loop is free again, the timer may run
        // before the answer is read. (Odd rounds: the answer alone is late, by a fraction.)
        proxy.hold = true;
        await proxy.held();
        await macrotask(0.3 * interval);
        proxy.flush();
        if (i % 2 === 0) {
          const until = performance.now() + 1.1 * interval;
          while (performance.now() < until) {
            // Synchronous work: no timer, no I/O runs.
          }
        }
        // A few heartbeat rounds after it.
        await macrotask(3 * interval);
        assert.ok(!lock.signal.aborted, `lost after round ${i}: ${String(lock.signal.reason)}`);
      }
      assert.equal((await advisoryLocksOf(admin!, app)).length, 1);
      await lock.release();
    } finally {
      await state.close();
      await proxy.stop();
    }
  });
});
