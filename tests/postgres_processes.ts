/**
 * The multi-process tests' parent side: starts tests/postgres_worker.ts as OS processes and checks
 * the events they recorded from inside their critical sections.
 */

import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { scriptCommand } from "./child_script.ts";
import type { WorkerConfig, WorkerReport } from "./postgres_worker.ts";

/** A started worker process. */
export interface Child {
  ready: Promise<void>;
  done: Promise<WorkerReport>;
  go(): void;
}

/** Starts tests/postgres_worker.ts with `config`; `go()` lets it run. */
export function startWorker(config: WorkerConfig): Child {
  const { command, args } = scriptCommand("postgres_worker", [JSON.stringify(config)]);
  const child = spawn(command, args, {
    cwd: fileURLToPath(new URL("..", import.meta.url)),
    stdio: ["pipe", "pipe", "inherit"],
  });
  let output = "";
  let markReady!: () => void;
  const ready = new Promise<void>((resolve) => markReady = resolve);
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (chunk: string) => {
    output += chunk;
    if (output.startsWith("ready\n")) markReady();
  });
  const done = new Promise<WorkerReport>((resolve, reject) => {
    child.on("error", reject);
    child.on("exit", (code) => {
      const lines = output.trim().split("\n");
      if (code !== 0 || lines[0] !== "ready") {
        reject(new Error(`worker ${config.index} exited with ${code}: ${output}`));
      } else {
        resolve(JSON.parse(lines.at(-1)!));
      }
    });
  });
  // A child that dies before it is ready must not leave the parent waiting for ever.
  const readyOrDead = Promise.race([ready, done.then(() => {})]);
  done.catch(() => {});
  return {
    ready: readyOrDead,
    done,
    go: () => child.stdin!.end("go\n"),
  };
}

/** One row of the event table, in the order of its sequence. */
export interface Event {
  seq: string;
  proc: number;
  key: string;
  exclusive: boolean;
  event: "enter" | "exit";
}

/** Walks the events in time order; returns every breach of the lock invariant. */
export function violations(events: readonly Event[]): string[] {
  const found: string[] = [];
  const holders = new Map<string, { readers: number; writers: number }>();
  for (const { seq, proc, key, exclusive, event } of events) {
    const held = holders.get(key) ?? { readers: 0, writers: 0 };
    holders.set(key, held);
    if (event === "enter") {
      if (held.writers > 0 || (exclusive && held.readers > 0)) {
        found.push(
          `#${seq}: process ${proc} entered ${key} ${exclusive ? "exclusively" : "shared"} ` +
            `with ${held.writers} writers and ${held.readers} readers inside`,
        );
      }
      if (exclusive) held.writers++;
      else held.readers++;
    } else if (exclusive) {
      held.writers--;
    } else {
      held.readers--;
    }
  }
  for (const [key, { readers, writers }] of holders) {
    if (readers !== 0 || writers !== 0) found.push(`${key}: unbalanced enter/exit rows`);
  }
  return found;
}

/**
 * Issue 13: walks the events of permit holders (recorded as shared) in time order; returns every
 * moment at which more than `limit` held a key.
 */
export function permitViolations(events: readonly Event[], limit: number): string[] {
  const found: string[] = [];
  const holders = new Map<string, number>();
  for (const { seq, proc, key, event } of events) {
    const count = (holders.get(key) ?? 0) + (event === "enter" ? 1 : -1);
    holders.set(key, count);
    if (count > limit) {
      found.push(`#${seq}: process ${proc} entered ${key} as holder number ${count} of ${limit}`);
    }
  }
  for (const [key, count] of holders) {
    if (count !== 0) found.push(`${key}: unbalanced enter/exit rows`);
  }
  return found;
}
