/**
 * `shared-state`, the command line: runs a command under a named lock that every machine sharing
 * the PostgreSQL database (or the broker) sees, as `flock(1)` does on one machine.
 *
 * ```sh
 * # Deno
 * deno run -A jsr:@momotor/shared-state/cli run --timeout 0 nightly-report -- ./report.sh
 * # Node (the PostgreSQL driver is an optional peer: name it)
 * npx -p @momotor/shared-state -p postgres shared-state run --timeout 0 nightly-report -- ./report.sh
 * ```
 *
 * Subcommands: `run [options] KEY -- COMMAND [ARGS…]`, `test [--shared] KEY`,
 * `id [--namespace NS] KEY`, `locks [--json] [KEY…]`, `broker [--port P] [--hostname H]`;
 * `--help` on each. The locks live
 * where `--url`, else `$SHARED_STATE_URL`, else `$DATABASE_URL` says: `postgres://` for
 * PostgreSQL, `ws://` for a broker (token in `$SHARED_STATE_TOKEN`). Exit codes: see
 * {@link ExitCode}.
 *
 * @example From a program: the exit code of a command line, without exiting
 * ```ts
 * import { main } from "@momotor/shared-state/cli";
 *
 * const code = await main(["id", "--namespace", "grader", "nightly-report"]); // prints the id
 * console.log(code); // 0
 * ```
 *
 * @module
 */

import { realpathSync } from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseInvocation, UsageError } from "./cli/args.ts";
import { BackendUnavailable, type Environment } from "./cli/backend.ts";
import { serveBrokerUntilStopped } from "./cli/broker.ts";
import { ExitCode } from "./cli/exit_codes.ts";
import { lockIdReport } from "./cli/lock_id.ts";
import { listLocks } from "./cli/locks.ts";
import { tell } from "./cli/messages.ts";
import { runUnderLock } from "./cli/run.ts";
import { testLock } from "./cli/test_lock.ts";
import { VERSION } from "./cli/version.ts";

export { ExitCode } from "./cli/exit_codes.ts";
export { VERSION } from "./cli/version.ts";

/**
 * Runs one `shared-state` command line and resolves with its exit code; it never rejects, and
 * does not exit the process. What the command line prints goes to stdout and stderr.
 *
 * @example
 * ```ts
 * import { ExitCode, main } from "@momotor/shared-state/cli";
 *
 * const code = await main(["run", "--timeout", "0", "report", "--", "echo", "hello"], {
 *   DATABASE_URL: "postgres://postgres@127.0.0.1:5432/postgres",
 * });
 * if (code === ExitCode.notAcquired) console.log("another machine is making the report");
 * ```
 *
 * @param argv The arguments after the program's name (`process.argv.slice(2)`).
 * @param env The environment to read `SHARED_STATE_URL`, `DATABASE_URL`, `SHARED_STATE_TOKEN`
 *   and `TOKEN` from. Default: the process's.
 * @returns The exit code: see {@link ExitCode}, or the command's own for `run`.
 */
export async function main(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>> = process.env,
): Promise<number> {
  try {
    const invocation = parseInvocation(argv);
    switch (invocation.kind) {
      case "help":
        process.stdout.write(invocation.text);
        return ExitCode.ok;
      case "version":
        console.log(`shared-state ${VERSION}`);
        return ExitCode.ok;
      case "id":
        for (const line of lockIdReport(invocation.args)) console.log(line);
        return ExitCode.ok;
      case "test":
        return await testLock(invocation.args, env as Environment);
      case "locks":
        return await listLocks(invocation.args, env as Environment);
      case "run":
        return await runUnderLock(invocation.args, env as Environment);
      case "broker":
        return await serveBrokerUntilStopped(invocation.args, env as Environment);
    }
  } catch (error) {
    if (error instanceof UsageError) {
      tell(error.message);
      tell(`see: shared-state ${error.subcommand ? `${error.subcommand} ` : ""}--help`);
      return ExitCode.usage;
    }
    if (error instanceof BackendUnavailable) {
      tell(error.message);
      return ExitCode.unavailable;
    }
    tell(`internal error, please report it: ${error instanceof Error ? error.stack : error}`);
    return ExitCode.internal;
  }
}

/**
 * Whether this module is the program (`deno run …/cli.ts`, `node …/cli.js`, the npm bin), not an
 * import. Node 20 has no `import.meta.main`: there, the script path (a symlink for an npm bin)
 * is compared with this module's file.
 */
function isProgram(): boolean {
  const meta = import.meta as ImportMeta & { main?: unknown };
  if (typeof meta.main === "boolean") return meta.main;
  const script = process.argv[1];
  if (script === undefined || !import.meta.url.startsWith("file:")) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isProgram()) {
  // Exit explicitly once everything is released and closed: a CLI must not linger (issue 11).
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
