/**
 * The conformance suite: every rule of the lock contract (README, "The contract") as a
 * `node:test` test, run against a backend through a factory. Published as
 * `@momotor/shared-state/testing`; our own backends pass it the same way.
 */

import assert from "node:assert/strict";
import { after, afterEach, describe, it } from "node:test";
import { LockFailed, LockLost } from "../errors.ts";
import { checkFunction, checkOptions, optionNames, show } from "../internal/arguments.ts";
import type { Lock, StateABC } from "../state.ts";
import { deferred, InvariantMonitor, macrotask, random, watch } from "./helpers.ts";
import { multiLockTests } from "./multi_lock_tests.ts";
import { permitTests } from "./permit_tests.ts";

/** How {@link conformanceSuite} makes and checks states of the backend under test. */
export interface ConformanceOptions {
  /**
   * Makes a new, open state. Each test makes the states it needs; the suite closes them after
   * the test.
   */
  create(): StateABC | Promise<StateABC>;
  /**
   * Whether two states made by `create` share their locks (a database, a broker): adds tests in
   * which two states contend for one key. Default `false`.
   */
  sharedBacking?: boolean;
  /** Skips the whole suite (e.g. when no server answers): a reason, or `true`. Default `false`. */
  skip?: string | boolean;
  /**
   * Runs after each test, once the test's states are closed: assert here that the backend kept
   * nothing of finished requests (no map entry, no database lock).
   */
  assertClean?(): void | Promise<void>;
  /** Runs once after the suite: end what `create` needed (a server, an admin client). */
  teardown?(): void | Promise<void>;
  /**
   * Milliseconds after which a test fails rather than waits for ever on a backend that never
   * grants, releases or fails a request. Default 60,000.
   */
  timeout?: number;
}

const OPTION_NAMES = optionNames<ConformanceOptions>({
  create: true,
  sharedBacking: true,
  skip: true,
  assertClean: true,
  teardown: true,
  timeout: true,
});

/** Settles like `body`, or rejects once `ms` have passed; never leaves a timer behind. */
async function within(body: Promise<void>, ms: number, name: string): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(
        new Error(
          `"${name}" did not end within ${ms} ms: a request was never granted, released or failed`,
        ),
      );
    }, ms);
  });
  try {
    await Promise.race([body, limit]);
  } finally {
    clearTimeout(timer);
  }
}

const S = { exclusive: false } as const;
const X = { exclusive: true } as const;

/**
 * Registers the conformance suite for a backend with `node:test`: `deno test` and `node --test`
 * both run it. Every test makes fresh states with `options.create()` and fresh keys, so that
 * backends sharing a server can run it side by side. A backend passes when every test passes.
 *
 * @example A backend of your own (a file `my_state_test.ts`)
 * ```ts
 * import { LocalState } from "@momotor/shared-state";
 * import { conformanceSuite } from "@momotor/shared-state/testing";
 *
 * class MyState extends LocalState {} // your StateABC subclass
 *
 * conformanceSuite("MyState", { create: () => new MyState() });
 * ```
 *
 * @param name The backend's name, in the suite's name (`conformance: <name>`).
 * @param options The factory of states, and optional hooks.
 * @throws {TypeError} for a missing `create`, or an unknown or ill-typed option.
 */
export function conformanceSuite(name: string, options: ConformanceOptions): void {
  if (typeof name !== "string") throw new TypeError(`name must be a string, got ${show(name)}`);
  checkOptions(options, OPTION_NAMES, "conformanceSuite options");
  checkFunction(options.create, "create");
  const timeout = options.timeout ?? 60_000;
  if (typeof timeout !== "number" || !(timeout > 0)) {
    throw new TypeError(`timeout must be a number of milliseconds > 0, got ${show(timeout)}`);
  }
  /** `it`, failing a test that hangs instead of hanging the run. */
  const test = (title: string, body: () => Promise<void>) =>
    it(title, () => within(body(), timeout, title));
  const skip = options.skip === true ? "skipped" : options.skip || false;

  describe(`conformance: ${name}`, { skip }, () => {
    const opened: StateABC[] = [];
    let keyCounter = 0;
    /** A key no other test uses, so that tests and backends sharing a server stay apart. */
    const freshKey = (label = "key") => `conformance/${label}/${Date.now()}/${keyCounter++}`;
    async function open(): Promise<StateABC> {
      const state = await options.create();
      opened.push(state);
      return state;
    }

    afterEach(async () => {
      const closing = Promise.all(opened.splice(0).map((state) => state.close()));
      await within(closing.then(() => {}), timeout, "closing the test's states");
      await options.assertClean?.();
    });
    after(async () => {
      await options.teardown?.();
    });

    describe("modes", () => {
      test("lets many shared holders in together", async () => {
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

      test("lets one exclusive holder in alone", async () => {
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

      test("makes an exclusive request wait for every shared holder", async () => {
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

      test("is not reentrant: a second exclusive request on a held key waits", async () => {
        const state = await open();
        const key = freshKey();
        const lock = await state.getLock(key);
        await assert.rejects(state.getLock(key, { timeout: 30 }), LockFailed);
        const second = state.getLock(key);
        await lock.release();
        await (await second).release();
      });

      test("keeps keys apart, whatever characters they hold", async () => {
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
      test("serves requests first come, first served, shared runs together", async () => {
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

      test("starves neither writers nor readers under a steady stream", async () => {
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

      test("unblocks shared requests when the exclusive request ahead of them gives up", async () => {
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
      test("times out with LockFailed and leaves nothing behind", async () => {
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
        assert.equal(error.reason, "timeout");
        await holder.release();
        assert.equal(await state.testLock(key), true);
        const again = await state.getLock(key, { timeout: 0 });
        await again.release();
      });

      test("fails a busy timeout-0 request at once, its cause not repeating its message", async () => {
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
          assert.equal(error.reason, "busy");
          const cause = error.cause instanceof Error ? error.cause.message : error.cause;
          if (typeof cause === "string") {
            assert.ok(!error.message.includes(cause), `the cause repeats: ${cause}`);
          }
        }
        await holder.release();
      });

      test("tries once with timeout 0 and succeeds when free", async () => {
        const state = await open();
        const key = freshKey();
        const lock = await state.getLock(key, { timeout: 0 });
        await lock.release();
        const shared = await state.getLock(key, { ...S, timeout: 0 });
        await shared.release();
      });

      test("fails at once, with the reason as cause, for a signal aborted already", async () => {
        const state = await open();
        const key = freshKey();
        const reason = new Error("stop");
        const error = await state.getLock(key, { signal: AbortSignal.abort(reason) }).then(
          () => assert.fail("should have failed"),
          (error) => error,
        );
        assert.ok(error instanceof LockFailed);
        assert.equal(error.cause, reason);
        assert.equal(error.reason, "aborted");
        assert.equal(await state.testLock(key), true);
      });

      test("ends a wait when the signal aborts, with the reason as cause", async () => {
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
        assert.equal(error.reason, "aborted");
        await holder.release();
        assert.equal(await state.testLock(key), true);
      });

      test("keeps waiting past a timeout of 2^31 ms (setTimeout would overflow)", async () => {
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

      test("leaves no residue after random aborts and timeouts", async () => {
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
      test("is idempotent, and a stale release never frees a later holder", async () => {
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

      test("resolves once the lock is free, and leaves the signal alone", async () => {
        const state = await open();
        const key = freshKey();
        const lock = await state.getLock(key, S);
        assert.equal(lock.signal.aborted, false);
        await lock.release();
        assert.equal(await state.testLock(key), true);
        assert.equal(lock.signal.aborted, false);
      });

      test("works with await using", async () => {
        const state = await open();
        const key = freshKey();
        {
          await using lock = await state.getLock(key);
          assert.equal(lock.key, key);
          assert.equal(await state.testLock(key), false);
        }
        assert.equal(await state.testLock(key), true);
      });

      test("withLock releases on return and on throw", async () => {
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
      test("rejects ill-typed arguments with TypeError and bad timeouts with RangeError", async () => {
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

      test("rejects an unknown option with a TypeError naming it", async () => {
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
      test("fails waiters, aborts holders' signals and refuses later calls", async () => {
        const state = await open();
        const key = freshKey();
        const holder = await state.getLock(key);
        const watchedSignal = holder.signal;
        const unwatched = await state.getLock(freshKey(), S);
        const waiter = watch(state.getLock(key));
        await state.close();
        await waiter.done;
        assert.equal(waiter.outcome.status, "rejected");
        const failure = (waiter.outcome as { reason: unknown }).reason;
        assert.ok(failure instanceof LockFailed);
        assert.equal(failure.reason, "closed");
        assert.equal(watchedSignal.aborted, true);
        assert.ok(watchedSignal.reason instanceof LockLost);
        assert.equal(watchedSignal.reason.key, key);
        assert.equal(watchedSignal.reason.reason, "closed");
        assert.ok(unwatched.signal.reason instanceof LockLost, "a signal read after close");
        await holder.release();
        await state.close();
        const closedReason = { name: "LockFailed", reason: "closed" };
        await assert.rejects(state.getLock(key), closedReason);
        await assert.rejects(state.testLock(key), closedReason);
        await assert.rejects(state.withLock(key, () => 1), closedReason);
      });

      test("closes through await using", async () => {
        let closed: StateABC | undefined;
        {
          await using state = await open();
          closed = state;
        }
        await assert.rejects(closed.getLock("k"), LockFailed);
      });
    });

    describe("fencing tokens", () => {
      test("grow from holder to holder, and repeat on one lock", async () => {
        const state = await open();
        const key = freshKey();
        let previous = -1n;
        for (const exclusive of [true, false, true, true, false]) {
          const lock = await state.getLock(key, { exclusive });
          const token = await lock.fencingToken();
          assert.equal(typeof token, "bigint");
          assert.ok(token > previous, `token ${token} after ${previous}`);
          assert.equal(await lock.fencingToken(), token, "a second call gave another token");
          await lock.release();
          assert.equal(await lock.fencingToken(), token, "the token changed with the release");
          previous = token;
        }
      });

      test("grow across a hand-over to a waiter, and after concurrent shared holders", async () => {
        const state = await open();
        const key = freshKey();
        const first = await state.getLock(key);
        const next = state.getLock(key);
        // Asked and released at once: the release waits for the token, never the other way.
        const firstToken = first.fencingToken();
        await first.release();
        const second = await next;
        const secondToken = await second.fencingToken();
        assert.ok(secondToken > await firstToken, `${secondToken} after ${await firstToken}`);
        await second.release();
        const readers = await Promise.all([state.getLock(key, S), state.getLock(key, S)]);
        const readerTokens = await Promise.all(readers.map((lock) => lock.fencingToken()));
        assert.notEqual(readerTokens[0], readerTokens[1], "two holders share a token");
        for (const token of readerTokens) assert.ok(token > secondToken);
        await Promise.all(readers.map((lock) => lock.release()));
        const writer = await state.getLock(key);
        const writerToken = await writer.fencingToken();
        for (const token of readerTokens) assert.ok(writerToken > token);
        await writer.release();
      });

      test("are refused to a lock released or lost before it asked", async () => {
        const state = await open();
        const key = freshKey();
        const released = await state.getLock(key);
        await released.release();
        await assert.rejects(released.fencingToken(), Error);
        const asked = await state.getLock(key);
        const token = await asked.fencingToken();
        const unasked = await state.getLock(freshKey(), S);
        await state.close();
        assert.equal(await asked.fencingToken(), token, "a token given stays the same");
        await assert.rejects(unasked.fencingToken(), { name: "LockLost", reason: "closed" });
      });

      if (options.sharedBacking) {
        test("grow across two states on one backend", async () => {
          const states = [await open(), await open()];
          const key = freshKey();
          let previous = -1n;
          for (let i = 0; i < 6; i++) {
            const lock = await states[i % 2].getLock(key, { exclusive: i % 3 !== 2 });
            const token = await lock.fencingToken();
            assert.ok(token > previous, `state ${i % 2}: token ${token} after ${previous}`);
            previous = token;
            await lock.release();
          }
        });
      }
    });

    describe("inspect", () => {
      /** Checks a `since` the backend gave: a Date between the test's start and now. */
      const plausible = (since: Date | undefined, start: number) => {
        if (since === undefined) return;
        assert.ok(since instanceof Date, `since is not a Date: ${since}`);
        const time = since.getTime();
        assert.ok(
          time >= start - 1000 && time <= Date.now() + 1000,
          `since ${since.toISOString()}`,
        );
      };
      /** Nobody holds or awaits `key` (a backend may add fields of its own to the answer). */
      const free = async (state: StateABC, key: string) => {
        const { key: named, holders, waiters } = await state.inspect(key);
        assert.deepEqual({ key: named, holders, waiters }, { key, holders: [], waiters: [] });
      };

      test("lists the holders and the waiters of a key, in order", async () => {
        const start = Date.now();
        const state = await open();
        const key = freshKey();
        await free(state, key);
        const holder = await state.getLock(key);
        const reader = state.getLock(key, { ...S, timeout: 60_000 });
        const writer = state.getLock(key, { ...X, timeout: 60_000 });
        const info = await state.inspect(key);
        assert.equal(info.key, key);
        assert.deepEqual(info.holders.map((h) => h.exclusive), [true]);
        assert.deepEqual(info.waiters.map((w) => w.exclusive), [false, true]);
        for (const entry of [...info.holders, ...info.waiters]) {
          plausible(entry.since, start);
          if (entry.owner !== undefined) assert.equal(typeof entry.owner, "string");
        }
        await holder.release();
        const shared = await reader;
        const later = await state.inspect(key);
        assert.deepEqual(later.holders.map((h) => h.exclusive), [false]);
        assert.deepEqual(later.waiters.map((w) => w.exclusive), [true]);
        await shared.release();
        await (await writer).release();
        await free(state, key);
      });

      test("counts shared holders, and refuses a bad key or a closed state", async () => {
        const state = await open();
        const key = freshKey();
        const readers = await Promise.all([1, 2, 3].map(() => state.getLock(key, S)));
        const info = await state.inspect(key);
        assert.deepEqual(info.holders.map((h) => h.exclusive), [false, false, false]);
        assert.deepEqual(info.waiters, []);
        await Promise.all(readers.map((lock) => lock.release()));
        await assert.rejects(state.inspect(42 as never), TypeError);
        await state.close();
        await assert.rejects(state.inspect(key), { name: "LockFailed", reason: "closed" });
      });

      if (options.sharedBacking) {
        test("sees the holders and the waiters of another state", async () => {
          const [a, b] = [await open(), await open()];
          const key = freshKey();
          const holder = await a.getLock(key);
          const waiting = watch(b.getLock(key, S));
          // The request travels to the backend on its own time: look until it is seen there.
          let info = await a.inspect(key);
          for (let i = 0; i < 500 && info.waiters.length === 0; i++) {
            await macrotask(10);
            info = await a.inspect(key);
          }
          assert.deepEqual(info.holders.map((h) => h.exclusive), [true]);
          assert.deepEqual(info.waiters.map((w) => w.exclusive), [false]);
          const fromB = await b.inspect(key);
          assert.deepEqual(fromB.holders.map((h) => h.exclusive), [true]);
          assert.deepEqual(fromB.waiters.map((w) => w.exclusive), [false]);
          await holder.release();
          await waiting.done;
          const lock = (waiting.outcome as { value: Lock }).value;
          assert.deepEqual((await a.inspect(key)).holders.map((h) => h.exclusive), [false]);
          await lock.release();
        });
      }
    });

    describe("stress", () => {
      test("keeps the invariant under random interleavings", async () => {
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

    // Issue 13: counting semaphores and multi-key locks.
    const context = { test, open, freshKey, sharedBacking: options.sharedBacking === true };
    permitTests(context);
    multiLockTests(context);

    if (options.sharedBacking) {
      describe("two states on one backend", () => {
        test("exclude each other", async () => {
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

        test("hand a key back and forth under the invariant", async () => {
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
