/**
 * The `shared-state` command line as an OS process, for the CLI tests (issue 11): started under
 * the runtime the tests run on, with an environment that holds no lock URL or token unless the
 * test gives one, its output collected line by line.
 */

import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { cliCommand } from "./child_script.ts";

/** How a CLI process is started. */
export interface CliOptions {
  /** Environment variables on top of the test's own, without SHARED_STATE_*, DATABASE_URL, TOKEN. */
  env?: Record<string, string>;
  /** Written to its stdin, which is then closed; without it stdin is empty. */
  input?: string;
}

/** What an ended CLI process left. */
export interface CliResult {
  /** The exit code, or the name of the signal that ended the CLI itself. */
  code: number | string;
  stdout: string;
  stderr: string;
}

const LOCK_VARIABLES = ["SHARED_STATE_URL", "SHARED_STATE_TOKEN", "DATABASE_URL", "TOKEN"];

function environment(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (value !== undefined && !LOCK_VARIABLES.includes(name)) env[name] = value;
  }
  return { ...env, ...extra };
}

/** A running `shared-state` process. */
export class CliProcess {
  readonly child: ChildProcess;
  /** Resolves once it has ended and its output is complete. */
  readonly ended: Promise<CliResult>;
  stdout = "";
  stderr = "";
  #waiters: (() => void)[] = [];
  #done = false;

  constructor(args: string[], options: CliOptions = {}) {
    const { command, args: commandArgs } = cliCommand(args);
    this.child = spawn(command, commandArgs, {
      // The repository root (Deno finds deno.json there) or the compiled package.
      cwd: fileURLToPath(new URL("..", import.meta.url)),
      env: environment(options.env),
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.child.stdin!.on("error", () => {}); // it may exit before reading
    this.child.stdin!.end(options.input ?? "");
    this.child.stdout!.setEncoding("utf8");
    this.child.stderr!.setEncoding("utf8");
    this.child.stdout!.on("data", (chunk: string) => this.#add("stdout", chunk));
    this.child.stderr!.on("data", (chunk: string) => this.#add("stderr", chunk));
    this.ended = new Promise((resolve) => {
      this.child.on("error", (error) => {
        this.#finish();
        resolve({ code: `spawn error: ${error}`, stdout: this.stdout, stderr: this.stderr });
      });
      // "close" comes after the output streams have ended: nothing is missed.
      this.child.on("close", (code, signal) => {
        this.#finish();
        resolve({ code: code ?? signal ?? "unknown", stdout: this.stdout, stderr: this.stderr });
      });
    });
  }

  #add(stream: "stdout" | "stderr", chunk: string): void {
    this[stream] += chunk;
    for (const wake of this.#waiters.splice(0)) wake();
  }

  #finish(): void {
    this.#done = true;
    for (const wake of this.#waiters.splice(0)) wake();
  }

  /**
   * Resolves once `stream` holds a line that contains `text`; rejects when the process ends
   * without one, so that a test fails instead of hanging.
   */
  async waitFor(stream: "stdout" | "stderr", text: string): Promise<void> {
    while (!this[stream].split("\n").some((line) => line.includes(text))) {
      if (this.#done) {
        throw new Error(
          `shared-state ended without printing ${JSON.stringify(text)} on ${stream}:\n` +
            `stdout: ${this.stdout}\nstderr: ${this.stderr}`,
        );
      }
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  /**
   * Sends `signal` to the CLI process. Through `process.kill` rather than `child.kill`: Deno's
   * `node:child_process` reports a child it sent a signal as ended by that signal, whatever its
   * exit code (Deno 2.9).
   */
  signal(signal: NodeJS.Signals): void {
    process.kill(this.child.pid!, signal);
  }
}

/** Runs `shared-state args` to its end. */
export function runCli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  return new CliProcess(args, options).ended;
}
