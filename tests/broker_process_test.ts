/**
 * The broker across OS processes: a client process killed with SIGKILL while it holds and waits
 * frees everything for the others, and three processes contending through one broker keep the
 * lock invariant, checked from inside their critical sections.
 */

import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import { LocalState, LockFailed, LockLost } from "../mod.ts";
import { BrokerState } from "../backends/broker.ts";
import { clientOptions, type RunningBroker, startBroker } from "./broker_env.ts";
import { Worker } from "./broker_processes.ts";
import { InvariantMonitor, random } from "../testing/helpers.ts";

const TOKEN = "process-test-token";

describe("broker: OS processes", () => {
  const served = new LocalState({ name: "served" });
  let broker: RunningBroker;
  let state: BrokerState;
  const workers: Worker[] = [];
  before(async () => {
    broker = await startBroker(served, { token: TOKEN });
    state = new BrokerState(broker.url, await clientOptions(TOKEN, { name: "parent" }));
  });
  after(async () => {
    await Promise.all(workers.map((worker) => worker.kill()));
    await state.close();
    await broker.close();
    await served.close();
  });

  it("frees the locks of a client process killed while it holds and waits", async () => {
    const next = random(Number(process.env.SEED ?? Date.now() % 1e9));
    for (let round = 0; round < 3; round++) {
      const tag = `kill/${round}`;
      // The parent holds one key the worker will wait for, in a random mode pair that conflicts.
      const parentShared = next() < 0.5;
      const blocker = await state.getLock(`${tag}/blocked`, { exclusive: !parentShared });
      const plan = {
        hold: [
          { key: `${tag}/x`, exclusive: true },
          { key: `${tag}/s`, exclusive: false },
          { key: `${tag}/s`, exclusive: false },
        ],
        wait: [{ key: `${tag}/blocked`, exclusive: parentShared }],
      };
      const worker = new Worker("holder", [broker.url, TOKEN, JSON.stringify(plan)]);
      workers.push(worker);
      await worker.line("ready");
      assert.equal(await state.testLock(`${tag}/x`, { exclusive: false }), false);
      assert.equal(await state.testLock(`${tag}/s`, { exclusive: true }), false);
      assert.equal(await state.testLock(`${tag}/s`, { exclusive: false }), true);
      // Requests that wait for the dead worker's locks, with no timeout: only its death frees them.
      const exclusive = state.getLock(`${tag}/x`);
      const writer = state.getLock(`${tag}/s`);
      assert.equal(await worker.kill(), "SIGKILL");
      const [x, w] = await Promise.all([exclusive, writer]);
      assert.equal(x.key, `${tag}/x`);
      assert.equal(w.key, `${tag}/s`);
      await x.release();
      await w.release();
      // Its waiting request was dropped, not granted to nobody: the key is free once we let go.
      await blocker.release();
      const again = await state.getLock(`${tag}/blocked`, { timeout: 0 });
      await again.release();
      assert.equal(await state.testLock(`${tag}/blocked`), true);
    }
    assert.equal(served.size, 0, "the broker kept something of the killed worker");
  });

  it("keeps the invariant for three processes contending through one broker", async () => {
    const directory = fs.mkdtempSync(path.join(os.tmpdir(), "broker-invariant-"));
    const file = path.join(directory, "log");
    fs.writeFileSync(file, "");
    const iterations = 120;
    const tasks = 3;
    const base = Number(process.env.SEED ?? Date.now() % 1e9);
    try {
      const contenders = [0, 1, 2].map((i) =>
        new Worker("contender", [
          broker.url,
          TOKEN,
          file,
          String(base + i),
          String(iterations),
          String(tasks),
          "3",
        ])
      );
      workers.push(...contenders);
      const exits = await Promise.all(contenders.map((worker) => worker.exited));
      assert.deepEqual(exits, [0, 0, 0], `seeds ${base}..${base + 2}`);
      let granted = 0;
      for (const worker of contenders) {
        const [, ok, failed] = (await worker.line("done")).split(" ").map(Number);
        assert.equal(ok + failed, iterations * tasks);
        granted += ok;
      }
      const lines = fs.readFileSync(file, "utf8").split("\n").filter((line) => line !== "");
      assert.equal(lines.length, 2 * granted, "every critical section wrote enter and exit");
      const monitor = new InvariantMonitor();
      const inside = new Map<string, string>();
      let overlaps = 0;
      for (const line of lines) {
        const [who, event, mode, key] = line.split(" ");
        if (event === "enter") {
          assert.equal(inside.has(who), false, `${who} entered twice at once`);
          inside.set(who, key);
          monitor.enter(key, mode === "X");
          if (inside.size > 1) overlaps++;
        } else {
          assert.equal(inside.get(who), key, `${who} left a section it was not in`);
          inside.delete(who);
          monitor.exit(key, mode === "X");
        }
      }
      assert.deepEqual(monitor.violations, [], `seeds ${base}..${base + 2}`);
      assert.equal(inside.size, 0);
      assert.equal(monitor.entered, granted);
      // The run did contend: sections of different tasks were open at the same time.
      assert.ok(overlaps > 0, "no two critical sections ever overlapped");
      assert.equal(served.size, 0);
    } finally {
      fs.rmSync(directory, { recursive: true, force: true });
    }
  });

  it("loses held locks and fails waits when the broker process is killed, then reconnects", async () => {
    const brokerProcess = new Worker("broker", [TOKEN]);
    workers.push(brokerProcess);
    const url = (await brokerProcess.line("ready ")).slice("ready ".length);
    const a = new BrokerState(url, await clientOptions(TOKEN, { name: "a" }));
    const b = new BrokerState(url, await clientOptions(TOKEN, { name: "b" }));
    const held = await a.getLock("killed-broker/k");
    const shared = await b.getLock("killed-broker/s", { exclusive: false });
    const waiting = b.getLock("killed-broker/k").then(() => assert.fail("granted"), (e) => e);
    assert.equal(await b.testLock("killed-broker/k"), false); // the wait is queued by now
    const lost = (lock: typeof held) =>
      new Promise((resolve) =>
        lock.signal.addEventListener("abort", () => resolve(lock.signal.reason))
      );
    const reasons = Promise.all([lost(held), lost(shared)]);
    assert.equal(await brokerProcess.kill(), "SIGKILL");
    for (const reason of await reasons) assert.ok(reason instanceof LockLost);
    assert.ok((await waiting) instanceof LockFailed);
    // Nobody listens any more: new requests fail at once rather than hang.
    await assert.rejects(a.getLock("killed-broker/k"), LockFailed);
    // A new broker on the same port: the same states connect again, nothing was re-acquired.
    const port = new URL(url).port;
    const second = new Worker("broker", [TOKEN, JSON.stringify({ port: Number(port) })]);
    workers.push(second);
    assert.equal((await second.line("ready ")).slice("ready ".length), url);
    assert.equal(await a.testLock("killed-broker/k"), true);
    assert.equal(await b.testLock("killed-broker/s"), true);
    await (await b.getLock("killed-broker/k", { timeout: 0 })).release();
    await a.close();
    await b.close();
    assert.equal(await second.end(), 0);
  });
});
