/**
 * Four OS processes (two in session mode, two in transaction mode, each with three concurrent
 * loops) contend for a few keys through PostgreSQL. Each records, from inside its critical
 * sections, when it entered and left (rows numbered by one sequence, so their order is the order
 * in time) and increments per-key counters under exclusive locks. The parent then checks: never
 * two exclusive holders, never shared with exclusive, and no lost update.
 *
 * The child is tests/postgres_worker.ts, run by `deno run` under Deno and by `node` on the
 * compiled `.js` under Node.
 */

import assert from "node:assert/strict";
import process from "node:process";
import { after, describe, it } from "node:test";
import {
  adminClient,
  advisoryLocksOf,
  DATABASE_URL,
  postgresSkip,
  runName,
} from "./postgres_env.ts";
import { type Event, startWorker, violations } from "./postgres_processes.ts";

const skip = await postgresSkip();
const PROCESSES = 4;
const APP = "ss-test-processes";

describe(`PostgresState across ${PROCESSES} OS processes`, { skip }, () => {
  const admin = skip ? undefined : adminClient();
  const suffix = `${Date.now()}_${process.pid}`;
  const eventTable = `ss_test_events_${suffix}`;
  const counterTable = `ss_test_counters_${suffix}`;
  after(async () => {
    await admin?.unsafe(`drop table if exists ${eventTable}, ${counterTable}`);
    await admin?.end();
  });

  it("never lets two writers in, nor a writer with readers, and loses no update", async () => {
    const keys = ["alpha", "beta", "гамма"];
    await admin!.unsafe(
      `create table ${eventTable} (seq bigserial primary key, proc int not null,` +
        ` key text not null, exclusive boolean not null, event text not null)`,
    );
    await admin!.unsafe(`create table ${counterTable} (key text primary key, value int not null)`);
    for (const key of keys) {
      await admin!`insert into ${admin!(counterTable)} values (${key}, 0)`;
    }
    const namespace = `processes-${suffix}`;
    const children = Array.from({ length: PROCESSES }, (_, index) =>
      startWorker({
        url: DATABASE_URL,
        index,
        eventTable,
        counterTable,
        namespace,
        mode: index % 2 === 0 ? "session" : "transaction",
        handoffWindow: [100, 0, 5, 100][index],
        applicationName: runName(APP),
        keys,
        loops: 3,
        iterations: 40,
        seed: index + 1,
      }));
    await Promise.all(children.map((child) => child.ready));
    for (const child of children) child.go();
    const reports = await Promise.all(children.map((child) => child.done));

    const events = [
      ...await admin!<Event[]>`
      select seq::text as seq, proc, key, exclusive, event from ${admin!(eventTable)} as e
      order by e.seq`,
    ]; // by the number, not by its text
    assert.deepEqual(violations(events), []);

    const sections = reports.reduce((sum, r) => sum + r.exclusive + r.shared, 0);
    assert.equal(events.length, 2 * sections, "one enter and one exit row per critical section");
    assert.ok(reports.every((r) => r.exclusive > 0 && r.shared > 0), JSON.stringify(reports));
    const writes = new Map<string, number>();
    for (const e of events) {
      if (e.exclusive && e.event === "enter") writes.set(e.key, (writes.get(e.key) ?? 0) + 1);
    }
    const counters = await admin!<{ key: string; value: number }[]>`
      select key, value from ${admin!(counterTable)}`;
    for (const { key, value } of counters) {
      assert.equal(value, writes.get(key) ?? 0, `lost updates on ${JSON.stringify(key)}`);
    }
    // How much the processes really interleaved: consecutive sections of different processes.
    let switches = 0;
    const last = new Map<string, number>();
    for (const e of events) {
      if (e.event !== "enter") continue;
      if (last.has(e.key) && last.get(e.key) !== e.proc) switches++;
      last.set(e.key, e.proc);
    }
    assert.ok(switches > 0, "the processes never took turns on a key");
    console.log(`${sections} critical sections, ${switches} hand-overs between processes`);
    assert.deepEqual(await advisoryLocksOf(admin!, APP), []);
  });
});
