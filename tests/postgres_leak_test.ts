/**
 * 10,000 random aborts and timeouts racing grants, across three states on shared keys: afterwards
 * no state keeps an entry and `pg_locks` shows nothing of ours, neither granted nor awaited,
 * while the states are still open (closing them would hide a leak).
 */

import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { LockFailed } from "../mod.ts";
import type { PostgresState } from "../backends/postgres.ts";
import { macrotask, random } from "../testing/helpers.ts";
import {
  adminClient,
  advisoryLocksOf,
  eventually,
  postgresSkip,
  testState,
} from "./postgres_env.ts";

const skip = await postgresSkip();
const APP = "ss-test-leak";
const ITERATIONS = 10_000;
const LOOPS = 40;

describe("PostgresState leaves no lock behind", { skip }, () => {
  const admin = skip ? undefined : adminClient();
  after(() => admin?.end());

  for (const mode of ["session", "transaction"] as const) {
    const iterations = mode === "session" ? ITERATIONS : ITERATIONS / 10;
    it(`after ${iterations} random aborts and timeouts (${mode} mode)`, async () => {
      const app = `${APP}-${mode}`;
      const states: PostgresState[] = [1, 2, 3].map((n) =>
        testState(app, {
          namespace: `leak-${mode}`,
          mode,
          // A short window sends more requests through PostgreSQL, where the races are.
          handoffWindow: n === 1 ? 0 : 2,
          maxConnections: 12,
        })
      );
      const keys = ["a", "b", "c", "d", "e", "\u0000", "ключ"];
      const tally = { acquired: 0, timedOut: 0, aborted: 0, busy: 0 };
      let count = 0;
      const loop = async (seed: number) => {
        const next = random(seed);
        while (count < iterations) {
          count++;
          const state = states[Math.floor(next() * states.length)];
          const key = keys[Math.floor(next() * keys.length)];
          const exclusive = next() < 0.6;
          const roll = next();
          let options: { exclusive: boolean; timeout?: number; signal?: AbortSignal } = {
            exclusive,
          };
          if (roll < 0.3) options = { exclusive, timeout: next() * 4 };
          else if (roll < 0.4) options = { exclusive, timeout: 0 };
          else if (roll < 0.9) {
            const controller = new AbortController();
            const delay = next() * 4;
            if (next() < 0.3) queueMicrotask(() => controller.abort(new Error("micro")));
            else setTimeout(() => controller.abort(new Error("timer")), delay);
            options = { exclusive, signal: controller.signal };
          }
          try {
            const lock = await state.getLock(key, options);
            tally.acquired++;
            if (next() < 0.5) await macrotask(next() * 2);
            await lock.release();
          } catch (error) {
            assert.ok(error instanceof LockFailed, `unexpected ${String(error)}`);
            if (/timed out/.test(error.message)) tally.timedOut++;
            else if (/aborted/.test(error.message)) tally.aborted++;
            else if (/busy/.test(error.message)) tally.busy++;
            else throw error;
          }
        }
      };
      await Promise.all(Array.from({ length: LOOPS }, (_, i) => loop(i + 1)));
      // A given-up wait may still be ending in the database (lock_timeout, or a cancel on its
      // way): its entry goes once that settles, a moment after the caller saw LockFailed.
      await eventually(
        () => Promise.resolve(states.every((state) => state.size === 0)),
        "every key entry dropped",
        5_000,
      );
      assert.deepEqual(await advisoryLocksOf(admin!, app), [], "a database lock was left behind");
      assert.ok(tally.acquired > 0 && tally.timedOut > 0 && tally.aborted > 0 && tally.busy > 0);
      console.log(`${mode}: ${JSON.stringify(tally)}`);
      await Promise.all(states.map((state) => state.close()));
    });
  }
});
