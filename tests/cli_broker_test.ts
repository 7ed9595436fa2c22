/**
 * `shared-state broker` and `run`/`test` against it (issue 11), as OS processes: the broker
 * prints where it serves and stops cleanly on SIGTERM; runs through it pass exit codes on, wait,
 * are busy (75) and never overlap; a wrong token or no broker is 69; a broker that stops under a
 * running command makes the run exit 74; a broker on PostgreSQL takes the documented lock ids.
 */

import assert from "node:assert/strict";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import { BrokerState } from "../backends/broker.ts";
import { advisoryLockId } from "../backends/postgres.ts";
import { ExitCode } from "../cli.ts";
import { clientOptions } from "./broker_env.ts";
import { assertNoOverlap, criticalSection, gated, marking, Scratch } from "./cli_commands.ts";
import { CliProcess, runCli } from "./cli_process.ts";
import { adminClient, DATABASE_URL, eventually, postgresSkip, within } from "./postgres_env.ts";

const TOKEN = "cli-broker-token";

/** Starts `shared-state broker --port 0 …` and resolves once it says where it serves. */
async function startBroker(args: string[] = [], env: Record<string, string> = {}) {
  const broker = new CliProcess(["broker", "--port", "0", ...args], { env: { TOKEN, ...env } });
  await within(broker.waitFor("stdout", "ws://"), "the broker listening");
  return { broker, url: /ws:\/\/\S+/.exec(broker.stdout)![0] };
}

describe("shared-state broker, and run and test through it", () => {
  const scratch = new Scratch();
  let broker: CliProcess;
  let url: string;
  let env: Record<string, string>;
  let client: BrokerState;
  before(async () => {
    ({ broker, url } = await startBroker());
    env = { SHARED_STATE_URL: url, SHARED_STATE_TOKEN: TOKEN };
    client = new BrokerState(url, await clientOptions(TOKEN, { name: "cli-test-client" }));
  });
  after(async () => {
    await client?.close();
    if (broker?.child.exitCode === null) broker.signal("SIGKILL");
    scratch.remove();
  });

  it("says where it serves", () => {
    assert.match(
      broker.stdout,
      /^shared-state broker: serving memory locks on ws:\/\/127\.0\.0\.1:\d+\/$/m,
    );
  });

  it("runs the command under the broker's lock and passes its exit code on", async () => {
    const result = await runCli(
      ["run", "k", "--", "sh", "-c", 'echo "$SHARED_STATE_KEY"; exit 7'],
      { env },
    );
    assert.deepEqual(result, { code: 7, stdout: "k\n", stderr: "" });
    const withFlags = await runCli(["run", "--url", url, "--token", TOKEN, "k", "--", "true"]);
    assert.equal(withFlags.code, 0, withFlags.stderr);
  });

  it("is busy (75) and held (1) while another client holds the lock, then free", async () => {
    const lock = await client.getLock("held", { exclusive: false });
    const marker = scratch.file("marker");
    try {
      const busy = await runCli(["run", "--timeout", "0", "held", "--", ...marking(marker)], {
        env,
      });
      assert.equal(busy.code, ExitCode.notAcquired);
      assert.equal((await runCli(["test", "held"], { env })).code, ExitCode.held);
      assert.equal((await runCli(["test", "--shared", "held"], { env })).code, ExitCode.ok);
      const reader = await runCli(["run", "--shared", "--timeout", "0", "held", "--", "true"], {
        env,
      });
      assert.equal(reader.code, 0, "shared with a shared holder");
    } finally {
      await lock.release();
    }
    assert.equal(scratch.exists(marker), false);
    assert.equal((await runCli(["test", "held"], { env })).code, ExitCode.ok);
  });

  it("waits for the lock, saying so, and never lets two exclusive runs overlap", async () => {
    const lock = await client.getLock("queue");
    const log = scratch.file("log");
    const runs = [0, 1, 2].map((n) =>
      new CliProcess(["run", "queue", "--", ...criticalSection(log, n)], { env })
    );
    try {
      await within(
        Promise.all(
          runs.map((run) => run.waitFor("stderr", 'waiting for the exclusive lock on "queue"')),
        ),
        "every run says it waits",
      );
      assert.deepEqual(scratch.lines(log), [], "no command ran while the client held the lock");
    } finally {
      await lock.release();
    }
    const results = await within(
      Promise.all(runs.map((run) => run.ended)),
      "the runs ended",
      30_000,
    );
    assert.deepEqual(results.map((result) => result.code), [0, 0, 0]);
    assertNoOverlap(scratch.lines(log), 3);
  });

  it("exits 69 for a wrong token or an unreachable broker", async () => {
    const marker = scratch.file("marker");
    const wrong = await runCli(["run", "k", "--", ...marking(marker)], {
      env: { ...env, SHARED_STATE_TOKEN: "wrong" },
    });
    assert.equal(wrong.code, ExitCode.unavailable);
    assert.match(wrong.stderr, /wrong token/);
    const test = await runCli(["test", "k"], { env: { ...env, SHARED_STATE_TOKEN: "wrong" } });
    assert.equal(test.code, ExitCode.unavailable);
    const nobody = await runCli([
      "run",
      "--url",
      "ws://127.0.0.1:1/",
      "k",
      "--",
      ...marking(marker),
    ], {
      env: { SHARED_STATE_TOKEN: TOKEN },
    });
    assert.equal(nobody.code, ExitCode.unavailable, nobody.stderr);
    assert.equal(scratch.exists(marker), false);
  });

  it("refuses a broker URL that is not PostgreSQL's, and a missing token (64)", async () => {
    const notPostgres = await runCli(["broker", "--port", "0", "--url", "ws://x"], {
      env: { TOKEN },
    });
    assert.equal(notPostgres.code, ExitCode.usage);
    assert.match(notPostgres.stderr, /--url must be a PostgreSQL URL/);
    assert.equal(
      (await runCli(["broker", "--port", "0"], { env: { TOKEN: "" } })).code,
      ExitCode.usage,
    );
  });

  it("makes a run exit 74 when its broker stops under the command, and stops with 0", async () => {
    const other = await startBroker();
    const run = new CliProcess([
      "run",
      "k",
      "--",
      ...gated(scratch.file("never"), "echo got TERM; exit 0"),
    ], {
      env: { SHARED_STATE_URL: other.url, SHARED_STATE_TOKEN: TOKEN },
    });
    await within(run.waitFor("stdout", "started"), "the command started");
    other.broker.signal("SIGTERM");
    const stopped = await within(other.broker.ended, "the broker stopped");
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.match(stopped.stderr, /broker stopping/);
    const result = await within(run.ended, "the run ended", 30_000);
    assert.equal(result.code, ExitCode.lost, result.stderr);
    assert.match(result.stdout, /got TERM/);
  });
});

const skip = await postgresSkip();

describe("shared-state broker serving PostgreSQL", { skip }, () => {
  it("takes the advisory lock of the namespace and key in PostgreSQL", async () => {
    const admin = adminClient();
    const scratch = new Scratch();
    const namespace = `cli-broker-${process.pid}-${Date.now()}`;
    const { broker, url } = await startBroker(["--url", DATABASE_URL, "--namespace", namespace]);
    try {
      assert.match(broker.stdout, /serving PostgreSQL locks on ws:/);
      const gate = scratch.file("gate");
      const run = new CliProcess(["run", "--url", url, "report", "--", ...gated(gate)], {
        env: { SHARED_STATE_TOKEN: TOKEN },
      });
      await within(run.waitFor("stdout", "started"), "the command started");
      const id = advisoryLockId(namespace, "report").toString();
      const held = async () => {
        const rows = await admin`
          select a.application_name as app from pg_locks l join pg_stat_activity a on a.pid = l.pid
          where l.locktype = 'advisory' and l.granted and l.objsubid = 1
            and ((l.classid::int8 << 32) | l.objid::int8) = ${id}::int8`;
        return rows.map((row) => row.app);
      };
      await eventually(async () => (await held()).length === 1, "the lock in pg_locks");
      assert.deepEqual(await held(), ["shared-state broker"]);
      scratch.touch(gate);
      assert.equal((await within(run.ended, "the run ended")).code, 0);
      await eventually(async () => (await held()).length === 0, "the lock released in PostgreSQL");
    } finally {
      broker.signal("SIGTERM");
      assert.equal((await within(broker.ended, "the broker stopped")).code, 0);
      await admin.end();
      scratch.remove();
    }
  });
});
