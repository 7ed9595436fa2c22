/**
 * The conformance suite's permit tests (issue 13): counting semaphores as every backend serves
 * them. Registered by {@link conformanceSuite} inside its own `describe`.
 */

import assert from "node:assert/strict";
import { describe } from "node:test";
import { LockFailed, LockLost } from "../errors.ts";
import type { Permit } from "../lock.ts";
import type { StateABC } from "../state.ts";
import type { SuiteContext } from "./context.ts";
import { deferred, macrotask, PermitMonitor, random, watch } from "./helpers.ts";

/** A promise's value once it has been watched to fulfilment. */
function valueOf<T>(watched: ReturnType<typeof watch<T>>): T {
  const { outcome } = watched;
  if (outcome.status !== "fulfilled") {
    assert.fail(
      `expected a permit, got ${outcome.status}: ${"reason" in outcome ? outcome.reason : ""}`,
    );
  }
  return outcome.value;
}

/** Registers the permit tests. */
export function permitTests({ test, open, freshKey, sharedBacking }: SuiteContext): void {
  describe("permits", () => {
    test("lets at most `limit` holders in, and tells who could enter", async () => {
      const state = await open();
      const key = freshKey();
      const permits = await Promise.all(
        [1, 2, 3].map(() => state.getPermit(key, { limit: 3, timeout: 0 })),
      );
      assert.deepEqual(permits.map((p) => [p.key, p.limit, p.signal.aborted]), [
        [key, 3, false],
        [key, 3, false],
        [key, 3, false],
      ]);
      const error = await state.getPermit(key, { limit: 3, timeout: 0 }).then(
        () => assert.fail("a fourth permit was granted"),
        (error) => error,
      );
      assert.ok(error instanceof LockFailed, String(error));
      assert.equal(error.reason, "busy");
      assert.equal(error.key, key);
      assert.equal(error.limit, 3);
      assert.equal(error.exclusive, false);
      assert.equal(await state.testPermit(key, { limit: 3 }), false);
      assert.equal(await state.testPermit(key, { limit: 4 }), true);
      await permits[1].release();
      assert.equal(await state.testPermit(key, { limit: 3 }), true);
      const again = await state.getPermit(key, { limit: 3, timeout: 0 });
      await Promise.all([...permits, again].map((permit) => permit.release()));
      assert.equal(await state.testPermit(key, { limit: 1 }), true);
    });

    test("keeps permit keys apart from lock keys", async () => {
      const state = await open();
      const key = freshKey();
      const lock = await state.getLock(key);
      const permit = await state.getPermit(key, { limit: 1, timeout: 0 });
      assert.equal(await state.testLock(key), false);
      assert.equal(await state.testPermit(key, { limit: 1 }), false);
      await permit.release();
      assert.equal(await state.testLock(key), false, "releasing the permit freed the lock");
      assert.equal(await state.testPermit(key, { limit: 1 }), true);
      await lock.release();
      assert.equal(await state.testLock(key), true);
    });

    test("serves waiting requests first come, first served, each by its own limit", async () => {
      const state = await open();
      const key = freshKey();
      const held = [
        await state.getPermit(key, { limit: 2 }),
        await state.getPermit(key, { limit: 2 }),
      ];
      const order: string[] = [];
      const request = (name: string, limit: number) =>
        watch(
          state.getPermit(key, { limit }).then((permit) => {
            order.push(name);
            return permit;
          }),
        );
      const a = request("a", 2);
      const b = request("b", 2);
      // c's own limit would let it in, but a and b came first.
      const c = request("c", 5);
      await macrotask();
      assert.deepEqual(order, []);
      const busy = await state.getPermit(key, { limit: 10, timeout: 0 }).then(
        () => assert.fail("a newcomer passed the queue"),
        (error) => error,
      );
      assert.equal(busy.reason, "busy");
      assert.equal(await state.testPermit(key, { limit: 10 }), false);
      await held[0].release();
      await a.done;
      assert.deepEqual(order, ["a"]);
      await held[1].release();
      await Promise.all([b.done, c.done]);
      assert.deepEqual(order, ["a", "b", "c"]);
      assert.equal(await state.testPermit(key, { limit: 3 }), false);
      assert.equal(await state.testPermit(key, { limit: 4 }), true);
      await Promise.all([a, b, c].map((w) => valueOf(w).release()));
    });

    test("lets the requests behind a waiter in when it gives up", async () => {
      const state = await open();
      const key = freshKey();
      const holder = await state.getPermit(key, { limit: 1 });
      const controller = new AbortController();
      const first = watch(state.getPermit(key, { limit: 1, signal: controller.signal }));
      const second = watch(state.getPermit(key, { limit: 3 }));
      await macrotask();
      assert.equal(second.outcome.status, "pending");
      controller.abort(new Error("changed my mind"));
      await Promise.all([first.done, second.done]);
      assert.equal(first.outcome.status, "rejected");
      await valueOf(second).release();
      await holder.release();
      assert.equal(await state.testPermit(key, { limit: 1 }), true);
    });

    test("times out and is aborted like a lock, leaving nothing behind", async () => {
      const state = await open();
      const key = freshKey();
      const holder = await state.getPermit(key, { limit: 1 });
      const timedOut = await state.getPermit(key, { limit: 1, timeout: 20 }).then(
        () => assert.fail("should have timed out"),
        (error) => error,
      );
      assert.ok(timedOut instanceof LockFailed, String(timedOut));
      assert.equal(timedOut.reason, "timeout");
      assert.equal(timedOut.key, key);
      assert.equal(timedOut.limit, 1);
      const reason = new Error("stop");
      const early = await state.getPermit(key, { limit: 1, signal: AbortSignal.abort(reason) })
        .then(() => assert.fail("should have failed"), (error) => error);
      assert.equal(early.reason, "aborted");
      assert.equal(early.cause, reason);
      const controller = new AbortController();
      const waiting = state.getPermit(key, { limit: 1, signal: controller.signal });
      controller.abort(reason);
      const late = await waiting.then(() => assert.fail("should have failed"), (e) => e);
      assert.ok(late instanceof LockFailed);
      assert.equal(late.reason, "aborted");
      assert.equal(late.cause, reason);
      await holder.release();
      assert.equal(await state.testPermit(key, { limit: 1 }), true);
      await (await state.getPermit(key, { limit: 1, timeout: 0 })).release();
    });

    test("leaves no residue after random aborts and timeouts", async () => {
      const state = await open();
      const key = freshKey();
      const next = random(13);
      for (let round = 0; round < 10; round++) {
        const holders = [
          await state.getPermit(key, { limit: 2 }),
          await state.getPermit(key, { limit: 2 }),
        ];
        const requests: Promise<unknown>[] = [];
        const controllers: AbortController[] = [];
        for (let i = 0; i < 8; i++) {
          const controller = new AbortController();
          controllers.push(controller);
          const timeout = next() < 0.5 ? Math.floor(next() * 5) : undefined;
          const limit = 1 + Math.floor(next() * 3);
          requests.push(
            state.getPermit(key, { limit, timeout, signal: controller.signal }).then(
              (permit) => permit.release(),
              (error) => assert.ok(error instanceof LockFailed, String(error)),
            ),
          );
        }
        await macrotask(Math.floor(next() * 3));
        for (const controller of controllers) if (next() < 0.7) controller.abort();
        await Promise.all(holders.map((permit) => permit.release()));
        for (const controller of controllers) controller.abort();
        await Promise.all(requests);
      }
      assert.equal(await state.testPermit(key, { limit: 1 }), true);
    });

    test("release is idempotent, and a stale release never frees a later holder", async () => {
      const state = await open();
      const key = freshKey();
      const first = await state.getPermit(key, { limit: 1 });
      await first.release();
      await first.release();
      const second = await state.getPermit(key, { limit: 1, timeout: 0 });
      await first.release();
      assert.equal(await state.testPermit(key, { limit: 1 }), false);
      assert.equal(second.signal.aborted, false);
      await second.release();
      assert.equal(await state.testPermit(key, { limit: 1 }), true);
    });

    test("withPermit releases on return and on throw; await using releases", async () => {
      const state = await open();
      const key = freshKey();
      const value = await state.withPermit(key, async (permit) => {
        assert.equal(permit.key, key);
        assert.equal(permit.limit, 1);
        assert.equal(await state.testPermit(key, { limit: 1 }), false);
        return 42;
      }, { limit: 1 });
      assert.equal(value, 42);
      const boom = new Error("boom");
      await assert.rejects(state.withPermit(key, () => Promise.reject(boom), { limit: 1 }), boom);
      assert.equal(await state.testPermit(key, { limit: 1 }), true);
      {
        await using permit = await state.getPermit(key, { limit: 1 });
        assert.equal(permit.limit, 1);
        assert.equal(await state.testPermit(key, { limit: 1 }), false);
      }
      assert.equal(await state.testPermit(key, { limit: 1 }), true);
    });

    test("rejects bad arguments like getLock does", async () => {
      const state = await open();
      const key = freshKey();
      const bad = (value: unknown) => value as never;
      for (const limit of [0, -1, 1.5, NaN, Infinity, 2 ** 53]) {
        await assert.rejects(state.getPermit(key, { limit }), RangeError, `limit ${limit}`);
        await assert.rejects(state.testPermit(key, { limit }), RangeError, `limit ${limit}`);
        await assert.rejects(state.withPermit(key, () => 1, { limit }), RangeError);
      }
      for (const limit of [undefined, "3", null, 3n]) {
        await assert.rejects(state.getPermit(key, bad({ limit })), TypeError);
        await assert.rejects(state.testPermit(key, bad({ limit })), TypeError);
      }
      await assert.rejects(state.getPermit(key, bad(undefined)), TypeError);
      await assert.rejects(state.testPermit(key, bad(undefined)), TypeError);
      await assert.rejects(state.getPermit(bad(1), { limit: 1 }), TypeError);
      await assert.rejects(state.testPermit(bad(null), { limit: 1 }), TypeError);
      for (const timeout of [-1, NaN, Infinity]) {
        await assert.rejects(state.getPermit(key, { limit: 1, timeout }), RangeError);
      }
      await assert.rejects(state.getPermit(key, { limit: 1, timeout: bad("5") }), TypeError);
      await assert.rejects(state.getPermit(key, { limit: 1, signal: bad({}) }), TypeError);
      await assert.rejects(state.withPermit(key, bad(undefined), { limit: 1 }), TypeError);
      const namesIt = (option: string) => (error: unknown) => {
        assert.ok(error instanceof TypeError, `not a TypeError: ${error}`);
        assert.match(error.message, new RegExp(`unknown option "${option}"`));
        return true;
      };
      await assert.rejects(state.getPermit(key, bad({ limit: 1, limt: 2 })), namesIt("limt"));
      await assert.rejects(
        state.getPermit(key, bad({ limit: 1, exclusive: true })),
        namesIt("exclusive"),
      );
      await assert.rejects(
        state.testPermit(key, bad({ limit: 1, timeout: 0 })),
        namesIt("timeout"),
      );
      // Nothing was taken by the bad calls.
      assert.equal(await state.testPermit(key, { limit: 1 }), true);
    });

    test("close fails waiters, aborts holders' signals and refuses later calls", async () => {
      const state = await open();
      const key = freshKey();
      const holder = await state.getPermit(key, { limit: 1 });
      const signal = holder.signal;
      const unwatched = await state.getPermit(freshKey(), { limit: 2 });
      const waiter = watch(state.getPermit(key, { limit: 1 }));
      await state.close();
      await waiter.done;
      assert.equal(waiter.outcome.status, "rejected");
      const failure = (waiter.outcome as { reason: unknown }).reason;
      assert.ok(failure instanceof LockFailed, String(failure));
      assert.equal(failure.reason, "closed");
      assert.equal(failure.limit, 1);
      assert.ok(signal.aborted);
      assert.ok(signal.reason instanceof LockLost);
      assert.equal(signal.reason.reason, "closed");
      assert.equal(signal.reason.key, key);
      assert.equal(signal.reason.limit, 1);
      assert.ok(unwatched.signal.reason instanceof LockLost, "a signal read after close");
      await holder.release();
      const closed = { name: "LockFailed", reason: "closed" };
      await assert.rejects(state.getPermit(key, { limit: 1 }), closed);
      await assert.rejects(state.testPermit(key, { limit: 1 }), closed);
      await assert.rejects(state.withPermit(key, () => 1, { limit: 1 }), closed);
    });

    test("keeps the limit under random interleavings", async () => {
      const state = await open();
      // One key whose holders agree on the limit, one whose holders disagree.
      const keys = [freshKey("agreed"), freshKey("mixed")];
      const monitor = new PermitMonitor();
      const next = random(4321);
      const worker = async (id: number) => {
        for (let i = 0; i < 20; i++) {
          const k = Math.floor(next() * keys.length);
          const limit = k === 0 ? 3 : 1 + Math.floor(next() * 4);
          const controller = new AbortController();
          const timeout = next() < 0.2 ? Math.floor(next() * 10) : undefined;
          const pending = state.getPermit(keys[k], { limit, timeout, signal: controller.signal });
          if (next() < 0.1) queueMicrotask(() => controller.abort(new Error(`abort ${id}`)));
          let permit: Permit;
          try {
            permit = await pending;
          } catch (error) {
            assert.ok(error instanceof LockFailed, String(error));
            continue;
          }
          monitor.enter(keys[k], limit);
          const hold = next();
          if (hold < 0.3) await macrotask();
          else if (hold < 0.7) await Promise.resolve();
          monitor.exit(keys[k], limit);
          await permit.release();
        }
      };
      await Promise.all(Array.from({ length: 20 }, (_, id) => worker(id)));
      assert.deepEqual(monitor.violations, []);
      assert.ok(monitor.entered > 150, `only ${monitor.entered} holds ran`);
      assert.ok(monitor.most >= 2, "never more than one holder at once: no concurrency tested");
      for (const key of keys) assert.equal(await state.testPermit(key, { limit: 1 }), true);
    });

    if (sharedBacking) {
      test("two states share the limit", async () => {
        const [a, b] = [await open(), await open()];
        const key = freshKey();
        const held = [
          await a.getPermit(key, { limit: 2 }),
          await a.getPermit(key, { limit: 2 }),
        ];
        assert.equal(await b.testPermit(key, { limit: 2 }), false);
        assert.equal(await b.testPermit(key, { limit: 3 }), true);
        await assert.rejects(b.getPermit(key, { limit: 2, timeout: 0 }), { reason: "busy" });
        const waiting = watch(b.getPermit(key, { limit: 2 }));
        await macrotask(20);
        assert.equal(waiting.outcome.status, "pending");
        await Promise.all(held.map((permit) => permit.release()));
        await waiting.done;
        const permit = valueOf(waiting);
        // b holds one of the two: a gets the other, and no third.
        assert.equal(await a.testPermit(key, { limit: 2 }), true);
        const other = await a.getPermit(key, { limit: 2, timeout: 0 });
        await assert.rejects(a.getPermit(key, { limit: 2, timeout: 0 }), { reason: "busy" });
        await Promise.all([permit.release(), other.release()]);
        assert.equal(await a.testPermit(key, { limit: 1 }), true);
      });

      test("keep the limit when two states contend", async () => {
        const states = [await open(), await open()];
        const key = freshKey();
        const monitor = new PermitMonitor();
        const next = random(77);
        const gate = deferred();
        const worker = async (state: StateABC) => {
          await gate.promise;
          for (let i = 0; i < 15; i++) {
            const permit = await state.getPermit(key, { limit: 2 });
            monitor.enter(key, 2);
            if (next() < 0.5) await macrotask();
            monitor.exit(key, 2);
            await permit.release();
          }
        };
        const work = [0, 1, 2, 3, 4, 5].map((i) => worker(states[i % 2]));
        gate.resolve();
        await Promise.all(work);
        assert.deepEqual(monitor.violations, []);
      });
    }
  });
}
