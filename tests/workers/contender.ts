/**
 * A worker for the broker's multi-process invariant test: several tasks take shared and
 * exclusive locks on a few keys through one BrokerState, and append `enter`/`exit` lines to a
 * shared file from inside each critical section (O_APPEND: the file's order is the real order).
 * Prints `done <granted> <failed>` and exits 0; exits 1 on anything unexpected.
 *
 * Usage: `contender.ts <url> <token> <file> <seed> <iterations per task> <tasks> <keys>`.
 */

import fs from "node:fs";
import process from "node:process";
import { LockFailed } from "../../mod.ts";
import { BrokerState } from "../../backends/broker.ts";
import { clientOptions } from "../broker_env.ts";
import { random } from "../../testing/helpers.ts";

const [url, token, file, seedText, iterationsText, tasksText, keysText] = process.argv.slice(2);
const seed = Number(seedText);
const iterations = Number(iterationsText);
const keys = Number(keysText);
const next = random(seed);
const fd = fs.openSync(file, "a");
const state = new BrokerState(url, await clientOptions(token, { name: `contender ${seed}` }));
let granted = 0;
let failed = 0;

function record(event: string, who: string, key: string, exclusive: boolean): void {
  fs.writeSync(fd, `${who} ${event} ${exclusive ? "X" : "S"} ${key}\n`);
}

async function task(who: string): Promise<void> {
  for (let i = 0; i < iterations; i++) {
    const key = `contend/${Math.floor(next() * keys)}`;
    const exclusive = next() < 0.4;
    const timeout = next() < 0.2 ? Math.floor(next() * 3) : undefined;
    let lock;
    try {
      lock = await state.getLock(key, { exclusive, timeout });
    } catch (error) {
      if (!(error instanceof LockFailed) || timeout === undefined) throw error;
      failed++;
      continue;
    }
    granted++;
    record("enter", who, key, exclusive);
    // Hold across event-loop turns now and then, so that other processes get to contend.
    if (next() < 0.5) await new Promise((resolve) => setTimeout(resolve, Math.floor(next() * 2)));
    if (lock.signal.aborted) throw new Error(`lost ${key}: ${lock.signal.reason}`);
    record("exit", who, key, exclusive);
    await lock.release();
  }
}

try {
  const tasks = Array.from({ length: Number(tasksText) }, (_, i) => task(`${seed}/${i}`));
  await Promise.all(tasks);
  await state.close();
  fs.closeSync(fd);
  process.stdout.write(`done ${granted} ${failed}\n`);
  process.exit(0);
} catch (error) {
  process.stderr.write(`contender ${seed}: ${error}\n`);
  process.exit(1);
}
