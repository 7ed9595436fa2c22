/**
 * PostgresState beyond the shared conformance suite: construction and bad input, connection
 * economy, no starvation of a remote writer by local readers, a deadlock between two states, and
 * testLock never answering "free" for a lock this process holds.
 */

import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import postgres from "postgres";
import { type Lock, LockFailed } from "../mod.ts";
import { PostgresState } from "../backends/postgres.ts";
import { InvariantMonitor, macrotask, random, watch } from "../testing/helpers.ts";
import {
  adminClient,
  advisoryLocksOf,
  DATABASE_URL,
  eventually,
  lockPids,
  postgresSkip,
  runName,
  sessionsOf,
  testState,
  waitingInPostgres,
  within,
} from "./postgres_env.ts";

const skip = await postgresSkip();
/** A port where nothing listens (the discard port is never a PostgreSQL server). */
const NOWHERE = "postgres://postgres@127.0.0.1:9/postgres";

describe("PostgresState construction", () => {
  it("rejects what is neither a connection URL nor a postgres.js client with TypeError", () => {
    const bad: unknown[] = [
      undefined,
      null,
      42,
      {},
      [],
      () => {},
      "",
      "   ",
      "not a url",
      "http://db.example/app",
      "postgres://[bad",
      "postgres://u@h:99999/db",
    ];
    for (const sql of bad) {
      assert.throws(
        () => new PostgresState(sql as string),
        TypeError,
        `accepted ${typeof sql === "string" ? JSON.stringify(sql) : String(sql)}`,
      );
    }
  });

  it("checks every option: TypeError for the wrong type, RangeError out of range", () => {
    const cases: [unknown, ErrorConstructor][] = [
      ["options", TypeError],
      [null, TypeError],
      [{ namespace: 1 }, TypeError],
      [{ mode: "pooled" }, TypeError],
      [{ name: false }, TypeError],
      [{ maxConnections: "3" }, TypeError],
      [{ maxConnections: 1 }, RangeError],
      [{ maxConnections: 2.5 }, RangeError],
      [{ maxConnections: NaN }, RangeError],
      [{ keepIdleConnections: -1 }, RangeError],
      [{ heartbeatInterval: -1 }, RangeError],
      [{ heartbeatInterval: Infinity }, RangeError],
      [{ handoffWindow: NaN }, RangeError],
      [{ handoffWindow: 2 ** 31 }, RangeError],
      [{ handoffWindow: "100" }, TypeError],
    ];
    for (const [options, type] of cases) {
      assert.throws(
        () => new PostgresState(DATABASE_URL, options as never),
        type,
        `accepted ${JSON.stringify(options)}`,
      );
    }
    assert.throws(() => new PostgresState(DATABASE_URL, { maxConnections: 1 }), {
      name: "RangeError",
      message: 'option "maxConnections" in PostgresState options must be an integer >= 2, got 1',
    });
  });

  it("refuses an unknown option by name, but not postgres.js's own clientOptions", async () => {
    // A misspelled namespace would silently put two applications' locks apart.
    assert.throws(() => new PostgresState(DATABASE_URL, { nameSpace: "grader" } as never), {
      name: "TypeError",
      message: 'unknown option "nameSpace" in PostgresState options (known: namespace, mode, ' +
        "maxConnections, heartbeatInterval, handoffWindow, keepIdleConnections, name, " +
        "clientOptions)",
    });
    assert.throws(
      () => new PostgresState(DATABASE_URL, { namespace: "a", heartbeat: 10 } as never),
      /unknown option "heartbeat"/,
    );
    assert.throws(() => new PostgresState(DATABASE_URL, { clientOptions: "ssl" as never }), {
      name: "TypeError",
      message: 'option "clientOptions" in PostgresState options must be an object of ' +
        'postgres.js options, got "ssl"',
    });
    const state = new PostgresState(DATABASE_URL, {
      namespace: undefined,
      clientOptions: { connect_timeout: 3, connection: { application_name: "x" } },
    });
    await state.close();
  });

  it("accepts postgresql:// and connects only when first used", async () => {
    const state = new PostgresState("postgresql://u:p@127.0.0.1:9/db", {
      namespace: "n",
      mode: "transaction",
      maxConnections: 2,
      keepIdleConnections: 0,
      heartbeatInterval: 0,
      handoffWindow: 0,
      name: "construction",
    });
    assert.equal(state.namespace, "n");
    assert.equal(state.mode, "transaction");
    assert.equal(state.connections, 0);
    await state.close();
  });

  it("fails requests with LockFailed when the server cannot be reached, and keeps working", async () => {
    const state = new PostgresState(NOWHERE, { clientOptions: { connect_timeout: 2 } });
    try {
      for (const options of [{}, { timeout: 0 }, { exclusive: false, timeout: 1000 }]) {
        const error = await state.getLock("k", options).then(() => undefined, (e) => e);
        assert.ok(error instanceof LockFailed, String(error));
        assert.match(error.message, /could not be reached/);
        assert.equal(error.reason, "unreachable");
      }
      await assert.rejects(state.testLock("k"), LockFailed);
      assert.equal(state.size, 0);
      assert.equal(state.connections, 0);
    } finally {
      await state.close();
    }
  });
});

describe("PostgresState against a server", { skip }, () => {
  const admin = skip ? undefined : adminClient();
  after(() => admin?.end());
  const namespace = `state-${Date.now()}`;

  it("leaves a postgres.js client it was given open, and ends its own connections", async () => {
    const sql = postgres(DATABASE_URL, {
      max: 1,
      onnotice: () => {},
      connection: { application_name: runName("ss-test-given") },
    });
    try {
      const state = new PostgresState(sql, { namespace });
      const lock = await state.getLock("given");
      assert.deepEqual(
        (await sessionsOf(admin!, "ss-test-given")).length >= 1,
        true,
        "the state's connections copy the client's settings",
      );
      await lock.release();
      await state.close();
      const [row] = await sql`select 1 as one`;
      assert.equal(row.one, 1);
      await eventually(
        async () => (await sessionsOf(admin!, "ss-test-given")).length === 1,
        "only the caller's own connection left",
      );
    } finally {
      await sql.end();
    }
    const own = testState("ss-test-own", { namespace });
    await (await own.getLock("own")).release();
    await own.close();
    await eventually(
      async () => (await sessionsOf(admin!, "ss-test-own")).length === 0,
      "the state's own connections ended",
    );
  });

  it("works with a given client that renames columns (transform)", async () => {
    const sql = postgres(DATABASE_URL, {
      max: 1,
      onnotice: () => {},
      transform: { column: { from: postgres.toPascal, to: postgres.fromPascal } },
    });
    const state = new PostgresState(sql, { namespace });
    try {
      const lock = await state.getLock("transform", { timeout: 5000 });
      assert.equal(await state.testLock("transform"), false);
      await lock.release();
      assert.equal(await state.testLock("transform"), true);
    } finally {
      await state.close();
      await sql.end();
    }
  });

  for (const mode of ["session", "transaction"] as const) {
    it(`waits past the role's statement_timeout (${mode} mode)`, async () => {
      const options = {
        namespace,
        mode,
        clientOptions: { connection: { statement_timeout: 100 } },
      } as const;
      const holder = testState("ss-test-statement-timeout-holder", options);
      const waiter = testState("ss-test-statement-timeout", options);
      try {
        const held = await holder.getLock(`statement-timeout/${mode}`);
        const waiting = watch(waiter.getLock(`statement-timeout/${mode}`));
        await waitingInPostgres(
          admin!,
          "ss-test-statement-timeout",
          1,
          "the request waiting in PostgreSQL",
        );
        // The scenario itself: held for several statement timeouts while the other waits.
        await macrotask(400);
        assert.equal(waiting.outcome.status, "pending", "the wait was ended by statement_timeout");
        await held.release();
        await within(waiting.done, "the wait granted");
        assert.equal(waiting.outcome.status, "fulfilled");
        await (waiting.outcome as { value: Lock }).value.release();
      } finally {
        await holder.close();
        await waiter.close();
      }
    });
  }

  for (const mode of ["session", "transaction"] as const) {
    it(`takes its waits out of PostgreSQL's queue when closed (${mode} mode)`, async () => {
      const app = `ss-test-close-wait-${mode}`;
      const options = { namespace: `${namespace}-close`, mode };
      const readers = testState(`${app}-readers`, options);
      const closing = testState(app, options);
      const later = testState(`${app}-later`, options);
      try {
        const read = await readers.getLock("closing", { exclusive: false });
        const write = watch(closing.getLock("closing"));
        await waitingInPostgres(admin!, app, 1, "the exclusive request waiting in PostgreSQL");
        await closing.close();
        await write.done;
        assert.equal(write.outcome.status, "rejected");
        assert.ok((write.outcome as { reason: unknown }).reason instanceof LockFailed);
        // A blocked backend does not notice its client left; left in the queue, the exclusive
        // wait would keep every later reader out for as long as the first reader reads.
        await eventually(
          async () => (await advisoryLocksOf(admin!, app)).length === 0,
          "the closed state's wait gone from pg_locks",
          5000,
        );
        const reader = await later.getLock("closing", { exclusive: false, timeout: 5000 });
        await reader.release();
        await read.release();
      } finally {
        await readers.close();
        await closing.close();
        await later.close();
      }
    });
  }

  it("holds 1,000 uncontended locks on at most two connections", async () => {
    const app = "ss-test-economy";
    const state = testState(app, { namespace });
    try {
      const locks: Lock[] = [];
      // Half at once (pipelined), half one after the other.
      locks.push(
        ...await Promise.all(
          Array.from({ length: 500 }, (_, i) =>
            state.getLock(`economy/${i}`, {
              exclusive: i % 2 === 0,
            })),
        ),
      );
      for (let i = 500; i < 1000; i++) {
        locks.push(await state.getLock(`economy/${i}`, { exclusive: i % 2 === 0 }));
      }
      const held = await advisoryLocksOf(admin!, app);
      assert.equal(held.filter((lock) => lock.granted).length, 1000);
      const sessions = await sessionsOf(admin!, app);
      assert.ok(sessions.length <= 2, `${sessions.length} connections for 1,000 locks`);
      assert.ok(state.connections <= 2);
      await Promise.all(locks.map((lock) => lock.release()));
      assert.deepEqual(await advisoryLocksOf(admin!, app), []);
    } finally {
      await state.close();
    }
  });

  it("reuses spare connections across waits, and ends them once unused for a while", async () => {
    const app = "ss-test-spares";
    const holder = testState(`${app}-holder`, { namespace });
    const state = testState(app, { namespace, keepIdleConnections: 2 });
    try {
      const keys = ["spares/a", "spares/b"];
      // Each round makes two requests wait in PostgreSQL at once, on spare connections.
      const pidsSeen = new Set<number>();
      for (let round = 0; round < 5; round++) {
        const held = await Promise.all(keys.map((key) => holder.getLock(key)));
        const waits = keys.map((key) => watch(state.getLock(key)));
        await waitingInPostgres(admin!, app, 2, "both requests waiting in PostgreSQL");
        for (const pid of await lockPids(admin!, app, false)) pidsSeen.add(pid);
        await Promise.all(held.map((lock) => lock.release()));
        await Promise.all(waits.map((wait) => wait.done));
        for (const wait of waits) {
          assert.equal(wait.outcome.status, "fulfilled");
          await (wait.outcome as { value: Lock }).value.release();
        }
      }
      assert.equal(pidsSeen.size, 2, `five rounds of two waits used ${pidsSeen.size} connections`);
      // Idle spares are ended after SPARE_IDLE_MS (5 s); the main connection stays.
      await eventually(
        () => Promise.resolve(state.connections === 1),
        "idle spare connections ended",
        15_000,
      );
      // The server sees an ended connection's backend exit a moment after the client closed it.
      await eventually(
        async () => (await sessionsOf(admin!, app)).length === 1,
        "the ended spares' backends gone from the server",
      );
    } finally {
      await Promise.all([holder.close(), state.close()]);
    }
  });

  it("takes a key that came free while every connection was in use, on the main one", async () => {
    // With maxConnections 2 the one spare holds a lock granted after a wait; a request that must
    // wait for another key queues for a connection. Once that key is freed it must be taken,
    // without the first lock's release (which, in the caller's code, waits for it).
    const app = "ss-test-exhausted";
    const holder = testState(`${app}-holder`, { namespace });
    const state = testState(app, { namespace, maxConnections: 2 });
    try {
      let first = await holder.getLock("exhausted/a");
      const waitedFor = state.getLock("exhausted/a");
      await waitingInPostgres(admin!, app, 1, "the first request waiting in PostgreSQL");
      await first.release();
      first = await waitedFor; // held on the spare connection
      const second = await holder.getLock("exhausted/b");
      const request = state.getLock("exhausted/b", { timeout: 10_000 });
      const queued = watch(request);
      // Its try failed on the main connection (the key is held): it queues for a connection.
      await eventually(
        async () =>
          (await admin!`select 1 from pg_stat_activity where application_name = ${runName(app)}
            and state = 'idle' and query like '%pg_try_advisory_lock%'`).length > 0,
        "the request's try on the main connection",
      );
      assert.equal(queued.outcome.status, "pending", "the key is held: the request must wait");
      await second.release();
      // Before issue 14's fix it queued for a connection until its timeout, the key long free.
      await (await request).release();
      await first.release();
      assert.equal(state.connections, 2);
    } finally {
      await Promise.all([holder.close(), state.close()]);
    }
  });

  it("lets a remote writer in while local readers keep coming (no starvation)", async () => {
    const key = "starvation";
    const readers = testState("ss-test-readers", { namespace });
    const writer = testState("ss-test-writer", { namespace });
    const monitor = new InvariantMonitor();
    try {
      let writerIn = false;
      let readsAfterWriter = 0;
      let readsBeforeWriter = 0;
      const LIMIT = 5000;
      // Three overlapping reader loops: at almost every moment some reader holds the key.
      const reader = async (seed: number) => {
        const next = random(seed);
        while (readsBeforeWriter + readsAfterWriter < LIMIT && readsAfterWriter < 30) {
          const lock = await readers.getLock(key, { exclusive: false });
          monitor.enter(key, false);
          if (writerIn) readsAfterWriter++;
          else readsBeforeWriter++;
          await macrotask(next() * 4);
          monitor.exit(key, false);
          await lock.release();
        }
      };
      const loops = [1, 2, 3].map(reader);
      // Let the readers get going first: the writer arrives while the key is busy.
      await eventually(() => Promise.resolve(readsBeforeWriter >= 3), "readers running");
      const lock = await writer.getLock(key);
      monitor.enter(key, true);
      writerIn = true;
      await macrotask(5);
      monitor.exit(key, true);
      await lock.release();
      await Promise.all(loops);
      assert.deepEqual(monitor.violations, []);
      assert.ok(
        readsBeforeWriter < LIMIT,
        `the writer waited until the readers stopped (${readsBeforeWriter} reads)`,
      );
      assert.ok(readsAfterWriter > 0, "the readers went on after the writer");
    } finally {
      await readers.close();
      await writer.close();
    }
  });

  it("ends a deadlock between two states with a timeout, leaving nothing behind", async () => {
    // A holds k1 and wants k2; B holds k2 and wants k1. The waits run on connections that hold
    // nothing, so PostgreSQL sees no cycle (no 40P01): A's timeout ends it.
    const a = testState("ss-test-deadlock-a", { namespace });
    const b = testState("ss-test-deadlock-b", { namespace });
    try {
      const a1 = await a.getLock("deadlock/1");
      const b2 = await b.getLock("deadlock/2");
      const aWants = watch(a.getLock("deadlock/2", { timeout: 300 }));
      // B waits without a timeout: only A's timeout can end the deadlock.
      const bWants = watch(b.getLock("deadlock/1"));
      await within(aWants.done, "A's wait ending");
      assert.equal(aWants.outcome.status, "rejected");
      const error = (aWants.outcome as { reason: unknown }).reason;
      assert.ok(error instanceof LockFailed, String(error));
      assert.match(error.message, /timed out/);
      // A gives up what it held: B's wait, still running, gets it.
      await a1.release();
      await within(bWants.done, "B's wait ending");
      assert.equal(bWants.outcome.status, "fulfilled");
      await (bWants.outcome as { value: Lock }).value.release();
      await b2.release();
      // A's given-up wait ends in PostgreSQL by lock_timeout, at about its deadline: it may still
      // be granted k2 for an instant, and then frees it.
      for (const name of ["ss-test-deadlock-a", "ss-test-deadlock-b"]) {
        await eventually(
          async () => (await advisoryLocksOf(admin!, name)).length === 0,
          `nothing of ${name} left in pg_locks`,
        );
      }
    } finally {
      await a.close();
      await b.close();
    }
  });

  for (const handoffWindow of [0, 100]) {
    it(`never says "free" for a lock this process holds (handoffWindow ${handoffWindow})`, async () => {
      const app = `ss-test-probe-${handoffWindow}`;
      const state = testState(app, { namespace: `${namespace}-probe`, handoffWindow });
      const other = testState(`${app}-other`, { namespace: `${namespace}-probe` });
      const keys = ["p/0", "p/1", "p/2"];
      /** Locks of `state` held right now, by key. */
      const held = new Map<string, Set<Lock>>(keys.map((key) => [key, new Set()]));
      const tally = { probes: 0, checked: 0, free: 0 };
      let running = true;
      try {
        const holder = async (s: PostgresState, seed: number, mine: boolean) => {
          const next = random(seed);
          while (running) {
            const key = keys[Math.floor(next() * keys.length)];
            const lock = await s.getLock(key, { exclusive: next() < 0.5 });
            if (mine) held.get(key)!.add(lock);
            await macrotask(next() * 3);
            if (mine) held.get(key)!.delete(lock);
            await lock.release();
          }
        };
        const prober = async (seed: number) => {
          const next = random(seed);
          for (let i = 0; i < 400; i++) {
            const key = keys[Math.floor(next() * keys.length)];
            const exclusive = next() < 0.5;
            const before = [...held.get(key)!];
            if (next() < 0.5) await macrotask();
            const free = await state.testLock(key, { exclusive });
            tally.probes++;
            if (free) tally.free++;
            // A lock held before the call and still held after it was held all along.
            const throughout = before.filter((lock) => held.get(key)!.has(lock));
            if (throughout.some((lock) => exclusive || lock.exclusive)) {
              tally.checked++;
              assert.equal(free, false, `testLock(${key}, ${exclusive}) said free while held`);
            }
          }
        };
        const holders = [
          holder(state, 1, true),
          holder(state, 2, true),
          holder(state, 3, true),
          holder(other, 4, false),
        ];
        await Promise.all([1, 2, 3, 4].map((seed) => prober(100 + seed)));
        running = false;
        await Promise.all(holders);
        console.log(JSON.stringify(tally));
        assert.ok(tally.checked > 0 && tally.free > 0, JSON.stringify(tally));
      } finally {
        running = false;
        await state.close();
        await other.close();
      }
      assert.deepEqual(await lockPids(admin!, app, true), []);
    });
  }
});
