/**
 * Cancels: an abort that races the start of a wait in PostgreSQL must still end that wait (a
 * backend drops a cancel that arrives between statements); and a stray cancel (from an operator,
 * or a late one of an abandoned wait) that aborts a transaction-mode lock's transaction loses
 * that lock visibly, never keeping it as held.
 */

import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { LockFailed, LockLost } from "../mod.ts";
import type { PostgresState } from "../backends/postgres.ts";
import { macrotask, random } from "../testing/helpers.ts";
import {
  aborted,
  adminClient,
  advisoryLocksOf,
  lockPids,
  postgresSkip,
  testState,
  within,
} from "./postgres_env.ts";

const skip = await postgresSkip();

/** Waits until `state` keeps no key entry (a given-up wait's entry goes once it ended). */
async function entriesGone(state: PostgresState, what: string, limitMs = 5000): Promise<void> {
  const until = performance.now() + limitMs;
  while (state.size > 0) {
    if (performance.now() > until) throw new Error(`never happened: ${what}`);
    await macrotask(1);
  }
}

describe("PostgresState under stray cancels", { skip }, () => {
  const admin = skip ? undefined : adminClient();
  after(() => admin?.end());

  for (const mode of ["session", "transaction"] as const) {
    it(`ends every aborted wait in the database, even when the abort races its start (${mode})`, async () => {
      const app = `ss-test-cancel-race-${mode}`;
      const namespace = `cancel-race-${mode}-${Date.now()}`;
      const holder = testState(`${app}-holder`, { namespace, mode });
      const waiter = testState(app, { namespace, mode });
      try {
        const held = await holder.getLock("raced");
        const next = random(7);
        for (let i = 0; i < 300; i++) {
          const controller = new AbortController();
          const request = waiter.getLock("raced", {
            exclusive: next() < 0.5,
            signal: controller.signal,
          });
          const roll = next();
          if (roll < 0.3) queueMicrotask(() => controller.abort());
          else if (roll < 0.6) setTimeout(() => controller.abort(), next() * 3);
          else {
            await macrotask(next() * 3);
            controller.abort();
          }
          await assert.rejects(request, LockFailed);
          // The wait must end in PostgreSQL although the key stays held: its entry goes then.
          await entriesGone(waiter, `aborted wait ${i} ended in the database`);
        }
        assert.deepEqual(await lockPids(admin!, app, false), [], "a wait left in pg_locks");
        await held.release();
      } finally {
        await holder.close();
        await waiter.close();
      }
    });
  }

  it("reports a transaction-mode lock lost when a cancel aborted its transaction", async () => {
    const app = "ss-test-cancel-transaction";
    // Frequent heartbeats: statements inside the holding transaction for the cancels to hit.
    const state = testState(app, {
      namespace: `cancel-${Date.now()}`,
      mode: "transaction",
      heartbeatInterval: 2,
    });
    try {
      const lock = await state.getLock("cancelled");
      const [pid] = await lockPids(admin!, app, true);
      let gone = false;
      for (let i = 0; i < 3000 && !gone && !lock.signal.aborted; i++) {
        await admin!`select pg_cancel_backend(${pid})`;
        if (i % 20 === 19) gone = (await advisoryLocksOf(admin!, app)).length === 0;
      }
      gone ||= (await advisoryLocksOf(admin!, app)).length === 0;
      console.log(`lock gone from pg_locks: ${gone}, signal aborted: ${lock.signal.aborted}`);
      if (gone) {
        const reason = await within(aborted(lock.signal), "the aborted transaction's lock lost");
        assert.ok(reason instanceof LockLost);
      }
      await lock.release();
      // The state goes on working. (Not checked in pg_locks: with 2 ms heartbeats, a loaded
      // machine may rightly declare the new connection dead too.)
      const again = await state.getLock("cancelled", { timeout: 5000 });
      await again.release();
    } finally {
      await state.close();
    }
  });
});
