/**
 * Stray cancels (pg_cancel_backend from an operator, or a late cancel of an abandoned wait) that
 * hit a statement inside a transaction-mode lock's transaction abort that transaction, and with
 * it the lock: the state must then report the lock lost, never keep it as held.
 */

import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { LockLost } from "../mod.ts";
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

describe("PostgresState under stray cancels", { skip }, () => {
  const admin = skip ? undefined : adminClient();
  after(() => admin?.end());

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
      const again = await state.getLock("cancelled", { timeout: 5000 });
      assert.equal((await advisoryLocksOf(admin!, app)).length, 1);
      await again.release();
    } finally {
      await state.close();
    }
  });
});
