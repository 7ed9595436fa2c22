/**
 * A worker for the broker's kill test: takes locks, queues requests that must wait, prints
 * `ready` once all of that reached the broker, then holds on until it is killed (or its stdin
 * ends, when it closes its state and exits 0).
 *
 * Usage: `holder.ts <url> <token> <plan as JSON>`, the plan being
 * `{ "hold": [{ "key": "a", "exclusive": true }], "wait": [{ "key": "b", "exclusive": false }] }`.
 */

import process from "node:process";
import { LockFailed } from "../../mod.ts";
import { BrokerState } from "../../backends/broker.ts";
import { clientOptions } from "../broker_env.ts";

interface Plan {
  hold: { key: string; exclusive: boolean }[];
  wait: { key: string; exclusive: boolean }[];
}

const [url, token, json] = process.argv.slice(2);
const plan = JSON.parse(json) as Plan;
const state = new BrokerState(url, await clientOptions(token, { name: `holder ${process.pid}` }));
const locks = [];
for (const { key, exclusive } of plan.hold) locks.push(await state.getLock(key, { exclusive }));
for (const { key, exclusive } of plan.wait) {
  state.getLock(key, { exclusive }).then(
    () => {
      process.stderr.write(`holder: a request that should wait was granted: ${key}\n`);
      process.exit(3);
    },
    (error) => {
      if (!(error instanceof LockFailed)) process.stderr.write(`holder: ${error}\n`);
    },
  );
}
// Frames on one connection are handled in order: once this is answered, every wait is queued.
await state.testLock("holder/sync");
process.stdout.write(`ready ${locks.length} held, ${plan.wait.length} waiting\n`);

process.stdin.resume();
process.stdin.on("end", async () => {
  await state.close();
  process.exit(0);
});
