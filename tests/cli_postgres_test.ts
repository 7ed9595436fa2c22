/**
 * `shared-state run` and `test` against the real PostgreSQL (issue 11), as OS processes: the
 * command runs under the lock and its exit code, environment and stdin pass through; other runs
 * wait, time out or are busy (75) and never overlap; an unreachable server is 69; a lock lost
 * under the command (its backend terminated) stops the command and exits 74; a signal to the CLI
 * reaches the command and the lock is freed only once the command has ended.
 */

import assert from "node:assert/strict";
import process from "node:process";
import { after, describe, it } from "node:test";
import { advisoryLockId } from "../backends/postgres.ts";
import { ExitCode } from "../cli.ts";
import type { Lock } from "../mod.ts";
import {
  assertNoOverlap,
  criticalSection,
  gated,
  marking,
  Scratch,
  slowToStop,
} from "./cli_commands.ts";
import { CliProcess, runCli } from "./cli_process.ts";
import {
  adminClient,
  DATABASE_URL,
  eventually,
  postgresSkip,
  terminate,
  testState,
  within,
} from "./postgres_env.ts";

const skip = await postgresSkip();

describe("shared-state run and test on PostgreSQL", { skip }, () => {
  const admin = skip ? undefined : adminClient();
  const scratch = new Scratch();
  // A namespace of this run's own: no other test (or developer) shares its keys.
  const namespace = `cli-${process.pid}-${Date.now()}`;
  const env = { DATABASE_URL };
  const holder = skip ? undefined : testState("ss-test-cli-holder", { namespace });
  after(async () => {
    await holder?.close();
    await admin?.end();
    scratch.remove();
  });

  /** `shared-state <subcommand> --namespace NS <args…>`. */
  const cli = (
    subcommand: string,
    ...args: string[]
  ) => [subcommand, "--namespace", namespace, ...args];

  /** The advisory locks on `key` in pg_locks, whoever holds or awaits them. */
  async function locksOn(key: string) {
    const id = BigInt.asUintN(64, advisoryLockId(namespace, key));
    const rows = await admin!<{ pid: number; granted: boolean; mode: string; app: string }[]>`
      select l.pid, l.granted, l.mode, a.application_name as app
      from pg_locks l left join pg_stat_activity a on a.pid = l.pid
      where l.locktype = 'advisory' and l.objsubid = 1
        and l.classid = ${String(id >> 32n)}::oid and l.objid = ${String(id & 0xffffffffn)}::oid`;
    return [...rows];
  }

  async function assertFree(key: string): Promise<void> {
    await eventually(async () => (await locksOn(key)).length === 0, `no lock on ${key} left`);
    assert.equal((await runCli(cli("test", key), { env })).code, 0, `${key} free again`);
  }

  it("runs the command holding the lock, and passes its exit code, environment and stdin on", async () => {
    const result = await runCli(
      cli(
        "run",
        "env/x",
        "--",
        "sh",
        "-c",
        'read line; echo "$SHARED_STATE_KEY $SHARED_STATE_MODE $line"; exit 3',
      ),
      { env, input: "hello\n" },
    );
    assert.deepEqual(result, { code: 3, stdout: "env/x exclusive hello\n", stderr: "" });
    const shared = await runCli(
      cli("run", "--shared", "env/x", "--", "sh", "-c", 'echo "$SHARED_STATE_MODE"'),
      { env },
    );
    assert.deepEqual(shared, { code: 0, stdout: "shared\n", stderr: "" });
    await assertFree("env/x");
  });

  it("holds the lock until the command exits: others are busy (75), test says held (1)", async () => {
    const key = "hold";
    const gate = scratch.file("gate");
    const run = new CliProcess(cli("run", key, "--", ...gated(gate)), { env });
    await within(run.waitFor("stdout", "started"), "the command started");
    const [lock] = await locksOn(key);
    assert.equal(lock.granted, true);
    assert.equal(lock.mode, "ExclusiveLock");
    assert.equal(lock.app, `shared-state run ${key}`, "application_name names the CLI and key");

    assert.equal((await runCli(cli("test", key), { env })).code, ExitCode.held);
    assert.equal((await runCli(cli("test", "--shared", key), { env })).code, ExitCode.held);
    const marker = scratch.file("marker");
    const busy = await runCli(cli("run", "--timeout", "0", key, "--", ...marking(marker)), { env });
    assert.equal(busy.code, ExitCode.notAcquired, busy.stderr);
    assert.match(busy.stderr, /busy.*the command did not run/);
    assert.equal(scratch.exists(marker), false, "the command of a busy run never ran");

    scratch.touch(gate);
    assert.equal((await within(run.ended, "the run ended")).code, 0);
    await assertFree(key);
  });

  it("times out (75), quietly with --quiet", async () => {
    const key = "timeout";
    const lock = await holder!.getLock(key);
    try {
      const marker = scratch.file("marker");
      const late = await runCli(cli("run", "--timeout", "200", key, "--", ...marking(marker)), {
        env,
      });
      assert.equal(late.code, ExitCode.notAcquired);
      assert.match(late.stderr, /timed out after 200 ms; the command did not run/);
      const quiet = await runCli(
        cli("run", "--quiet", "--timeout", "1200", key, "--", ...marking(marker)),
        {
          env,
        },
      );
      assert.deepEqual(quiet, { code: ExitCode.notAcquired, stdout: "", stderr: "" });
      assert.equal(scratch.exists(marker), false);
    } finally {
      await lock.release();
    }
  });

  it("waits for the lock, saying so on stderr after a second, then runs", async () => {
    const key = "wait";
    const lock = await holder!.getLock(key, { exclusive: false });
    const run = new CliProcess(cli("run", key, "--", "echo", "ran"), { env });
    try {
      await within(
        run.waitFor("stderr", `waiting for the exclusive lock on "${key}"`),
        "the notice",
      );
      assert.match(run.stderr, /: \d+(\.\d)? s so far \(no timeout\)/);
      assert.equal(run.stdout, "", "the command waits for the lock");
      assert.ok(
        (await locksOn(key)).some((row) => !row.granted),
        "the CLI waits in PostgreSQL's queue",
      );
    } finally {
      await lock.release();
    }
    const result = await within(run.ended, "the run ended");
    assert.equal(result.code, 0);
    assert.equal(result.stdout, "ran\n");
    assert.match(result.stderr, /got the exclusive lock on "wait" after \d/);
  });

  it("lets shared runs overlap and never two exclusive ones", async () => {
    // Shared: the first run's command can only finish while the second one runs beside it.
    const second = scratch.file("second");
    const first = new CliProcess(cli("run", "--shared", "overlap", "--", ...gated(second)), {
      env,
    });
    await within(first.waitFor("stdout", "started"), "the first reader");
    const other = await runCli(
      cli("run", "--shared", "--timeout", "0", "overlap", "--", "touch", second),
      {
        env,
      },
    );
    assert.equal(other.code, 0, other.stderr);
    assert.equal((await within(first.ended, "the first reader ended")).code, 0);

    // Exclusive: four runs at once, their sections logged.
    const log = scratch.file("log");
    const results = await within(
      Promise.all(
        [0, 1, 2, 3].map((n) =>
          runCli(cli("run", "exclusive", "--", ...criticalSection(log, n)), { env })
        ),
      ),
      "four exclusive runs",
      60_000,
    );
    assert.deepEqual(results.map((result) => result.code), [0, 0, 0, 0]);
    assertNoOverlap(scratch.lines(log), 4);
    await assertFree("exclusive");
  });

  it("exits 69 when PostgreSQL cannot be reached, without running the command", async () => {
    const url = "postgres://postgres@127.0.0.1:1/x";
    const marker = scratch.file("marker");
    const run = await runCli(["run", "--url", url, "k", "--", ...marking(marker)]);
    assert.equal(run.code, ExitCode.unavailable, run.stderr);
    assert.match(run.stderr, /could not be reached.*the command did not run/);
    assert.equal(scratch.exists(marker), false);
    const test = await runCli(["test", "k"], { env: { SHARED_STATE_URL: url, DATABASE_URL } });
    assert.equal(test.code, ExitCode.unavailable, "SHARED_STATE_URL comes before DATABASE_URL");
  });

  it("exits 127 for a command not found, 128+N for a command ended by signal N", async () => {
    const missing = await runCli(cli("run", "codes", "--", "no-such-command-for-shared-state"), {
      env,
    });
    assert.equal(missing.code, ExitCode.notFound);
    assert.match(missing.stderr, /command not found: no-such-command-for-shared-state/);
    const killed = await runCli(cli("run", "codes", "--", "sh", "-c", "kill -KILL $$"), { env });
    assert.equal(killed.code, 128 + 9);
    const terminated = await runCli(cli("run", "codes", "--", "sh", "-c", "kill -TERM $$"), {
      env,
    });
    assert.equal(terminated.code, 128 + 15);
    await assertFree("codes");
  });

  it("stops the command with SIGTERM and exits 74 when the lock is lost", async () => {
    const key = "lost";
    const run = new CliProcess(
      cli("run", key, "--", ...gated(scratch.file("never"), "echo got TERM; exit 0")),
      {
        env,
      },
    );
    await within(run.waitFor("stdout", "started"), "the command started");
    const holders = (await locksOn(key)).filter((row) => row.granted).map((row) => row.pid);
    assert.equal(holders.length, 1);
    await terminate(admin!, holders);
    const result = await within(run.ended, "the run ended after the loss", 20_000);
    assert.equal(result.code, ExitCode.lost, result.stderr);
    assert.match(result.stdout, /got TERM/);
    assert.match(result.stderr, /Lost exclusive lock on "lost".*sending SIGTERM to the command/);
    await assertFree(key);
  });

  it("sends SIGKILL --kill-after ms after SIGTERM to a command that ignores it", async () => {
    const key = "lost-kill";
    const run = new CliProcess(
      cli("run", "--kill-after", "300", key, "--", ...gated(scratch.file("never"), "ignore")),
      { env },
    );
    await within(run.waitFor("stdout", "started"), "the command started");
    await terminate(admin!, (await locksOn(key)).map((row) => row.pid));
    const result = await within(run.ended, "the run ended after SIGKILL", 20_000);
    assert.equal(result.code, ExitCode.lost, result.stderr);
    assert.match(result.stderr, /SIGKILL in 0\.3 s[^]*still running: sending SIGKILL/);
  });

  it("passes SIGTERM on to the command and frees the lock only once the command has ended", async () => {
    const key = "signal";
    const gate = scratch.file("gate");
    const run = new CliProcess(cli("run", key, "--", ...slowToStop(gate)), { env });
    await within(run.waitFor("stdout", "started"), "the command started");
    run.signal("SIGTERM");
    await within(run.waitFor("stdout", "got TERM"), "the command got SIGTERM");
    // The command is still shutting down: the lock must still be held.
    assert.equal((await locksOn(key)).filter((row) => row.granted).length, 1);
    assert.equal((await runCli(cli("test", key), { env })).code, ExitCode.held);
    scratch.touch(gate);
    const result = await within(run.ended, "the run ended");
    assert.equal(result.code, 5, "the command's own exit code");
    await assertFree(key);
  });

  for (const [signal, number] of [["SIGINT", 2], ["SIGHUP", 1]] as const) {
    it(`passes ${signal} on to the command: 128+${number} when it ends the command`, async () => {
      const key = `signal-${signal}`;
      const run = new CliProcess(cli("run", key, "--", "sh", "-c", "echo started; exec sleep 30"), {
        env,
      });
      await within(run.waitFor("stdout", "started"), "the command started");
      run.signal(signal);
      assert.equal((await within(run.ended, "the run ended")).code, 128 + number);
      await assertFree(key);
    });
  }

  it("ends the wait on a signal: 128+N, the command never runs, nothing left in PostgreSQL", async () => {
    const key = "signal-wait";
    let lock: Lock | undefined = await holder!.getLock(key);
    try {
      const marker = scratch.file("marker");
      const run = new CliProcess(cli("run", key, "--", ...marking(marker)), { env });
      await eventually(
        async () => (await locksOn(key)).some((row) => !row.granted),
        "the CLI waiting in PostgreSQL's queue",
      );
      run.signal("SIGTERM");
      assert.equal((await within(run.ended, "the run ended")).code, 128 + 15);
      assert.equal(scratch.exists(marker), false);
      await lock.release();
      lock = undefined;
      await assertFree(key);
    } finally {
      await lock?.release();
    }
  });

  it("run --limit N: at most N runs at once hold a permit of KEY (issue 13)", async () => {
    const key = "permits";
    const gate = scratch.file("permit-gate");
    const first = new CliProcess(cli("run", "--limit", "2", key, "--", ...gated(gate)), { env });
    await within(first.waitFor("stdout", "started"), "the first holder");
    const second = await runCli(
      cli(
        "run",
        "--limit",
        "2",
        "--timeout",
        "0",
        key,
        "--",
        "sh",
        "-c",
        'echo "$SHARED_STATE_MODE $SHARED_STATE_LIMIT"',
      ),
      { env },
    );
    assert.deepEqual(second, { code: 0, stdout: "permit 2\n", stderr: "" }, "two may hold it");
    const keep = scratch.file("permit-keep");
    const third = new CliProcess(cli("run", "--limit", "2", key, "--", ...gated(keep)), { env });
    await within(third.waitFor("stdout", "started"), "a second holder");
    const marker = scratch.file("permit-marker");
    const busy = await runCli(
      cli("run", "--limit", "2", "--timeout", "0", key, "--", ...marking(marker)),
      { env },
    );
    assert.equal(busy.code, ExitCode.notAcquired, busy.stderr);
    assert.match(busy.stderr, /permit on "permits" \(limit 2\).*busy.*the command did not run/);
    assert.equal(scratch.exists(marker), false);
    assert.equal((await runCli(cli("test", "--limit", "2", key), { env })).code, ExitCode.held);
    assert.equal((await runCli(cli("test", "--limit", "3", key), { env })).code, ExitCode.ok);
    // A permit key is not a lock key.
    assert.equal((await runCli(cli("test", key), { env })).code, ExitCode.ok);
    scratch.touch(gate);
    scratch.touch(keep);
    assert.equal((await within(first.ended, "the first holder ended")).code, 0);
    assert.equal((await within(third.ended, "the second holder ended")).code, 0);

    // Four runs at once with --limit 2: never three sections open together.
    const log = scratch.file("permit-log");
    const results = await within(
      Promise.all(
        [0, 1, 2, 3].map((n) =>
          runCli(cli("run", "--limit", "2", key, "--", ...criticalSection(log, n)), { env })
        ),
      ),
      "four runs with --limit 2",
      60_000,
    );
    assert.deepEqual(results.map((result) => result.code), [0, 0, 0, 0]);
    let open = 0;
    for (const line of scratch.lines(log)) {
      open += line.startsWith("start") ? 1 : -1;
      assert.ok(open <= 2, `three sections open at once:\n${scratch.lines(log).join("\n")}`);
    }
    assert.equal((await runCli(cli("test", "--limit", "1", key), { env })).code, ExitCode.ok);
  });
});
