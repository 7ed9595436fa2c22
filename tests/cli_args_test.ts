/**
 * The `shared-state` command line without a backend (issue 11): what it understands, what it
 * refuses with exit code 64, `--help` on every subcommand, `--version`, and `id`. The parser is
 * checked in process; a few cases run as real processes to check the exit codes and output.
 */

import assert from "node:assert/strict";
import fs from "node:fs";
import { describe, it } from "node:test";
import { parseInvocation, UsageError } from "../cli/args.ts";
import { chooseBackend } from "../cli/backend.ts";
import { ExitCode, VERSION } from "../cli.ts";
import { advisoryLockId } from "../backends/postgres.ts";
import { runCli } from "./cli_process.ts";

/** The package version: deno.json beside the sources, package.json above the compiled copy. */
function packageVersion(): string {
  for (const file of ["../deno.json", "../../package.json"]) {
    try {
      return JSON.parse(fs.readFileSync(new URL(file, import.meta.url), "utf8")).version;
    } catch {
      // Not this layout.
    }
  }
  throw new Error("neither deno.json nor package.json found");
}

function usageError(argv: string[], pattern: RegExp): void {
  assert.throws(() => parseInvocation(argv), (error: unknown) => {
    assert.ok(error instanceof UsageError, `not a UsageError: ${error}`);
    assert.match(error.message, pattern);
    return true;
  }, `${JSON.stringify(argv)} should be refused`);
}

describe("shared-state: the command line", () => {
  it("reads run's options, KEY, and COMMAND after --", () => {
    assert.deepEqual(
      parseInvocation([
        "run",
        "--shared",
        "--timeout",
        "0",
        "--kill-after=250",
        "--quiet",
        "--url",
        "ws://h:1",
        "--token",
        "t",
        "reports/daily",
        "--",
        "sh",
        "-c",
        "echo --timeout -- x",
      ]),
      {
        kind: "run",
        args: {
          key: "reports/daily",
          exclusive: false,
          limit: undefined,
          timeout: 0,
          killAfter: 250,
          quiet: true,
          backend: { url: "ws://h:1", token: "t", namespace: undefined },
          command: ["sh", "-c", "echo --timeout -- x"],
        },
      },
    );
    const defaults = parseInvocation(["run", "k", "--", "true"]);
    assert.equal(defaults.kind, "run");
    if (defaults.kind === "run") {
      assert.equal(defaults.args.exclusive, true);
      assert.equal(defaults.args.timeout, undefined, "no --timeout: wait for ever");
      assert.equal(defaults.args.killAfter, 10_000);
      assert.equal(defaults.args.quiet, false);
    }
  });

  it("reads test, id and broker", () => {
    assert.deepEqual(parseInvocation(["test", "--shared", "--namespace", "n", "k"]), {
      kind: "test",
      args: {
        key: "k",
        exclusive: false,
        limit: undefined,
        backend: { url: undefined, token: undefined, namespace: "n" },
      },
    });
    assert.deepEqual(parseInvocation(["id", "--", "-dashed"]), {
      kind: "id",
      args: { key: "-dashed", namespace: "" },
    });
    assert.deepEqual(parseInvocation(["broker"]), {
      kind: "broker",
      args: {
        port: 8787,
        hostname: "127.0.0.1",
        token: undefined,
        url: undefined,
        namespace: undefined,
      },
    });
    assert.equal(
      (parseInvocation(["broker", "--port", "0", "--hostname", "0.0.0.0"]) as {
        args: { port: number };
      }).args.port,
      0,
    );
  });

  it("reads --limit N as a permit of KEY (issue 13)", () => {
    const run = parseInvocation(["run", "--limit", "3", "payments", "--", "true"]);
    assert.equal(run.kind, "run");
    if (run.kind === "run") {
      assert.equal(run.args.limit, 3);
      assert.equal(run.args.key, "payments");
    }
    const test = parseInvocation(["test", "--limit=2", "payments"]);
    assert.equal(test.kind === "test" && test.args.limit, 2);
    for (const bad of ["0", "-1", "1.5", "x", "", "9007199254740993"]) {
      usageError(["run", `--limit=${bad}`, "k", "--", "true"], /--limit needs a whole number/);
      usageError(["test", `--limit=${bad}`, "k"], /--limit needs a whole number/);
    }
    usageError(["run", "--limit", "2", "--shared", "k", "--", "true"], /leave out --shared/);
    usageError(["test", "--shared", "--limit", "2", "k"], /leave out --shared/);
  });

  it("refuses what it does not understand", () => {
    usageError([], /missing SUBCOMMAND/);
    usageError(["lock", "k"], /unknown subcommand "lock"/);
    usageError(["--nope"], /Unknown option '--nope'/);
    usageError(["run", "--nope", "k", "--", "true"], /Unknown option '--nope'$/);
    usageError(["run"], /missing KEY/);
    usageError(["run", "--", "true"], /missing KEY/);
    usageError(["run", "k"], /missing COMMAND/);
    usageError(["run", "k", "--"], /missing COMMAND after --/);
    usageError(["run", "k", "echo", "hi"], /missing -- between KEY and COMMAND/);
    usageError(["run", "a", "b", "--", "true"], /one KEY only/);
    for (const bad of ["-1", "1.5", "abc", "", "1e3", "99999999999999999999"]) {
      usageError(["run", `--timeout=${bad}`, "k", "--", "true"], /--timeout needs a whole number/);
      usageError(["run", `--kill-after=${bad}`, "k", "--", "true"], /--kill-after needs/);
    }
    usageError(["run", "--timeout", "k", "--", "true"], /--timeout needs a whole number/);
    usageError(["run", "--timeout"], /argument missing/);
    usageError(["test"], /missing KEY/);
    usageError(["test", "a", "b"], /one KEY only/);
    usageError(["test", "--timeout", "1", "k"], /Unknown option '--timeout'/);
    usageError(["id", "--url", "postgres://x/y", "k"], /Unknown option '--url'/);
    usageError(["broker", "--port", "65536"], /--port needs a port number/);
    usageError(["broker", "extra"], /unexpected argument "extra"/);
  });

  it("chooses the backend from --url, $SHARED_STATE_URL, then $DATABASE_URL", () => {
    const pg = "postgres://u@db/app";
    const env = { SHARED_STATE_URL: "ws://broker:8787", DATABASE_URL: pg, SHARED_STATE_TOKEN: "t" };
    assert.deepEqual(chooseBackend({ url: "postgresql://u@other/x" }, env, "run"), {
      kind: "postgres",
      url: "postgresql://u@other/x",
      namespace: "",
    });
    assert.deepEqual(chooseBackend({}, env, "run"), {
      kind: "broker",
      url: "ws://broker:8787",
      token: "t",
    });
    assert.deepEqual(chooseBackend({ namespace: "n" }, { DATABASE_URL: pg }, "run"), {
      kind: "postgres",
      url: pg,
      namespace: "n",
    });
    assert.deepEqual(chooseBackend({ token: "flag" }, { SHARED_STATE_URL: "wss://b" }, "run"), {
      kind: "broker",
      url: "wss://b",
      token: "flag",
    });
    const refused = (
      flags: Parameters<typeof chooseBackend>[0],
      e: Record<string, string>,
      pattern: RegExp,
    ) =>
      assert.throws(() => chooseBackend(flags, e, "run"), (error: unknown) => {
        assert.ok(error instanceof UsageError);
        assert.match(error.message, pattern);
        return true;
      });
    refused({}, {}, /no URL/);
    refused({}, { SHARED_STATE_URL: "", DATABASE_URL: "" }, /no URL/);
    refused({ url: "" }, { DATABASE_URL: pg }, /--url must not be empty/);
    refused({}, { DATABASE_URL: "mysql://secret:pw@h/x" }, /unsupported URL scheme mysql:/);
    refused({}, { SHARED_STATE_URL: "ws://b" }, /needs its token/);
    refused(
      { namespace: "n" },
      { SHARED_STATE_URL: "ws://b", SHARED_STATE_TOKEN: "t" },
      /--namespace is for PostgreSQL/,
    );
    refused({ token: "t" }, { DATABASE_URL: pg }, /--token is for a broker URL/);
  });

  it("exits 64 with the message and where to read more", async () => {
    for (
      const [args, pattern] of [
        [["run", "--nope", "k", "--", "true"], /Unknown option '--nope'/],
        [["run", "k"], /missing COMMAND/],
        [["run", "--timeout", "soon", "k", "--", "true"], /--timeout needs a whole number/],
        [["run", "k", "--", "true"], /no URL/],
        [["test", "k"], /no URL/],
        [["broker"], /no token/],
        [["frobnicate"], /unknown subcommand/],
      ] as const
    ) {
      const result = await runCli([...args]);
      assert.equal(result.code, ExitCode.usage, `${args.join(" ")}: ${result.stderr}`);
      assert.match(result.stderr, pattern);
      assert.match(result.stderr, /see: shared-state .*--help/);
      assert.equal(result.stdout, "");
    }
  });

  it("prints --help for itself and every subcommand, exit codes included", async () => {
    const top = await runCli(["--help"]);
    assert.equal(top.code, 0);
    for (const subcommand of ["run", "test", "id", "broker"]) {
      assert.match(top.stdout, new RegExp(`shared-state ${subcommand} `));
    }
    const run = await runCli(["run", "--help"]);
    assert.equal(run.code, 0);
    for (const code of [64, 69, 74, 75]) assert.match(run.stdout, new RegExp(`^  ${code} `, "m"));
    for (
      const option of [
        "--shared",
        "--timeout",
        "--url",
        "--token",
        "--namespace",
        "--kill-after",
        "--quiet",
      ]
    ) {
      assert.match(run.stdout, new RegExp(`^  ${option}\\b`, "m"));
    }
    for (const subcommand of ["test", "id", "broker"]) {
      const help = await runCli([subcommand, "-h", "--nonsense-is-ignored"]);
      assert.equal(help.code, 0);
      assert.match(help.stdout, new RegExp(`^Usage: shared-state ${subcommand}`));
      assert.match(help.stdout, /Exit codes/);
    }
  });

  it("prints the version of the package", async () => {
    assert.equal(VERSION, packageVersion());
    const result = await runCli(["--version"]);
    assert.deepEqual(result, { code: 0, stdout: `shared-state ${packageVersion()}\n`, stderr: "" });
  });

  it("prints the advisory lock id of a key, and where pg_locks shows it", async () => {
    for (
      const [namespace, key] of [["", "nightly-report"], ["grader", "grading/42"], ["", "ü/ключ"]]
    ) {
      const args = namespace === "" ? ["id", key] : ["id", "--namespace", namespace, key];
      const result = await runCli(args);
      assert.equal(result.code, 0, result.stderr);
      const [first, second] = result.stdout.split("\n");
      const id = advisoryLockId(namespace, key);
      assert.equal(first, String(id));
      const [, classid, objid] = /classid = (\d+), objid = (\d+), objsubid = 1/.exec(second)!;
      // pg_locks splits the bigint into two unsigned 32-bit halves.
      assert.equal(BigInt.asIntN(64, (BigInt(classid) << 32n) | BigInt(objid)), id);
    }
  });
});
