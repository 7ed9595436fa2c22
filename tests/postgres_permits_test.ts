/**
 * PostgresState's permits and multi-key locks (issue 13), beyond the conformance suite: where the
 * slots are in `pg_locks`, one process never holding a slot twice, a release in another process
 * waking a waiter (session mode's notifications), lost connections, and several OS processes
 * contending on permits and on multi-key locks with an invariant check written from inside the
 * critical sections.
 */

import assert from "node:assert/strict";
import process from "node:process";
import { after, describe, it } from "node:test";
import { LockLost } from "../mod.ts";
import { advisoryPermitSlot } from "../backends/postgres.ts";
import { watch } from "../testing/helpers.ts";
import {
  aborted,
  adminClient,
  advisoryLocksOf,
  DATABASE_URL,
  eventually,
  lockPids,
  postgresSkip,
  runName,
  terminate,
  testState,
  waitingInPostgres,
  within,
} from "./postgres_env.ts";
import { type Event, permitViolations, startWorker, violations } from "./postgres_processes.ts";

const skip = await postgresSkip();

/** The slot locks (two-int4 form) of the sessions named `app`. */
async function slotLocks(
  sql: ReturnType<typeof adminClient>,
  app: string,
): Promise<{ pid: number; key1: number; key2: number; granted: boolean; mode: string }[]> {
  const rows = await sql<
    { pid: number; key1: number; key2: number; granted: boolean; mode: string }[]
  >`
    select l.pid, l.classid::int8 as key1, l.objid::int8 as key2, l.granted, l.mode
    from pg_locks l join pg_stat_activity a on a.pid = l.pid
    where l.locktype = 'advisory' and l.objsubid = 2 and a.application_name = ${runName(app)}`;
  return rows.map((row) => ({ ...row, key1: Number(row.key1), key2: Number(row.key2) }));
}

/** `advisoryPermitSlot` as `pg_locks` shows it (unsigned). */
function shown(namespace: string, key: string, slot: number): { key1: number; key2: number } {
  const [key1, key2] = advisoryPermitSlot(namespace, key, slot);
  return { key1: key1 >>> 0, key2: key2 >>> 0 };
}

describe("PostgresState permits", { skip }, () => {
  const admin = skip ? undefined : adminClient();
  after(() => admin?.end());
  const namespace = `permits-${Date.now()}`;

  it("holds slots where advisoryPermitSlot says, one process never one slot twice", async () => {
    const app = "ss-test-permits-slots";
    const state = testState(app, { namespace });
    try {
      const permits = await Promise.all(
        [0, 1, 2, 3, 4].map(() => state.getPermit("api", { limit: 5 })),
      );
      const locks = await slotLocks(admin!, app);
      assert.equal(locks.length, 5, JSON.stringify(locks));
      assert.ok(locks.every((lock) => lock.granted && lock.mode === "ExclusiveLock"));
      assert.equal(new Set(locks.map((lock) => lock.pid)).size, 1, "all on the main connection");
      const expected = [0, 1, 2, 3, 4].map((slot) => shown(namespace, "api", slot));
      const found = locks.map(({ key1, key2 }) => ({ key1, key2 }))
        .sort((a, b) => a.key2 - b.key2);
      assert.deepEqual(found, expected.sort((a, b) => a.key2 - b.key2));
      // A lock on the same string is another lock: nothing in the two-int4 form, no conflict.
      const lock = await state.getLock("api", { timeout: 0 });
      assert.equal((await slotLocks(admin!, app)).length, 5);
      await lock.release();
      await Promise.all(permits.map((permit) => permit.release()));
      assert.deepEqual(await advisoryLocksOf(admin!, app), []);
    } finally {
      await state.close();
    }
  });

  for (const mode of ["session", "transaction"] as const) {
    it(`${mode} mode: limits beyond the CASE form search with a recursive query`, async () => {
      const app = `ss-test-permits-large-${mode}`;
      const limit = 40;
      const state = testState(app, { namespace, mode, maxConnections: 60 });
      const other = testState(`${app}-other`, { namespace, mode, maxConnections: 60 });
      try {
        const permits = await Promise.all(
          Array.from({ length: limit }, () => state.getPermit("large", { limit })),
        );
        assert.equal(await other.testPermit("large", { limit }), false);
        assert.equal(await other.testPermit("large", { limit: limit + 1 }), true);
        await assert.rejects(other.getPermit("large", { limit, timeout: 0 }), { reason: "busy" });
        const waiting = watch(other.getPermit("large", { limit, timeout: 20_000 }));
        await waitingInPostgres(admin!, `${app}-other`, 1, "the waiter in PostgreSQL's queue");
        await Promise.all(permits.map((permit) => permit.release()));
        await within(waiting.done, "the waiter granted");
        assert.equal(waiting.outcome.status, "fulfilled");
        await (waiting.outcome as { value: { release(): Promise<void> } }).value.release();
        assert.equal(await state.testPermit("large", { limit: 1 }), true);
      } finally {
        await Promise.all([state.close(), other.close()]);
      }
    });
  }

  it("session mode: a release in another process wakes a waiter that waits for another slot", async () => {
    const app = "ss-test-permits-wake";
    const holder = testState(`${app}-holder`, { namespace });
    const waiterState = testState(app, { namespace });
    try {
      const first = await holder.getPermit("wake", { limit: 2 });
      const second = await holder.getPermit("wake", { limit: 2 });
      const bySlot = new Map<number, typeof first>();
      for (const [slot, permit] of [[0, first], [1, second]] as const) {
        bySlot.set(shown(namespace, "wake", slot).key2, permit);
      }
      const waiting = watch(waiterState.getPermit("wake", { limit: 2, timeout: 20_000 }));
      await waitingInPostgres(admin!, app, 1, "the waiter in PostgreSQL's queue");
      const [awaited] = (await slotLocks(admin!, app)).filter((lock) => !lock.granted);
      // Free the slot it does not wait for: only a notification can tell it.
      const other = [...bySlot.entries()].find(([key2]) => key2 !== awaited.key2)![1];
      await other.release();
      await within(waiting.done, "the waiter woken by the release of another slot");
      assert.equal(waiting.outcome.status, "fulfilled");
      await eventually(
        async () => (await lockPids(admin!, app, false)).length === 0,
        "the superseded wait gone from PostgreSQL's queue",
      );
      const permit = (waiting.outcome as { value: typeof first }).value;
      await permit.release();
      await Promise.all([first.release(), second.release()]);
      assert.equal(await waiterState.testPermit("wake", { limit: 1 }), true);
    } finally {
      await Promise.all([holder.close(), waiterState.close()]);
    }
  });

  for (const mode of ["session", "transaction"] as const) {
    it(`${mode} mode: a lost connection aborts permits' and multi-key locks' signals`, async () => {
      const app = `ss-test-permits-lost-${mode}`;
      const state = testState(app, { namespace, mode, maxConnections: 20 });
      try {
        const permits = await Promise.all(
          [0, 1, 2].map(() => state.getPermit("lost", { limit: 3 })),
        );
        const multi = await state.getLocks(["lost/a", "lost/b"]);
        await terminate(admin!, await lockPids(admin!, app, true));
        const reasons = await within(
          Promise.all([...permits, multi].map((held) => aborted(held.signal))),
          "every signal aborted",
        );
        for (const [i, reason] of reasons.entries()) {
          assert.ok(reason instanceof LockLost, String(reason));
          assert.equal(reason.reason, "disconnected");
          if (i < 3) {
            assert.equal(reason.key, "lost");
            assert.equal(reason.limit, 3);
          }
        }
        await Promise.all([...permits, multi].map((held) => held.release()));
        await eventually(
          async () => (await advisoryLocksOf(admin!, app)).length === 0,
          "the killed slots gone from pg_locks",
        );
        // Nothing was taken again behind our back, and the state keeps working.
        const again = await Promise.all(
          [0, 1, 2].map(() => state.getPermit("lost", { limit: 3, timeout: 5000 })),
        );
        assert.equal(await state.testPermit("lost", { limit: 3 }), false);
        await Promise.all(again.map((permit) => permit.release()));
        assert.equal(state.size, 0);
      } finally {
        await state.close();
      }
    });
  }
});

describe("PostgresState permits and multi-key locks across 4 OS processes", { skip }, () => {
  const admin = skip ? undefined : adminClient();
  const suffix = `${Date.now()}_${process.pid}`;
  const eventTable = `ss_test_permit_events_${suffix}`;
  const counterTable = `ss_test_permit_counters_${suffix}`;
  const APP = "ss-test-permit-processes";
  after(async () => {
    await admin?.unsafe(`drop table if exists ${eventTable}, ${counterTable}`);
    await admin?.end();
  });

  async function run(kind: "permits" | "multi", keys: string[], limit?: number) {
    await admin!.unsafe(`drop table if exists ${eventTable}, ${counterTable}`);
    await admin!.unsafe(
      `create table ${eventTable} (seq bigserial primary key, proc int not null,` +
        ` key text not null, exclusive boolean not null, event text not null)`,
    );
    await admin!.unsafe(`create table ${counterTable} (key text primary key, value int not null)`);
    for (const key of keys) await admin!`insert into ${admin!(counterTable)} values (${key}, 0)`;
    const children = [0, 1, 2, 3].map((index) =>
      startWorker({
        url: DATABASE_URL,
        index,
        eventTable,
        counterTable,
        namespace: `permit-processes-${kind}-${suffix}`,
        mode: index % 2 === 0 ? "session" : "transaction",
        handoffWindow: 100,
        applicationName: runName(APP),
        keys,
        loops: 3,
        iterations: 25,
        seed: index + 11,
        kind,
        limit,
      })
    );
    await Promise.all(children.map((child) => child.ready));
    for (const child of children) child.go();
    const reports = await Promise.all(children.map((child) => child.done));
    const events = [
      ...await admin!<Event[]>`
        select seq::text as seq, proc, key, exclusive, event from ${admin!(eventTable)} as e
        order by e.seq`,
    ];
    assert.deepEqual(await advisoryLocksOf(admin!, APP), []);
    return { reports, events };
  }

  it("never lets more than `limit` processes' tasks hold a permit", async () => {
    const { reports, events } = await run("permits", ["api", "queue"], 3);
    assert.deepEqual(permitViolations(events, 3), []);
    let most = 0;
    const holders = new Map<string, number>();
    for (const { key, event } of events) {
      const count = (holders.get(key) ?? 0) + (event === "enter" ? 1 : -1);
      holders.set(key, count);
      most = Math.max(most, count);
    }
    assert.ok(most >= 2, `at most ${most} holder at once: the limit was never tested`);
    const sections = reports.reduce((sum, r) => sum + r.shared, 0);
    assert.equal(events.length, 2 * sections);
    console.log(`${sections} permits held, at most ${most} at once (limit 3)`);
  });

  it("takes every key of a multi-key lock together, in any order, without deadlock", async () => {
    const keys = ["x", "y", "z"];
    const { reports, events } = await run("multi", keys);
    assert.deepEqual(violations(events), []);
    const sections = reports.reduce((sum, r) => sum + r.exclusive, 0);
    assert.ok(reports.every((r) => r.exclusive > 0), JSON.stringify(reports));
    assert.equal(events.length, 2 * keys.length * sections);
    const counters = await admin!<{ key: string; value: number }[]>`
      select key, value from ${admin!(counterTable)}`;
    const total = counters.reduce((sum, { value }) => sum + value, 0);
    assert.equal(total, sections, "an update under a multi-key lock was lost");
  });
});
