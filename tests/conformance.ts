/**
 * The conformance suite: every rule of DESIGN.md's Semantics section as a test, run against every
 * backend through a factory (the pattern of verrou's `registerStoreTestSuite`).
 */

import assert from "node:assert/strict";
import { after, afterEach, describe, it } from "node:test";
import { type Lock, LockFailed, LockLost, type StateABC } from "../mod.ts";
import { deferred, InvariantMonitor, macrotask, random, watch } from "./helpers.ts";

/** A backend as the suite sees it. */
export interface BackendUnderTest {
  /** Shown in test names. */
  name: string;
  /** A new, open state. States made by one backend share their locks when `sharedBacking`. */
  create(): StateABC | Promise<StateABC>;
  /** A reason to skip the whole suite (e.g. no server), or false. */
  skip?: string | false;
  /** Whether two states from `create()` see each other's locks (a database, a broker). */
  sharedBacking?: boolean;
  /** Asserts that the backend keeps nothing of finished requests (no map entry, no DB lock). */
  assertClean?(): Promise<void>;
  /** Called once after the suite. */
  teardown?(): Promise<void>;
}

const S = { exclusive: false } as const;
const X = { exclusive: true } as const;

/** Registers the suite for `backend` with node:test. */
export function conformanceSuite(backend: BackendUnderTest): void {
  describe(`conformance: ${backend.name}`, { skip: backend.skip || false }, () => {
    const opened: StateABC[] = [];
    let keyCounter = 0;
    /** A key no other test uses, so that tests and backends sharing a server stay apart. */
    const freshKey = (label = "key") => `conformance/${label}/${Date.now()}/${keyCounter++}`;
    async function open(): Promise<StateABC> {
      const state = await backend.create();
      opened.push(state);
      return state;
    }

    afterEach(async () => {
      await Promise.all(opened.splice(0).map((state) => state.close()));
      await backend.assertClean?.();
    });
    after(async () => {
      await backend.teardown?.();
    });

    describe("modes", () => {
      it("lets many shared holders in together", async () => {
        const state = await open();
        const key = freshKey();
        const locks = await Promise.all([1, 2, 3].map(() => state.getLock(key, S)));
        assert.deepEqual(locks.map((lock) => [lock.key, lock.exclusive]), [
          [key, false],
          [key, false],
          [key, false],
        ]);
        assert.equal(await state.testLock(key, S), true);
        assert.equal(await state.testLock(key, X), false);
        await Promise.all(locks.map((lock) => lock.release()));
        assert.equal(await state.testLock(key, X), true);
      });

      it("lets one exclusive holder in alone", async () => {
        const state = await open();
        const key = freshKey();
        const lock = await state.getLock(key);
        assert.equal(lock.exclusive, true, "exclusive is the default");
        assert.equal(await state.testLock(key, X), false);
        assert.equal(await state.testLock(key, S), false);
        await assert.rejects(state.getLock(key, { ...X, timeout: 0 }), LockFailed);
        await assert.rejects(state.getLock(key, { ...S, timeout: 0 }), LockFailed);
        await lock.release();
        assert.equal(await state.testLock(key, X), true);
        assert.equal(await state.testLock(key), true);
      });

      it("makes an exclusive request wait for every shared holder", async () => {
        const state = await open();
        const key = freshKey();
        const readers = [await state.getLock(key, S), await state.getLock(key, S)];
        const writer = watch(state.getLock(key, X));
        await readers[0].release();
        await macrotask();
        assert.equal(writer.outcome.status, "pending");
        await readers[1].release();
        await writer.done;
        assert.equal(writer.outcome.status, "fulfilled");
        await (writer.outcome as { value: Lock }).value.release();
      });

      it("is not reentrant: a second exclusive request on a held key waits", async () => {
        const state = await open();
        const key = freshKey();
        const lock = await state.getLock(key);
        await assert.rejects(state.getLock(key, { timeout: 30 }), LockFailed);
        const second = state.getLock(key);
        await lock.release();
        await (await second).release();
      });

      it("keeps keys apart, whatever characters they hold", async () => {
        const state = await open();
        const base = freshKey();
        const keys = [
          "",
          base,
          `${base}\0`,
          `${base}\0x`,
          base.toUpperCase(),
          `${base}/ünïcødé/日本語/🔒`,
          `${base}${"long".repeat(16384)}`,
        ];
        const locks = await Promise.all(keys.map((key) => state.getLock(key, { timeout: 0 })));
        for (const [i, key] of keys.entries()) {
          assert.equal(locks[i].key, key);
          assert.equal(await state.testLock(key), false);
        }
        assert.equal(await state.testLock(`${base}\0y`), true);
        await Promise.all(locks.map((lock) => lock.release()));
        for (const key of keys) assert.equal(await state.testLock(key), true);
      });
    });

    describe("fairness", () => {
      it("serves requests first come, first served, shared runs together", async () => {
        const state = await open();
        const key = freshKey();
        const order: string[] = [];
        const first = await state.getLock(key, X);
        const request = (name: string, exclusive: boolean) =>
          state.getLock(key, { exclusive }).then((lock) => {
            order.push(name);
            return lock;
          });
        const s1 = request("s1", false);
        const s2 = request("s2", false);
        const x3 = request("x3", true);
        const s4 = request("s4", false);
        await first.release();
        const readers = await Promise.all([s1, s2]);
        // x3 waits, so a newcomer in shared mode must queue behind it.
        await assert.rejects(state.getLock(key, { ...S, timeout: 0 }), LockFailed);
        assert.equal(await state.testLock(key, S), false);
        await Promise.all(readers.map((lock) => lock.release()));
        const writer = await x3;
        assert.deepEqual(order, ["s1", "s2", "x3"]);
        await writer.release();
        await (await s4).release();
        assert.deepEqual(order, ["s1", "s2", "x3", "s4"]);
      });

      it("starves neither writers nor readers under a steady stream", async () => {
        const state = await open();
        const key = freshKey();
        let readersActive = 0;
        let writerDone = false;
        const reader = async () => {
          const lock = await state.getLock(key, S);
          readersActive++;
          await macrotask();
          readersActive--;
          await lock.release();
        };
        const stream: Promise<void>[] = [reader(), reader()];
        const writer = state.getLock(key, X).then(async (lock) => {
          assert.equal(readersActive, 0);
          writerDone = true;
          await lock.release();
        });
        // Readers keep arriving; the writer must still get its turn, and readers after it too.
        for (let i = 0; i < 20; i++) stream.push(reader());
        await writer;
        await Promise.all(stream);
        assert.equal(writerDone, true);
      });

      it("unblocks shared requests when the exclusive request ahead of them gives up", async () => {
        const state = await open();
        const key = freshKey();
        const reader = await state.getLock(key, S);
        const controller = new AbortController();
        const writer = watch(state.getLock(key, { ...X, signal: controller.signal }));
        const lateReader = state.getLock(key, S);
        controller.abort(new Error("changed my mind"));
        await writer.done;
        assert.equal(writer.outcome.status, "rejected");
        const second = await lateReader;
        await second.release();
        await reader.release();
      });
    });

    describe("timeout and abort", () => {
      it("times out with LockFailed and leaves nothing behind", async () => {
        const state = await open();
        const key = freshKey();
        const holder = await state.getLock(key);
        const error = await state.getLock(key, { exclusive: false, timeout: 20 }).then(
          () => assert.fail("should have timed out"),
          (error) => error,
        );
        assert.ok(error instanceof LockFailed);
        assert.equal(error.key, key);
        assert.equal(error.exclusive, false);
        assert.equal(error.name, "LockFailed");
        await holder.release();
        assert.equal(await state.testLock(key), true);
        const again = await state.getLock(key, { timeout: 0 });
        await again.release();
      });

      it("fails a busy timeout-0 request at once, its cause not repeating its message", async () => {
        const state = await open();
        const key = freshKey();
        const holder = await state.getLock(key);
        for (const exclusive of [true, false]) {
          const error = await state.getLock(key, { exclusive, timeout: 0 }).then(
            () => assert.fail("a busy lock was granted"),
            (error) => error,
          );
          assert.ok(error instanceof LockFailed, String(error));
          assert.equal(error.key, key);
          assert.equal(error.exclusive, exclusive);
          const cause = error.cause instanceof Error ? error.cause.message : error.cause;
          if (typeof cause === "string") {
            assert.ok(!error.message.includes(cause), `the cause repeats: ${cause}`);
          }
        }
        await holder.release();
      });

      it("tries once with timeout 0 and succeeds when free", async () => {
        const state = await open();
        const key = freshKey();
        const lock = await state.getLock(key, { timeout: 0 });
        await lock.release();
        const shared = await state.getLock(key, { ...S, timeout: 0 });
        await shared.release();
      });

      it("fails at once, with the reason as cause, for a signal aborted already", async () => {
        const state = await open();
        const key = freshKey();
        const reason = new Error("stop");
        const error = await state.getLock(key, { signal: AbortSignal.abort(reason) }).then(
          () => assert.fail("should have failed"),
          (error) => error,
        );
        assert.ok(error instanceof LockFailed);
        assert.equal(error.cause, reason);
        assert.equal(await state.testLock(key), true);
      });

      it("ends a wait when the signal aborts, with the reason as cause", async () => {
        const state = await open();
        const key = freshKey();
        const holder = await state.getLock(key);
        const controller = new AbortController();
        const waiting = state.getLock(key, { signal: controller.signal });
        const reason = new Error("shutting down");
        controller.abort(reason);
        const error = await waiting.then(() => assert.fail("should have failed"), (e) => e);
        assert.ok(error instanceof LockFailed);
        assert.equal(error.cause, reason);
        await holder.release();
        assert.equal(await state.testLock(key), true);
      });

      it("keeps waiting past a timeout of 2^31 ms (setTimeout would overflow)", async () => {
        const state = await open();
        const key = freshKey();
        const holder = await state.getLock(key);
        const waiter = watch(state.getLock(key, { timeout: 2 ** 31 + 5_000 }));
        await macrotask(20); // an overflowed timer would fire at once
        assert.equal(waiter.outcome.status, "pending");
        await holder.release();
        await waiter.done;
        assert.equal(waiter.outcome.status, "fulfilled");
        await (waiter.outcome as { value: Lock }).value.release();
      });

      it("leaves no residue after random aborts and timeouts", async () => {
        const state = await open();
        const keys = [freshKey("a"), freshKey("b")];
        const next = random(7);
        for (let round = 0; round < 20; round++) {
          const holders = await Promise.all(keys.map((key) => state.getLock(key, S)));
          const requests: Promise<unknown>[] = [];
          const controllers: AbortController[] = [];
          for (let i = 0; i < 10; i++) {
            const controller = new AbortController();
            controllers.push(controller);
            const key = keys[Math.floor(next() * keys.length)];
            const exclusive = next() < 0.5;
            const timeout = next() < 0.5 ? Math.floor(next() * 5) : undefined;
            requests.push(
              state.getLock(key, { exclusive, timeout, signal: controller.signal }).then(
                (lock) => lock.release(),
                (error) => assert.ok(error instanceof LockFailed, String(error)),
              ),
            );
          }
          await macrotask(Math.floor(next() * 3));
          for (const controller of controllers) if (next() < 0.7) controller.abort();
          await Promise.all(holders.map((lock) => lock.release()));
          for (const controller of controllers) controller.abort();
          await Promise.all(requests);
        }
        for (const key of keys) assert.equal(await state.testLock(key), true);
      });
    });

    describe("release", () => {
      it("is idempotent, and a stale release never frees a later holder", async () => {
        const state = await open();
        const key = freshKey();
        const first = await state.getLock(key);
        await first.release();
        await first.release();
        const second = await state.getLock(key, { timeout: 0 });
        await first.release();
        assert.equal(await state.testLock(key), false, "the stale release freed the next holder");
        await second.release();
        assert.equal(await state.testLock(key), true);
      });

      it("resolves once the lock is free, and leaves the signal alone", async () => {
        const state = await open();
        const key = freshKey();
        const lock = await state.getLock(key, S);
        assert.equal(lock.signal.aborted, false);
        await lock.release();
        assert.equal(await state.testLock(key), true);
        assert.equal(lock.signal.aborted, false);
      });

      it("works with await using", async () => {
        const state = await open();
        const key = freshKey();
        {
          await using lock = await state.getLock(key);
          assert.equal(lock.key, key);
          assert.equal(await state.testLock(key), false);
        }
        assert.equal(await state.testLock(key), true);
      });

      it("withLock releases on return and on throw", async () => {
        const state = await open();
        const key = freshKey();
        const value = await state.withLock(key, async (lock) => {
          assert.equal(lock.key, key);
          assert.equal(await state.testLock(key), false);
          return 42;
        });
        assert.equal(value, 42);
        assert.equal(await state.testLock(key), true);
        const boom = new Error("boom");
        await assert.rejects(state.withLock(key, () => Promise.reject(boom), S), boom);
        await assert.rejects(
          state.withLock(key, () => {
            throw boom;
          }),
          boom,
        );
        assert.equal(await state.testLock(key), true);
      });
    });

    describe("bad input", () => {
      it("rejects ill-typed arguments with TypeError and bad timeouts with RangeError", async () => {
        const state = await open();
        const bad = (value: unknown) => value as never;
        for (const key of [undefined, null, 1, {}, Symbol("k"), ["a"]]) {
          await assert.rejects(state.getLock(bad(key)), TypeError);
          await assert.rejects(state.testLock(bad(key)), TypeError);
          await assert.rejects(state.withLock(bad(key), () => 1), TypeError);
        }
        for (const exclusive of [1, "yes", null]) {
          await assert.rejects(state.getLock("k", { exclusive: bad(exclusive) }), TypeError);
          await assert.rejects(state.testLock("k", { exclusive: bad(exclusive) }), TypeError);
        }
        for (const timeout of [-1, NaN, Infinity, -Infinity]) {
          await assert.rejects(state.getLock("k", { timeout }), RangeError);
        }
        for (const timeout of ["10", null, 10n]) {
          await assert.rejects(state.getLock("k", { timeout: bad(timeout) }), TypeError);
        }
        await assert.rejects(state.getLock("k", { signal: bad({ aborted: false }) }), TypeError);
        await assert.rejects(state.getLock("k", bad(null)), TypeError);
        await assert.rejects(state.getLock("k", bad("exclusive")), TypeError);
        await assert.rejects(state.withLock("k", bad(undefined)), TypeError);
        // Nothing was taken or lost by the bad calls.
        assert.equal(await state.testLock("k"), true);
        await (await state.getLock("k", { timeout: 0 })).release();
      });

      it("rejects an unknown option with a TypeError naming it", async () => {
        const state = await open();
        const key = freshKey();
        const bad = (value: unknown) => value as never;
        const namesIt = (option: string) => (error: unknown) => {
          assert.ok(error instanceof TypeError, `not a TypeError: ${error}`);
          assert.match(error.message, new RegExp(`unknown option "${option}"`));
          return true;
        };
        const calls: [string, () => Promise<unknown>][] = [
          ["exlusive", () => state.getLock(key, bad({ exlusive: false }))],
          ["timeOut", () => state.getLock(key, bad({ exclusive: false, timeOut: 10 }))],
          ["nameSpace", () => state.getLock(key, bad({ nameSpace: "app" }))],
          ["exlusive", () => state.testLock(key, bad({ exlusive: false }))],
          ["timeout", () => state.testLock(key, bad({ timeout: 0 }))],
          [
            "signl",
            () => state.withLock(key, () => 1, bad({ signl: new AbortController().signal })),
          ],
        ];
        for (const [option, call] of calls) await assert.rejects(call(), namesIt(option));
        // A misspelled `exclusive` never became an exclusive lock that is still held.
        assert.equal(await state.testLock(key), true);
        // Known options left undefined are not unknown.
        const lock = await state.getLock(key, {
          exclusive: undefined,
          timeout: undefined,
          signal: undefined,
        });
        await lock.release();
        assert.equal(await state.testLock(key, { exclusive: undefined }), true);
      });
    });

    describe("close", () => {
      it("fails waiters, aborts holders' signals and refuses later calls", async () => {
        const state = await open();
        const key = freshKey();
        const holder = await state.getLock(key);
        const watchedSignal = holder.signal;
        const unwatched = await state.getLock(freshKey(), S);
        const waiter = watch(state.getLock(key));
        await state.close();
        await waiter.done;
        assert.equal(waiter.outcome.status, "rejected");
        assert.ok((waiter.outcome as { reason: unknown }).reason instanceof LockFailed);
        assert.equal(watchedSignal.aborted, true);
        assert.ok(watchedSignal.reason instanceof LockLost);
        assert.equal(watchedSignal.reason.key, key);
        assert.ok(unwatched.signal.reason instanceof LockLost, "a signal read after close");
        await holder.release();
        await state.close();
        await assert.rejects(state.getLock(key), LockFailed);
        await assert.rejects(state.testLock(key), LockFailed);
        await assert.rejects(state.withLock(key, () => 1), LockFailed);
      });

      it("closes through await using", async () => {
        let closed: StateABC | undefined;
        {
          await using state = await open();
          closed = state;
        }
        await assert.rejects(closed.getLock("k"), LockFailed);
      });
    });

    describe("stress", () => {
      it("keeps the invariant under random interleavings", async () => {
        const state = await open();
        const keys = [freshKey("a"), freshKey("b"), freshKey("c")];
        const monitor = new InvariantMonitor();
        const next = random(1234);
        const worker = async (id: number) => {
          for (let i = 0; i < 25; i++) {
            const key = keys[Math.floor(next() * keys.length)];
            const exclusive = next() < 0.3;
            const controller = new AbortController();
            const abortSoon = next() < 0.1;
            const timeout = next() < 0.2 ? Math.floor(next() * 10) : undefined;
            const pending = state.getLock(key, { exclusive, timeout, signal: controller.signal });
            if (abortSoon) queueMicrotask(() => controller.abort(new Error(`abort ${id}`)));
            let lock: Lock;
            try {
              lock = await pending;
            } catch (error) {
              assert.ok(error instanceof LockFailed, String(error));
              continue;
            }
            monitor.enter(key, exclusive);
            const hold = next();
            if (hold < 0.3) await macrotask();
            else if (hold < 0.7) await Promise.resolve();
            monitor.exit(key, exclusive);
            await lock.release();
          }
        };
        await Promise.all(Array.from({ length: 30 }, (_, id) => worker(id)));
        assert.deepEqual(monitor.violations, []);
        assert.ok(monitor.entered > 300, `only ${monitor.entered} critical sections ran`);
        for (const key of keys) assert.equal(await state.testLock(key), true);
      });
    });

    if (backend.sharedBacking) {
      describe("two states on one backend", () => {
        it("exclude each other", async () => {
          const [a, b] = [await open(), await open()];
          const key = freshKey();
          const lock = await a.getLock(key);
          assert.equal(await b.testLock(key), false);
          assert.equal(await b.testLock(key, S), false);
          await assert.rejects(b.getLock(key, { timeout: 0 }), LockFailed);
          const waiting = b.getLock(key, S);
          await lock.release();
          const shared = await waiting;
          const alsoShared = await a.getLock(key, { ...S, timeout: 0 });
          assert.equal(await a.testLock(key), false);
          await shared.release();
          await alsoShared.release();
          assert.equal(await b.testLock(key), true);
        });

        it("hand a key back and forth under the invariant", async () => {
          const states = [await open(), await open()];
          const key = freshKey();
          const monitor = new InvariantMonitor();
          const next = random(99);
          const gate = deferred();
          const worker = async (state: StateABC) => {
            await gate.promise;
            for (let i = 0; i < 20; i++) {
              const exclusive = next() < 0.5;
              const lock = await state.getLock(key, { exclusive });
              monitor.enter(key, exclusive);
              await macrotask();
              monitor.exit(key, exclusive);
              await lock.release();
            }
          };
          const work = [0, 1, 2, 3].map((i) => worker(states[i % 2]));
          gate.resolve();
          await Promise.all(work);
          assert.deepEqual(monitor.violations, []);
        });
      });
    }
  });
}
