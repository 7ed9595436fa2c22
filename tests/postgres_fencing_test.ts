/**
 * Issue 12 on PostgreSQL, across OS processes: fencing tokens grow from a holder in one process
 * to the next holder in another, whichever goes first; `inspect` and `listLocks` see the other
 * process's holder and waiter with its pid and application name; a lock whose backend was
 * terminated gets no token. The child is tests/workers/pg_fencer.ts.
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { after, describe, it } from "node:test";
import { LockLost } from "../mod.ts";
import { listLocks, type PostgresState } from "../backends/postgres.ts";
import { scriptCommand } from "./child_script.ts";
import {
  adminClient,
  DATABASE_URL,
  eventually,
  lockPids,
  postgresSkip,
  runName,
  sessionsOf,
  terminate,
  testState,
  within,
} from "./postgres_env.ts";

const skip = await postgresSkip();

/** A child process holding (or waiting for) an exclusive lock, see tests/workers/pg_fencer.ts. */
interface Fencer {
  /** Its token, once it holds the lock. */
  token: Promise<bigint>;
  /** Lets it release and exit. */
  release(): void;
  /** Resolves when it exited with 0. */
  exited: Promise<void>;
}

function startFencer(namespace: string, key: string, mode: string, app: string): Fencer {
  const { command, args } = scriptCommand("workers/pg_fencer", [
    DATABASE_URL,
    namespace,
    key,
    mode,
    runName(app),
  ]);
  const child = spawn(command, args, {
    cwd: fileURLToPath(new URL("..", import.meta.url)),
    stdio: ["pipe", "pipe", "inherit"],
  });
  let output = "";
  const exited = new Promise<void>((resolve, reject) => {
    child.on("error", reject);
    child.on("exit", (code) => {
      if (code === 0) resolve();
      else reject(new Error(`pg_fencer exited with ${code}: ${output}`));
    });
  });
  const token = new Promise<bigint>((resolve, reject) => {
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      output += chunk;
      const line = output.split("\n")[0];
      if (output.includes("\n")) resolve(BigInt(JSON.parse(line).token));
    });
    exited.then(() => reject(new Error(`pg_fencer printed no token: ${output}`)), reject);
  });
  token.catch(() => {});
  exited.catch(() => {});
  return {
    token: within(token, "the child's token"),
    release: () => child.stdin!.end("release\n"),
    exited: within(exited, "the child's exit"),
  };
}

describe("PostgresState fencing and inspect across processes", { skip }, () => {
  const admin = skip ? undefined : adminClient();
  const states: PostgresState[] = [];
  after(async () => {
    await Promise.all(states.map((state) => state.close()));
    await admin?.end();
  });

  for (const mode of ["session", "transaction"] as const) {
    it(`orders tokens between processes, each seeing the other (${mode} mode)`, async () => {
      const app = `ss-test-fencing-${mode}`;
      const namespace = `fencing-${mode}-${Date.now()}-${process.pid}`;
      const key = "invoice/7";
      const state = testState(`${app}-parent`, { namespace, mode });
      states.push(state);

      // A child process takes the lock first; this process sees it as the holder.
      const first = startFencer(namespace, key, mode, `${app}-first`);
      const firstToken = await first.token;
      const firstPids = await sessionsOf(admin!, `${app}-first`);
      const held = await state.inspect(key);
      assert.equal(held.holders.length, 1, JSON.stringify(held.holders));
      const [holder] = held.holders;
      assert.equal(holder.exclusive, true);
      assert.equal(holder.own, false);
      assert.ok(firstPids.includes(holder.pid!), `pid ${holder.pid} not in ${firstPids}`);
      assert.equal(holder.applicationName, runName(`${app}-first`));
      assert.match(holder.owner!, new RegExp(`\\(pid ${holder.pid}\\b`));
      assert.deepEqual(held.waiters, []);

      // This process waits behind it (in its own queue view: one request of its own).
      const waiting = state.getLock(key, { timeout: 30_000 });
      await eventually(
        async () => (await state.inspect(key)).waiters.some((waiter) => waiter.own),
        "this state's request listed as waiting",
      );
      first.release();
      await first.exited;
      const lock = await waiting;
      const token = await lock.fencingToken();
      assert.ok(token > firstToken, `${token} after ${firstToken} of the other process`);

      // Another child waits behind this process: seen in pg_locks, with since when.
      const waitStart = Date.now();
      const second = startFencer(namespace, key, mode, `${app}-second`);
      await eventually(
        async () => (await state.inspect(key)).waiters.length === 1,
        "the other process's request listed as waiting",
      );
      const queued = await state.inspect(key);
      assert.deepEqual(queued.holders.map((h) => [h.exclusive, h.own]), [[true, true]]);
      const [waiter] = queued.waiters;
      assert.equal(waiter.own, false);
      assert.equal(waiter.applicationName, runName(`${app}-second`));
      assert.ok(waiter.since instanceof Date, "a waiter's since when");
      assert.ok(waiter.since.getTime() >= waitStart - 1000, waiter.since.toISOString());

      // The operator's view: both, named by key, the holder first.
      const listed = await listLocks(DATABASE_URL, { namespace, keys: [key, "unrelated"] });
      assert.deepEqual(
        listed.map((row) => [row.key, row.exclusive, row.granted, row.applicationName]),
        [
          [key, true, true, runName(`${app}-parent`)],
          [key, true, false, runName(`${app}-second`)],
        ],
      );
      assert.equal(listed[0].id, queued.id);
      assert.ok(listed[1].since instanceof Date);

      await lock.release();
      const secondToken = await second.token;
      assert.ok(secondToken > token, `${secondToken} after ${token} of this process`);
      second.release();
      await second.exited;
      assert.deepEqual((await state.inspect(key)).holders, []);
    });

    it(`gives no token for a lock whose backend was terminated (${mode} mode)`, async () => {
      const app = `ss-test-fencing-lost-${mode}`;
      const namespace = `fencing-lost-${mode}-${Date.now()}-${process.pid}`;
      const state = testState(app, { namespace, mode, heartbeatInterval: 0 });
      states.push(state);
      const lock = await state.getLock("k");
      await terminate(admin!, await lockPids(admin!, app, true));
      const error = await lock.fencingToken().then(
        (token) => assert.fail(`a lost lock got token ${token}`),
        (error) => error,
      );
      assert.ok(error instanceof LockLost, String(error));
      assert.equal(error.reason, "disconnected");
      assert.equal(lock.signal.aborted, true);
      // The state goes on: a new holder gets a token.
      const again = await state.getLock("k");
      assert.equal(typeof await again.fencingToken(), "bigint");
      await again.release();
    });
  }

  it("fences off a holder that lost its lock, with docs/postgres.md's guarded UPDATE", async () => {
    const app = "ss-test-fencing-update";
    const namespace = `fencing-update-${Date.now()}-${process.pid}`;
    const table = `ss_test_invoices_${Date.now()}_${process.pid}`;
    await admin!.unsafe(
      `create table ${table} (id int primary key, total numeric, fence bigint not null default 0)`,
    );
    try {
      await admin!.unsafe(`insert into ${table} (id) values (7)`);
      const guarded = (total: number, token: bigint) =>
        admin!`update ${admin!(table)} set total = ${total}, fence = ${String(token)}
          where id = 7 and fence < ${String(token)}`;
      const slow = testState(`${app}-slow`, { namespace, heartbeatInterval: 0 });
      const next = testState(`${app}-next`, { namespace });
      states.push(slow, next);
      const stale = await slow.getLock("invoice/7");
      const staleToken = await stale.fencingToken();
      // Its holder pauses; meanwhile its connection dies and the next holder gets the lock.
      await terminate(admin!, await lockPids(admin!, `${app}-slow`, true));
      const fresh = await next.getLock("invoice/7", { timeout: 10_000 });
      assert.equal((await guarded(2, await fresh.fencingToken())).count, 1);
      await fresh.release();
      // The paused holder wakes up and writes: refused.
      assert.equal((await guarded(1, staleToken)).count, 0);
      const [row] = await admin!.unsafe(`select total::int as total from ${table}`);
      assert.equal(row.total, 2);
    } finally {
      await admin!.unsafe(`drop table ${table}`);
    }
  });

  it("checks listLocks's arguments", async () => {
    await assert.rejects(listLocks(DATABASE_URL, { nameSpace: "x" } as never), {
      name: "TypeError",
      message: /unknown option "nameSpace"/,
    });
    await assert.rejects(listLocks(DATABASE_URL, { keys: "k" as never }), TypeError);
    await assert.rejects(listLocks("mysql://x"), TypeError);
    assert.deepEqual(await listLocks(admin!, { keys: [] }), []);
  });
});
