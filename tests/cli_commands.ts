/**
 * The commands the CLI tests run under a lock (POSIX `sh`), and the scratch directory they leave
 * their traces in: marker files that say a command ran, gate files that let a waiting command
 * finish, logs of critical sections. Every wait of a command is bounded.
 */

import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

/** How long a gated command waits for its gate at most, in 50 ms steps (30 s). */
const GATE_STEPS = 600;

/** A scratch directory for one test file. */
export class Scratch {
  readonly dir: string = fs.mkdtempSync(path.join(os.tmpdir(), "shared-state-cli-"));
  #count = 0;

  /** A new path in the directory, not yet created. */
  file(name: string): string {
    return path.join(this.dir, `${++this.#count}-${name}`);
  }

  exists(file: string): boolean {
    return fs.existsSync(file);
  }

  touch(file: string): void {
    fs.writeFileSync(file, "");
  }

  /** The non-empty lines of `file`, none if it does not exist. */
  lines(file: string): string[] {
    if (!fs.existsSync(file)) return [];
    return fs.readFileSync(file, "utf8").split("\n").filter((line) => line !== "");
  }

  remove(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** `sh -c script` with `args` as `$1`, `$2`, … */
function sh(script: string, ...args: string[]): string[] {
  return ["sh", "-c", script, "sh", ...args];
}

/** Writes `marker`: proof that the command ran. */
export function marking(marker: string): string[] {
  return sh('echo ran > "$1"', marker);
}

/** The shell lines that wait for the file `$1` to exist, 30 s at most. */
const WAIT_FOR_GATE =
  `i=0; while [ ! -e "$1" ] && [ $i -lt ${GATE_STEPS} ]; do sleep 0.05; i=$((i + 1)); done`;

/**
 * Prints `started` on stdout, waits until `gate` exists (at most 30 s), then exits 0. With
 * `onTerm`, SIGTERM runs that shell code (e.g. `echo got TERM; exit 5`); `"ignore"` ignores it.
 */
export function gated(gate: string, onTerm?: string): string[] {
  const trap = onTerm === undefined
    ? ""
    : onTerm === "ignore"
    ? "trap '' TERM; "
    : `trap '${onTerm}' TERM; `;
  return sh(`${trap}echo started; ${WAIT_FOR_GATE}; exit 0`, gate);
}

/**
 * Prints `got TERM` when it receives SIGTERM, then waits for `gate` (at most 30 s) and exits 5:
 * a command that takes its time to shut down.
 */
export function slowToStop(gate: string): string[] {
  return sh(
    `trap 'echo got TERM; ${WAIT_FOR_GATE}; exit 5' TERM; echo started; ` +
      `j=0; while [ $j -lt ${GATE_STEPS} ]; do sleep 0.05; j=$((j + 1)); done`,
    gate,
  );
}

/**
 * A critical section that logs `start <n>` and `end <n>` to `log`, with a little work between
 * them so that two sections that were allowed to overlap would interleave in the log. Nothing
 * waits on that work: it is what the lock protects.
 */
export function criticalSection(log: string, n: number): string[] {
  return sh(`echo "start ${n}" >> "$1"; sleep 0.1; echo "end ${n}" >> "$1"`, log);
}

/** Every `start n` in `lines` is followed by its `end n` before any other start: no overlap. */
export function assertNoOverlap(lines: string[], sections: number): void {
  assert.equal(lines.length, 2 * sections, `every section logged twice:\n${lines.join("\n")}`);
  for (let i = 0; i < lines.length; i += 2) {
    const [start, n] = lines[i].split(" ");
    assert.equal(start, "start", `line ${i + 1}: ${lines[i]}`);
    assert.equal(lines[i + 1], `end ${n}`, `sections overlapped:\n${lines.join("\n")}`);
  }
}
