/**
 * Runs the command of `shared-state run` as a child process that inherits stdin, stdout and
 * stderr, can be signalled, and reports how it ended.
 *
 * On Deno this uses `Deno.Command`, not `node:child_process`: Deno's `node:child_process` reports
 * a child that was sent SIGTERM as "ended by SIGTERM" even when it caught the signal and exited
 * with a code of its own (Deno 2.9, issue 11), and `run` must pass that code on.
 */

import { spawn } from "node:child_process";
import process from "node:process";

/** How the command ended: an exit code, or the signal that ended it. */
export type CommandEnd = { code: number; signal?: undefined } | {
  code?: undefined;
  signal: string;
};

/** A running command. */
export interface CommandProcess {
  /** Sends `signal` (e.g. `"SIGTERM"`); does nothing once the command has ended. */
  kill(signal: string): void;
  /** Settles once the command has ended; never rejects. */
  readonly ended: Promise<CommandEnd>;
}

/** The command could not be started: `ENOENT` (not found) or another OS error code. */
export class CommandNotStarted extends Error {
  readonly code: string;

  constructor(command: string, code: string, cause: unknown) {
    super(
      code === "ENOENT"
        ? `command not found: ${command}`
        : `cannot run ${command}: ${cause instanceof Error ? cause.message : String(cause)}`,
      { cause },
    );
    this.name = "CommandNotStarted";
    this.code = code;
  }
}

// The part of Deno's API used here, typed locally: the npm build compiles without Deno's types.
interface DenoChild {
  kill(signal: string): void;
  readonly status: Promise<{ code: number; signal: string | null }>;
}
interface DenoApi {
  Command: new (command: string, options: {
    args: string[];
    env: Record<string, string>;
    stdin: "inherit";
    stdout: "inherit";
    stderr: "inherit";
  }) => { spawn(): DenoChild };
}

const deno = (globalThis as { Deno?: DenoApi }).Deno;

function startOnDeno(api: DenoApi, argv: string[], env: Record<string, string>): CommandProcess {
  let child: DenoChild;
  try {
    child = new api.Command(argv[0], {
      args: argv.slice(1),
      env,
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    throw new CommandNotStarted(argv[0], typeof code === "string" ? code : "EUNKNOWN", error);
  }
  let done = false;
  const ended = child.status.then(
    ({ code, signal }): CommandEnd => signal === null ? { code } : { signal },
    // The status of a spawned child does not fail; should it, report what a shell would.
    (): CommandEnd => ({ code: 1 }),
  ).finally(() => done = true);
  return {
    kill(signal) {
      if (done) return;
      try {
        child.kill(signal);
      } catch {
        // It ended between the check and the kill.
      }
    },
    ended,
  };
}

function startOnNode(argv: string[], env: Record<string, string>): Promise<CommandProcess> {
  const child = spawn(argv[0], argv.slice(1), {
    stdio: "inherit",
    env: { ...process.env, ...env },
  });
  return new Promise((resolve, reject) => {
    const ended = new Promise<CommandEnd>((settle) => {
      child.once("exit", (code, signal) => {
        settle(signal !== null ? { signal } : { code: code ?? 1 });
      });
    });
    child.on("error", (error: NodeJS.ErrnoException) => {
      // Only a failed start is reported; a later error (a failed kill) is nothing to act on.
      if (child.pid === undefined) {
        reject(new CommandNotStarted(argv[0], error.code ?? "EUNKNOWN", error));
      }
    });
    child.once("spawn", () => {
      resolve({
        kill(signal) {
          if (child.exitCode !== null || child.signalCode !== null) return;
          try {
            child.kill(signal as NodeJS.Signals);
          } catch {
            // It ended between the check and the kill.
          }
        },
        ended,
      });
    });
  });
}

/**
 * Starts `argv` (command and arguments, looked up on `PATH`) with the CLI's environment plus
 * `env`, and stdin, stdout and stderr inherited.
 *
 * @throws {CommandNotStarted} when it cannot be started (not found, not executable).
 */
export function startCommand(
  argv: string[],
  env: Record<string, string>,
): Promise<CommandProcess> {
  if (deno !== undefined) {
    try {
      return Promise.resolve(startOnDeno(deno, argv, env));
    } catch (error) {
      return Promise.reject(error);
    }
  }
  return startOnNode(argv, env);
}
