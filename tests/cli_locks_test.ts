/**
 * `shared-state locks` (issue 12), as OS processes: on PostgreSQL it lists the holders and waiters
 * of other processes by key, with pid and application, or every advisory lock of the database
 * without KEY; on a broker, every client's, named; `--json` for scripts; 64 and 69 as documented.
 */

import assert from "node:assert/strict";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import { LocalState } from "../mod.ts";
import { BrokerState } from "../backends/broker.ts";
import { advisoryLockId, type PostgresState } from "../backends/postgres.ts";
import { ExitCode } from "../cli.ts";
import type { LockEntry } from "../cli/locks.ts";
import { lockTable } from "../cli/locks.ts";
import { clientOptions, type RunningBroker, startBroker } from "./broker_env.ts";
import { runCli } from "./cli_process.ts";
import { DATABASE_URL, eventually, postgresSkip, runName, testState } from "./postgres_env.ts";

const skip = await postgresSkip();

describe("shared-state locks on PostgreSQL", { skip }, () => {
  const namespace = `cli-locks-${process.pid}-${Date.now()}`;
  const env = { DATABASE_URL };
  let holder: PostgresState;
  let waiter: PostgresState;
  before(() => {
    holder = testState("ss-test-cli-locks-holder", { namespace });
    waiter = testState("ss-test-cli-locks-waiter", { namespace });
  });
  after(() => Promise.all([holder?.close(), waiter?.close()]));

  it("lists the holder and the waiter of a key, by key, with pid and application", async () => {
    const lock = await holder.getLock("report");
    const waiting = waiter.getLock("report", { exclusive: false, timeout: 30_000 });
    await eventually(
      async () => (await holder.inspect("report")).waiters.length === 1,
      "the waiter in PostgreSQL's queue",
    );
    const json = await runCli(["locks", "--namespace", namespace, "--json", "report", "other"], {
      env,
    });
    assert.equal(json.code, 0, json.stderr);
    const entries = JSON.parse(json.stdout) as LockEntry[];
    const id = String(advisoryLockId(namespace, "report"));
    assert.deepEqual(
      entries.map((e) => [e.key, e.id, e.mode, e.state, e.application]),
      [
        ["report", id, "exclusive", "held", runName("ss-test-cli-locks-holder")],
        ["report", id, "shared", "waiting", runName("ss-test-cli-locks-waiter")],
      ],
    );
    assert.ok(entries.every((e) => typeof e.pid === "number"));
    assert.ok(!Number.isNaN(Date.parse(entries[1].since!)), "since when the waiter waits");

    const table = await runCli(["locks", "--namespace", namespace, "report"], { env });
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trimEnd().split("\n");
    assert.match(lines[0], /^KEY +MODE +STATE +SINCE +PID\/CLIENT +APPLICATION$/);
    assert.match(lines[1], /^report +exclusive +held +- +\d+/);
    assert.match(lines[2], /^report +shared +waiting +\d{4}-\d\d-\d\dT[\d:]+Z \(.* ago\) +\d+/);
    assert.ok(lines[2].endsWith(runName("ss-test-cli-locks-waiter")));

    // Without KEY: every advisory lock of the database, this one among them by its id.
    const all = await runCli(["locks", "--json"], { env });
    assert.equal(all.code, 0, all.stderr);
    const mine = (JSON.parse(all.stdout) as LockEntry[]).filter((e) => e.id === id);
    assert.deepEqual(mine.map((e) => [e.key, e.state]), [[null, "held"], [null, "waiting"]]);

    await lock.release();
    await (await waiting).release();
    const none = await runCli(["locks", "--namespace", namespace, "--json", "report"], { env });
    assert.deepEqual(JSON.parse(none.stdout), []);
  });

  it("exits 69 when PostgreSQL cannot be reached, 64 without a URL", async () => {
    const down = await runCli(["locks", "--url", "postgres://postgres@127.0.0.1:1/x", "k"]);
    assert.equal(down.code, ExitCode.unavailable);
    assert.match(down.stderr, /could not be reached/);
    assert.equal((await runCli(["locks", "k"])).code, ExitCode.usage);
  });
});

describe("shared-state locks on a broker", () => {
  const TOKEN = "cli-locks-token";
  const served = new LocalState();
  let broker: RunningBroker;
  let alpha: BrokerState;
  before(async () => {
    broker = await startBroker(served, { token: TOKEN });
    alpha = new BrokerState(broker.url, await clientOptions(TOKEN, { name: "alpha" }));
  });
  after(async () => {
    await alpha?.close();
    await broker?.close();
    await served.close();
  });

  it("lists every client's holders and waiters of the keys named, by name", async () => {
    const env = { SHARED_STATE_URL: broker.url, SHARED_STATE_TOKEN: TOKEN };
    const lock = await alpha.getLock("k", { exclusive: false });
    const result = await runCli(["locks", "--json", "k", "free"], { env });
    assert.equal(result.code, 0, result.stderr);
    const [entry, ...rest] = JSON.parse(result.stdout) as LockEntry[];
    assert.deepEqual(rest, []);
    assert.equal(entry.key, "k");
    assert.equal(entry.mode, "shared");
    assert.equal(entry.state, "held");
    assert.match(entry.owner!, /^alpha \(broker connection \d+( from \S+)?\)$/);
    assert.ok(!Number.isNaN(Date.parse(entry.since!)));
    const table = await runCli(["locks", "k"], { env });
    assert.match(table.stdout.split("\n")[1], /^k +shared +held +\S+ \(.* ago\) +alpha \(broker/);
    await lock.release();
    const noKey = await runCli(["locks"], { env });
    assert.equal(noKey.code, ExitCode.usage);
    assert.match(noKey.stderr, /a broker cannot list its keys/);
    const wrong = await runCli(["locks", "k"], { env: { ...env, SHARED_STATE_TOKEN: "wrong" } });
    assert.equal(wrong.code, ExitCode.unavailable, wrong.stderr);
  });
});

describe("shared-state locks: the table", () => {
  it("quotes keys that need it, shortens long ones, and says what it does not know", () => {
    const now = Date.parse("2026-01-01T00:01:00Z");
    const table = lockTable([
      { key: "a b", mode: "exclusive", state: "held", since: null, pid: 42, client: "10.0.0.5" },
      {
        key: "x".repeat(70),
        mode: "shared",
        state: "waiting",
        since: "2026-01-01T00:00:30.123Z",
        owner: "alpha (broker connection 3)",
      },
      { key: null, id: "-5", mode: "shared", state: "held", since: null, pid: 7 },
    ], now);
    // Every column as wide as its widest cell, two spaces apart; the last one not padded.
    const widths = [61, 9, 7, 31, 27];
    const row = (...cells: string[]) =>
      cells.map((cell, i) => i < widths.length ? cell.padEnd(widths[i]) : cell).join("  ");
    assert.equal(
      table,
      [
        row("KEY", "MODE", "STATE", "SINCE", "PID/CLIENT", "APPLICATION"),
        row('"a b"', "exclusive", "held", "-", "42 10.0.0.5", "-"),
        row(
          `${"x".repeat(60)}…`,
          "shared",
          "waiting",
          "2026-01-01T00:00:30Z (30 s ago)",
          "alpha (broker connection 3)",
          "-",
        ),
        row("(id -5)", "shared", "held", "-", "7", "-"),
      ].join("\n") + "\n",
    );
  });

  it("has a --help, and is named in the main help", async () => {
    const help = await runCli(["locks", "--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: shared-state locks \[options\] \[KEY…\]/);
    assert.match((await runCli(["--help"])).stdout, /shared-state locks \[options\] \[KEY…\]/);
    assert.equal((await runCli(["locks", "--nope"])).code, ExitCode.usage);
  });
});
