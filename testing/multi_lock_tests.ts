/**
 * The conformance suite's multi-key lock tests (issue 13): `getLocks` takes all its keys or none,
 * and callers naming keys in any order never deadlock. Registered by {@link conformanceSuite}.
 */

import assert from "node:assert/strict";
import { describe } from "node:test";
import { LockFailed, LockLost } from "../errors.ts";
import type { StateABC } from "../state.ts";
import type { SuiteContext } from "./context.ts";
import { deferred, InvariantMonitor, macrotask, random, watch } from "./helpers.ts";

const S = { exclusive: false } as const;

/** `keys` in a random order. */
function shuffled<T>(keys: readonly T[], next: () => number): T[] {
  const result = [...keys];
  for (let i = result.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [result[i], result[j]] = [result[j], result[i]];
  }
  return result;
}

/** Registers the multi-key lock tests. */
export function multiLockTests({ test, open, freshKey, sharedBacking }: SuiteContext): void {
  describe("multi-key locks", () => {
    test("takes every key, a key named twice once, and releases them with one call", async () => {
      const state = await open();
      const [a, b] = [freshKey("a"), freshKey("b")];
      const locks = await state.getLocks([b, a, b], { timeout: 0 });
      assert.deepEqual(locks.keys, [b, a]);
      assert.equal(locks.exclusive, true, "exclusive is the default");
      assert.equal(locks.signal.aborted, false);
      assert.equal(await state.testLock(a, S), false);
      assert.equal(await state.testLock(b, S), false);
      await locks.release();
      await locks.release();
      assert.equal(await state.testLock(a), true);
      assert.equal(await state.testLock(b), true);
      const shared = await state.getLocks([a, b], S);
      const alsoShared = await state.getLocks([b], { ...S, timeout: 0 });
      assert.equal(shared.exclusive, false);
      assert.equal(await state.testLock(a, S), true);
      assert.equal(await state.testLock(a), false);
      await Promise.all([shared.release(), alsoShared.release()]);
      assert.equal(await state.testLock(b), true);
    });

    test("holds none of the keys after a busy, timed-out or aborted attempt", async () => {
      const state = await open();
      const keys = [freshKey("a"), freshKey("b"), freshKey("c")];
      for (const taken of keys) {
        const holder = await state.getLock(taken);
        const busy = await state.getLocks(keys, { timeout: 0 }).then(
          () => assert.fail("granted with a key held elsewhere"),
          (error) => error,
        );
        assert.ok(busy instanceof LockFailed, String(busy));
        assert.equal(busy.reason, "busy");
        assert.equal(busy.key, taken, "the failure names the key that was busy");
        const timedOut = await state.getLocks(keys, { ...S, timeout: 20 }).then(
          () => assert.fail("granted with a key held elsewhere"),
          (error) => error,
        );
        assert.equal(timedOut.reason, "timeout");
        const controller = new AbortController();
        const waiting = watch(state.getLocks(keys, { signal: controller.signal }));
        await macrotask(5);
        controller.abort(new Error("enough"));
        await waiting.done;
        assert.equal(waiting.outcome.status, "rejected");
        const aborted = (waiting.outcome as { reason: LockFailed }).reason;
        assert.equal(aborted.reason, "aborted");
        for (const key of keys) {
          if (key !== taken) assert.equal(await state.testLock(key), true, `${key} kept`);
        }
        await holder.release();
      }
      const all = await state.getLocks(keys, { timeout: 0 });
      await all.release();
    });

    test("waits for a holder of any key, then holds them all", async () => {
      const state = await open();
      const [a, b] = [freshKey("a"), freshKey("b")];
      const holder = await state.getLock(b, S);
      const waiting = watch(state.getLocks([a, b]));
      await macrotask(5);
      assert.equal(waiting.outcome.status, "pending");
      await holder.release();
      await waiting.done;
      assert.equal(waiting.outcome.status, "fulfilled");
      const locks = (waiting.outcome as { value: Awaited<ReturnType<StateABC["getLocks"]>> }).value;
      assert.equal(await state.testLock(a, S), false);
      assert.equal(await state.testLock(b, S), false);
      await locks.release();
    });

    test("never deadlocks, whatever order callers name the keys in", async () => {
      const state = await open();
      const keys = [freshKey("a"), freshKey("b"), freshKey("c"), freshKey("d")];
      const monitor = new InvariantMonitor();
      const next = random(2024);
      const worker = async () => {
        for (let i = 0; i < 15; i++) {
          const count = 2 + Math.floor(next() * 2);
          const chosen = shuffled(keys, next).slice(0, count);
          const exclusive = next() < 0.7;
          const locks = await state.getLocks(chosen, { exclusive });
          for (const key of chosen) monitor.enter(key, exclusive);
          if (next() < 0.5) await macrotask();
          for (const key of chosen) monitor.exit(key, exclusive);
          await locks.release();
        }
      };
      await Promise.all(Array.from({ length: 8 }, () => worker()));
      assert.deepEqual(monitor.violations, []);
      for (const key of keys) assert.equal(await state.testLock(key), true);
    });

    test("withLocks releases on return and on throw", async () => {
      const state = await open();
      const keys = [freshKey("a"), freshKey("b")];
      const value = await state.withLocks(keys, async (locks) => {
        assert.deepEqual(locks.keys, keys);
        assert.equal(await state.testLock(keys[1], S), false);
        return 7;
      });
      assert.equal(value, 7);
      const boom = new Error("boom");
      await assert.rejects(state.withLocks(keys, () => Promise.reject(boom), S), boom);
      for (const key of keys) assert.equal(await state.testLock(key), true);
    });

    test("close fails a waiting request and aborts the signal of held ones", async () => {
      const state = await open();
      const [a, b, c] = [freshKey("a"), freshKey("b"), freshKey("c")];
      const held = await state.getLocks([a, b]);
      const signal = held.signal;
      const waiter = watch(state.getLocks([b, c]));
      await state.close();
      await waiter.done;
      assert.equal(waiter.outcome.status, "rejected");
      const failure = (waiter.outcome as { reason: unknown }).reason;
      assert.ok(failure instanceof LockFailed, String(failure));
      assert.equal(failure.reason, "closed");
      assert.ok(signal.aborted);
      assert.ok(signal.reason instanceof LockLost, String(signal.reason));
      assert.equal(signal.reason.reason, "closed");
      await held.release();
      await assert.rejects(state.getLocks([a]), { name: "LockFailed", reason: "closed" });
    });

    test("rejects bad arguments", async () => {
      const state = await open();
      const key = freshKey();
      const bad = (value: unknown) => value as never;
      for (const keys of [undefined, null, "ab", new Set(["a"]), [1], ["a", null]]) {
        await assert.rejects(state.getLocks(bad(keys)), TypeError, String(keys));
        await assert.rejects(state.withLocks(bad(keys), () => 1), TypeError);
      }
      await assert.rejects(state.getLocks([]), RangeError);
      await assert.rejects(state.getLocks([key], { timeout: -1 }), RangeError);
      await assert.rejects(state.getLocks([key], { exclusive: bad("yes") }), TypeError);
      await assert.rejects(
        state.getLocks([key], bad({ exlusive: true })),
        /unknown option "exlusive"/,
      );
      await assert.rejects(state.withLocks([key], bad(undefined)), TypeError);
      assert.equal(await state.testLock(key), true);
    });

    if (sharedBacking) {
      test("two states naming keys in opposite orders never deadlock", async () => {
        const [first, second] = [await open(), await open()];
        const keys = [freshKey("a"), freshKey("b"), freshKey("c")];
        const monitor = new InvariantMonitor();
        const gate = deferred();
        const worker = async (state: StateABC, order: string[]) => {
          await gate.promise;
          for (let i = 0; i < 15; i++) {
            const locks = await state.getLocks(order);
            for (const key of order) monitor.enter(key, true);
            await macrotask();
            for (const key of order) monitor.exit(key, true);
            await locks.release();
          }
        };
        const reversed = [...keys].reverse();
        const work = [
          worker(first, keys),
          worker(second, reversed),
          worker(first, reversed),
          worker(second, keys),
        ];
        gate.resolve();
        await Promise.all(work);
        assert.deepEqual(monitor.violations, []);
      });
    }
  });
}
