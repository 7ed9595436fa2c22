/**
 * OS processes for the broker tests: runs a script of `tests/workers/` under the current runtime
 * (Deno on the sources, Node on the compiled copy) and reads its stdout line by line.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { workerCommand } from "./broker_env.ts";

/** A running worker process. */
export class Worker {
  readonly child: ChildProcess;
  /** Resolves with the exit code (or the signal's name) once the process ended. */
  readonly exited: Promise<number | string>;
  /** Every stdout line so far. */
  readonly lines: string[] = [];
  #waiters: { match: (line: string) => boolean; resolve: (line: string) => void }[] = [];
  #buffer = "";
  #exit: number | string | undefined;

  /** Starts `tests/workers/<name>` with `args`; its stderr goes to ours. */
  constructor(name: string, args: string[]) {
    const { command, args: commandArgs } = workerCommand(name, args);
    this.child = spawn(command, commandArgs, { stdio: ["pipe", "pipe", "inherit"] });
    this.child.stdin!.on("error", () => {}); // a killed child's stdin may refuse a write
    this.child.stdout!.setEncoding("utf8");
    this.child.stdout!.on("data", (chunk: string) => this.#data(chunk));
    this.exited = new Promise((resolve) => {
      this.child.on("error", (error) => {
        this.#exit ??= `spawn error: ${error}`;
        resolve(this.#exit);
      });
      this.child.on("close", (code, signal) => {
        this.#exit ??= code ?? signal ?? "unknown";
        resolve(this.#exit);
      });
    });
  }

  #data(chunk: string): void {
    this.#buffer += chunk;
    let newline: number;
    while ((newline = this.#buffer.indexOf("\n")) >= 0) {
      const line = this.#buffer.slice(0, newline);
      this.#buffer = this.#buffer.slice(newline + 1);
      this.lines.push(line);
      this.#waiters = this.#waiters.filter((waiter) => {
        if (!waiter.match(line)) return true;
        waiter.resolve(line);
        return false;
      });
    }
  }

  /** `true` while the process runs. */
  get running(): boolean {
    return this.#exit === undefined && this.child.exitCode === null &&
      this.child.signalCode === null;
  }

  /**
   * The first stdout line that starts with `prefix`, seen already or to come. Rejects if the
   * process ends first, so that a crashed worker fails the test instead of hanging it.
   */
  line(prefix: string): Promise<string> {
    const seen = this.lines.find((line) => line.startsWith(prefix));
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      this.#waiters.push({ match: (line) => line.startsWith(prefix), resolve });
      this.exited.then((exit) => {
        // Lines written just before the exit are already delivered: "close" comes after stdout.
        const late = this.lines.find((line) => line.startsWith(prefix));
        if (late !== undefined) resolve(late);
        else reject(new Error(`the worker exited (${exit}) before printing "${prefix}"`));
      });
    });
  }

  /** Writes a line to the worker's stdin. */
  send(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  /** Closes its stdin (the workers take that as "finish and exit") and awaits the exit. */
  async end(): Promise<number | string> {
    this.child.stdin!.end();
    return await this.exited;
  }

  /** Kills it (SIGKILL: no cleanup of any kind) and awaits the exit. */
  async kill(): Promise<number | string> {
    if (this.running) this.child.kill("SIGKILL");
    return await this.exited;
  }
}
