/**
 * Lost connections: backends of a PostgresState are terminated from outside (as an operator, a
 * restart or a failover would) while locks are held and while waits are pending, on the main
 * session and on wait sessions, in both modes. Held locks must be aborted with LockLost, pending
 * requests fail with LockFailed, nothing is re-acquired behind the caller's back, and later
 * requests work.
 */

import assert from "node:assert/strict";
import net from "node:net";
import { after, describe, it } from "node:test";
import { type Lock, LockFailed, LockLost } from "../mod.ts";
import type { PostgresClientOptions, PostgresState } from "../backends/postgres.ts";
import { macrotask, random, watch } from "../testing/helpers.ts";
import {
  aborted,
  adminClient,
  advisoryLocksOf,
  eventually,
  lockPids,
  postgresSkip,
  sessionsOf,
  terminate,
  testState,
  waitingInPostgres,
  within,
} from "./postgres_env.ts";

const skip = await postgresSkip();

describe("PostgresState when its connections die", { skip }, () => {
  const admin = skip ? undefined : adminClient();
  after(() => admin?.end());

  for (const mode of ["session", "transaction"] as const) {
    const app = (what: string) => `ss-test-lost-${mode}-${what}`;
    const namespace = `lost-${mode}-${Date.now()}`;

    describe(`${mode} mode`, () => {
      it("aborts every lock held on a killed connection with LockLost; new requests work", async () => {
        const name = app("held");
        const state = testState(name, { namespace, mode, maxConnections: 20 });
        const observer = testState(app("observer"), { namespace, mode });
        try {
          const count = mode === "session" ? 200 : 8;
          const keys = Array.from({ length: count }, (_, i) => `held/${i}`);
          const locks = await Promise.all(
            keys.map((key, i) => state.getLock(key, { exclusive: i % 3 !== 0 })),
          );
          const holders = await lockPids(admin!, name, true);
          assert.equal(holders.length, mode === "session" ? 1 : count);
          await terminate(admin!, holders);

          const reasons = await within(
            Promise.all(locks.map((lock) => aborted(lock.signal))),
            "every held lock's signal aborted",
          );
          reasons.forEach((reason, i) => {
            assert.ok(reason instanceof LockLost, `lock ${i}: ${String(reason)}`);
            assert.equal(reason.reason, "disconnected");
            assert.equal(reason.key, keys[i]);
            assert.equal(reason.exclusive, locks[i].exclusive);
          });
          // Releasing a lost lock is harmless.
          await Promise.all(locks.map((lock) => lock.release()));
          assert.equal(state.size, 0);
          // Nothing was taken again behind our back.
          await eventually(
            async () => (await advisoryLocksOf(admin!, name)).length === 0,
            "the killed locks gone from pg_locks",
          );
          assert.deepEqual(await advisoryLocksOf(admin!, name), []);

          // The state keeps working: the same keys again, really held in the database.
          const again = await Promise.all(keys.map((key) => state.getLock(key, { timeout: 5000 })));
          assert.equal(await observer.testLock(keys[0], { exclusive: false }), false);
          assert.equal(await observer.testLock(keys[count - 1]), false);
          await Promise.all(again.map((lock) => lock.release()));
          assert.equal(await observer.testLock(keys[0]), true);
          assert.ok(again.every((lock) => !lock.signal.aborted));
        } finally {
          await state.close();
          await observer.close();
        }
        assert.deepEqual(await advisoryLocksOf(admin!, name), []);
      });

      it("fails a request at once when a write fails with no event after it, then connects again", async () => {
        // What Cloudflare Workers does to a socket that another request opened: the write's
        // callback gets an error, the socket is destroyed, and no error or close event follows.
        let broken = false;
        const socket = ({ host, port }: { host: string[]; port: number[] }) => {
          const made = net.connect({ host: host[0], port: port[0] });
          const write = made.write.bind(made) as (...args: unknown[]) => boolean;
          made.write = ((...args: unknown[]) => {
            if (!broken) return write(...args);
            const callback = args.find((arg) => typeof arg === "function") as
              | ((error: Error) => void)
              | undefined;
            made.emit = () => false;
            made.destroy();
            queueMicrotask(() => callback?.(new Error("Cannot perform I/O on behalf of another")));
            return false;
          }) as typeof made.write;
          return made;
        };
        const name = app("silent-write");
        // The heartbeat would notice after two of its intervals: make it too slow to be the cause.
        const state = testState(name, {
          namespace,
          mode,
          heartbeatInterval: 60_000,
          clientOptions: { socket } as unknown as PostgresClientOptions,
        });
        try {
          await (await state.getLock("silent/1")).release();
          broken = true;
          const failed = watch(state.getLock("silent/1"));
          await within(failed.done, "the request on the broken socket failing");
          assert.equal(failed.outcome.status, "rejected");
          const reason = (failed.outcome as { reason: unknown }).reason;
          assert.ok(reason instanceof LockFailed, String(reason));
          assert.equal(reason.reason, "unreachable");
          broken = false;
          const lock = await within(state.getLock("silent/1"), "a request on a new connection");
          assert.equal(await state.testLock("silent/1"), false);
          await lock.release();
        } finally {
          await state.close();
        }
        assert.deepEqual(await advisoryLocksOf(admin!, name), []);
      });

      it("fails a wait whose connection is killed with LockFailed; the next request waits anew", async () => {
        const name = app("wait");
        const holder = testState(app("holder"), { namespace, mode });
        const waiter = testState(name, { namespace, mode });
        try {
          const key = "wait/1";
          const held = await holder.getLock(key);
          const first = watch(waiter.getLock(key));
          const second = watch(waiter.getLock(key, { exclusive: false }));
          await waitingInPostgres(admin!, name, 1, "the first request waiting in PostgreSQL");
          const [killed] = await lockPids(admin!, name, false);
          await terminate(admin!, [killed]);

          await within(first.done, "the killed wait failing");
          assert.equal(first.outcome.status, "rejected");
          const reason = (first.outcome as { reason: unknown }).reason;
          assert.ok(reason instanceof LockFailed, String(reason));
          assert.equal(reason.key, key);
          assert.equal(reason.reason, "unreachable");

          // The request queued behind it now waits on another connection, and gets the lock.
          await eventually(async () => {
            const pids = await lockPids(admin!, name, false);
            return pids.length === 1 && pids[0] !== killed;
          }, "the second request waiting on a new connection");
          assert.equal(second.outcome.status, "pending");
          await held.release();
          await within(second.done, "the second request granted");
          assert.equal(second.outcome.status, "fulfilled");
          const lock = (second.outcome as { value: Lock }).value;
          assert.equal(await holder.testLock(key), false);
          await lock.release();
          assert.equal(await holder.testLock(key), true);
        } finally {
          await holder.close();
          await waiter.close();
        }
        assert.deepEqual(await advisoryLocksOf(admin!, name), []);
      });

      it("loses what the other connections held while a wait goes on; the wait still ends cleanly", async () => {
        const name = app("others");
        const holder = testState(app("holder2"), { namespace, mode });
        const state = testState(name, { namespace, mode, maxConnections: 30 });
        try {
          const key = "others/contended";
          const held = await holder.getLock(key);
          const owned = await Promise.all(
            Array.from({ length: 20 }, (_, i) => state.getLock(`others/${i}`)),
          );
          const controller = new AbortController();
          const waiting = watch(state.getLock(key, { signal: controller.signal }));
          await waitingInPostgres(admin!, name, 1, "the request waiting in PostgreSQL");
          const [waitPid] = await lockPids(admin!, name, false);
          // Every connection but the waiting one: the main session (which also sends cancels),
          // the sessions that hold locks, idle spares.
          const others = (await sessionsOf(admin!, name)).filter((pid) => pid !== waitPid);
          assert.ok(others.length >= 1);
          await terminate(admin!, others);

          const reasons = await within(
            Promise.all(owned.map((lock) => aborted(lock.signal))),
            "the held locks lost",
          );
          assert.ok(reasons.every((reason) => reason instanceof LockLost));
          assert.equal(waiting.outcome.status, "pending");

          // Aborting the wait must end it in the database, through a new main session.
          controller.abort(new Error("enough"));
          await within(waiting.done, "the aborted wait failing");
          assert.equal(waiting.outcome.status, "rejected");
          const reason = (waiting.outcome as { reason: unknown }).reason as LockFailed;
          assert.ok(reason instanceof LockFailed);
          assert.equal(reason.reason, "aborted");
          assert.equal((reason.cause as Error).message, "enough");
          await eventually(
            async () => (await advisoryLocksOf(admin!, name)).length === 0,
            "neither waits nor locks of the state left in pg_locks",
          );

          await held.release();
          const lock = await state.getLock(key, { timeout: 5000 });
          const relocked = await state.getLock("others/0", { timeout: 5000 });
          assert.equal(await holder.testLock(key), false);
          await Promise.all([lock.release(), relocked.release()]);
          await eventually(() => Promise.resolve(state.size === 0), "no key entry left");
        } finally {
          await holder.close();
          await state.close();
        }
        assert.deepEqual(await advisoryLocksOf(admin!, name), []);
      });

      it("never crashes nor leaks while random connections die under random requests", async () => {
        const name = app("storm");
        const states: PostgresState[] = [0, 2, 100].map((handoffWindow) =>
          testState(name, { namespace: `${namespace}-storm`, mode, handoffWindow })
        );
        const keys = Array.from({ length: 16 }, (_, i) => `storm/${i}`);
        const tally = { acquired: 0, failed: 0, lost: 0, kills: 0 };
        let running = true;
        const reasons = new Map<string, number>();
        const worker = async (seed: number) => {
          const next = random(seed);
          while (running) {
            const state = states[Math.floor(next() * states.length)];
            const key = keys[Math.floor(next() * keys.length)];
            const exclusive = next() < 0.5;
            const roll = next();
            const options = roll < 0.2
              ? { exclusive, timeout: 0 }
              : roll < 0.6
              ? { exclusive, timeout: next() * 20 }
              : { exclusive, signal: AbortSignal.timeout(Math.ceil(1 + next() * 30)) };
            try {
              const lock = await state.getLock(key, options);
              tally.acquired++;
              await macrotask(next() < 0.2 ? 10 + next() * 20 : next() * 3);
              if (lock.signal.aborted) {
                assert.ok(lock.signal.reason instanceof LockLost, String(lock.signal.reason));
                tally.lost++;
              }
              await lock.release();
            } catch (error) {
              assert.ok(error instanceof LockFailed, `unexpected ${String(error)}`);
              tally.failed++;
              const why = error.message.replace(/^.*?: /, "").replace(/[\d.]+ ms/, "N ms")
                .slice(0, 70);
              reasons.set(why, (reasons.get(why) ?? 0) + 1);
            }
          }
        };
        const killer = async () => {
          const next = random(99);
          for (let round = 0; round < 30; round++) {
            await macrotask(5 + next() * 20);
            // Half the time a connection that holds locks, else any (waiting, idle, main).
            const holding = next() < 0.5 ? await lockPids(admin!, name, true) : [];
            const pids = holding.length > 0 ? holding : await sessionsOf(admin!, name);
            if (pids.length === 0) continue;
            await terminate(admin!, [pids[Math.floor(next() * pids.length)]]);
            tally.kills++;
          }
          running = false;
        };
        await Promise.all([killer(), ...Array.from({ length: 12 }, (_, i) => worker(i + 1))]);
        console.log(`${mode}: ${JSON.stringify(tally)}`, reasons);
        assert.ok(tally.acquired > 0 && tally.kills > 0);

        await eventually(
          () => Promise.resolve(states.every((state) => state.size === 0)),
          "every key entry dropped",
        );
        await eventually(
          async () => (await advisoryLocksOf(admin!, name)).length === 0,
          "nothing of ours in pg_locks",
        );
        // Every state still works.
        for (const state of states) {
          const lock = await state.getLock(keys[0], { timeout: 5000 });
          await lock.release();
        }
        await Promise.all(states.map((state) => state.close()));
        assert.deepEqual(await advisoryLocksOf(admin!, name), []);
      });
    });
  }
});
