/**
 * Issue 12 on the broker: `inspect` names every client's holders and waiters (in this process and
 * in another OS process), fencing tokens come from the served state (a LocalState, or a
 * PostgresState whose tokens order broker clients and direct holders alike), and the new frames
 * are validated like the others.
 */

import assert from "node:assert/strict";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import { LocalState } from "../mod.ts";
import { BrokerState } from "../backends/broker.ts";
import {
  MAX_INSPECT_ENTRIES,
  MAX_NAME_LENGTH,
  parseClientFrame,
  parseServerFrame,
  ProtocolError,
} from "../backends/broker/protocol.ts";
import type { PostgresState } from "../backends/postgres.ts";
import { clientOptions, type RunningBroker, startBroker } from "./broker_env.ts";
import { Worker } from "./broker_processes.ts";
import { RawClient } from "./broker_raw.ts";
import { eventually, postgresSkip, runName, testState } from "./postgres_env.ts";

const TOKEN = "fencing-test-token";
/** How the broker names a client: `name (broker connection N from ADDRESS)`. */
const OWNER = (name: string) => new RegExp(`^${name} \\(broker connection \\d+( from \\S+)?\\)$`);

describe("broker: fencing tokens and inspect", () => {
  const served = new LocalState({ name: "served" });
  let broker: RunningBroker;
  const clients: BrokerState[] = [];
  const workers: Worker[] = [];
  const client = async (name: string) => {
    const state = new BrokerState(broker.url, await clientOptions(TOKEN, { name }));
    clients.push(state);
    return state;
  };
  before(async () => {
    broker = await startBroker(served, { token: TOKEN });
  });
  after(async () => {
    await Promise.all(workers.map((worker) => worker.kill()));
    await Promise.all(clients.map((state) => state.close()));
    await broker.close();
    await served.close();
  });

  it("names each client's holders and waiters, with since when", async () => {
    const [alpha, beta] = [await client("alpha"), await client("beta")];
    const key = `inspect/${Date.now()}`;
    const start = Date.now();
    const lock = await alpha.getLock(key);
    const waiting = beta.getLock(key, { exclusive: false });
    // One connection's frames are handled in order: once this is answered, beta's request waits.
    await beta.testLock("sync");
    for (const info of [await alpha.inspect(key), await beta.inspect(key)]) {
      assert.equal(info.key, key);
      assert.deepEqual(info.holders.map((h) => h.exclusive), [true]);
      assert.match(info.holders[0].owner!, OWNER("alpha"));
      assert.deepEqual(info.waiters.map((w) => w.exclusive), [false]);
      assert.match(info.waiters[0].owner!, OWNER("beta"));
      for (const entry of [...info.holders, ...info.waiters]) {
        assert.ok(entry.since instanceof Date, "since when, from the broker");
        assert.ok(entry.since.getTime() >= start - 1000 && entry.since.getTime() <= Date.now());
      }
    }
    await lock.release();
    await (await waiting).release();
    assert.deepEqual(await alpha.inspect(key), { key, holders: [], waiters: [] });
  });

  it("hands out the served state's tokens, in one order with its own holders", async () => {
    const alpha = await client("alpha");
    const key = `fence/${Date.now()}`;
    let previous = -1n;
    for (let i = 0; i < 6; i++) {
      const lock = i % 2 === 0 ? await served.getLock(key) : await alpha.getLock(key);
      const token = await lock.fencingToken();
      assert.ok(
        token > previous,
        `${i % 2 === 0 ? "served" : "client"}: ${token} after ${previous}`,
      );
      assert.equal(await lock.fencingToken(), token);
      previous = token;
      await lock.release();
    }
  });

  it("sees the holders and waiters of a client in another OS process", async () => {
    const parent = await client("parent");
    const tag = `process/${Date.now()}`;
    const blocker = await parent.getLock(`${tag}/blocked`);
    const plan = {
      hold: [{ key: `${tag}/held`, exclusive: true }],
      wait: [{ key: `${tag}/blocked`, exclusive: false }],
    };
    const worker = new Worker("holder", [broker.url, TOKEN, JSON.stringify(plan)]);
    workers.push(worker);
    await worker.line("ready");
    const owner = OWNER(`holder ${worker.child.pid}`);
    const held = await parent.inspect(`${tag}/held`);
    assert.deepEqual(held.holders.map((h) => h.exclusive), [true]);
    assert.match(held.holders[0].owner!, owner);
    const blocked = await parent.inspect(`${tag}/blocked`);
    assert.match(blocked.holders[0].owner!, OWNER("parent"));
    assert.deepEqual(blocked.waiters.map((w) => w.exclusive), [false]);
    assert.match(blocked.waiters[0].owner!, owner);
    await worker.kill();
    await blocker.release();
    assert.deepEqual((await parent.inspect(`${tag}/held`)).holders, []);
  });

  it("announces fence and inspect, answers them, and refuses malformed ones", async () => {
    const announcing = await RawClient.connect(broker.url);
    announcing.send({ op: "hello", version: 1, token: TOKEN });
    const welcome = await announcing.next((frame) => frame.op === "welcome");
    assert.deepEqual(welcome.features, ["fence", "inspect"]);
    await announcing.close();
    const raw = await RawClient.authenticated(broker.url, TOKEN);
    try {
      raw.send({ op: "fence", id: 7 });
      assert.deepEqual(await raw.reply(7), {
        op: "fenced",
        id: 7,
        message: "the lock is not held",
      });
      raw.send({ op: "acquire", id: 8, key: "raw", exclusive: true });
      assert.equal((await raw.reply(8)).op, "granted");
      raw.send({ op: "fence", id: 8 });
      const fenced = await raw.reply(8);
      assert.equal(fenced.op, "fenced");
      assert.match(String(fenced.token), /^[0-9]+$/);
      raw.send({ op: "inspect", id: 9, key: "raw" });
      const inspected = await raw.reply(9);
      assert.equal(inspected.op, "inspected");
      assert.deepEqual((inspected.holders as { exclusive: boolean }[]).map((h) => h.exclusive), [
        true,
      ]);
      assert.match(String((inspected.holders as { owner: string }[])[0].owner), /^broker /);
      raw.send({ op: "inspect", id: 10 });
      assert.deepEqual(await raw.reply(10), {
        op: "error",
        id: 10,
        message: '"key" must be a string',
      });
      raw.send({ op: "fence" });
      assert.equal((await raw.next((frame) => frame.op === "error")).op, "error");
      raw.send({ op: "release", id: 8 });
      assert.equal((await raw.reply(8)).op, "released");
    } finally {
      await raw.close();
    }
    const named = await RawClient.connect(broker.url);
    named.send({ op: "hello", version: 1, token: TOKEN, name: "x".repeat(MAX_NAME_LENGTH + 1) });
    assert.equal((await named.next()).op, "refused");
    await named.closed;
  });

  it("validates fenced and inspected frames on the client's side", () => {
    const bad = (frame: unknown) =>
      assert.throws(() => parseServerFrame(JSON.stringify(frame)), ProtocolError);
    const token = (value: string) =>
      parseServerFrame(JSON.stringify({ op: "fenced", id: 1, token: value }));
    assert.deepEqual(token("9223372036854775807"), {
      op: "fenced",
      id: 1,
      token: "9223372036854775807",
    });
    assert.equal(
      (token("-9223372036854775808") as { token: string }).token,
      "-9223372036854775808",
    );
    bad({ op: "fenced", id: 1, token: "9223372036854775808" });
    bad({ op: "fenced", id: 1, token: "12x" });
    bad({ op: "fenced", id: 1, token: 12 });
    bad({ op: "fenced", token: "1" });
    assert.deepEqual(parseServerFrame(JSON.stringify({ op: "fenced", id: 1, message: "no" })), {
      op: "fenced",
      id: 1,
      message: "no",
    });
    const entry = { exclusive: false, since: 1, owner: "o" };
    assert.deepEqual(
      parseServerFrame(
        JSON.stringify({
          op: "inspected",
          id: 2,
          holders: [entry],
          waiters: [{ exclusive: true }],
        }),
      ),
      { op: "inspected", id: 2, holders: [entry], waiters: [{ exclusive: true }] },
    );
    bad({ op: "inspected", id: 2, holders: [] });
    bad({ op: "inspected", id: 2, holders: {}, waiters: [] });
    bad({ op: "inspected", id: 2, holders: [{ since: 1 }], waiters: [] });
    bad({ op: "inspected", id: 2, holders: [{ exclusive: true, since: "now" }], waiters: [] });
    bad({
      op: "inspected",
      id: 2,
      holders: [{ exclusive: true, owner: "x".repeat(MAX_NAME_LENGTH + 1) }],
      waiters: [],
    });
    bad({
      op: "inspected",
      id: 2,
      holders: Array.from({ length: MAX_INSPECT_ENTRIES + 1 }, () => ({ exclusive: false })),
      waiters: [],
    });
    // A broker that announces no features (an older one) gets no fence: see the next test.
    assert.deepEqual(
      (parseServerFrame('{"op":"welcome","version":1}') as { features: string[] }).features,
      [],
    );
    assert.deepEqual(parseClientFrame('{"op":"inspect","id":3,"key":""}'), {
      op: "inspect",
      id: 3,
      key: "",
    });
    assert.throws(() => parseClientFrame('{"op":"fence","id":-1}'), ProtocolError);
  });
});

const skip = await postgresSkip();

describe("broker serving a PostgresState", { skip }, () => {
  const namespace = `broker-fencing-${Date.now()}-${process.pid}`;
  let served: PostgresState;
  let direct: PostgresState;
  let broker: RunningBroker;
  let gamma: BrokerState;
  before(async () => {
    served = testState("ss-test-broker-fencing-served", { namespace });
    direct = testState("ss-test-broker-fencing-direct", { namespace });
    broker = await startBroker(served, { token: TOKEN });
    gamma = new BrokerState(broker.url, await clientOptions(TOKEN, { name: "gamma" }));
  });
  after(async () => {
    await gamma?.close();
    await broker?.close();
    await Promise.all([served?.close(), direct?.close()]);
  });

  it("orders the tokens of its clients and of direct holders, and each sees the other", async () => {
    const key = "invoice/9";
    const first = await gamma.getLock(key);
    const firstToken = await first.fencingToken();
    // A process on the database sees the broker's session as the holder.
    const fromDirect = await direct.inspect(key);
    assert.deepEqual(fromDirect.holders.map((h) => [h.exclusive, h.own]), [[true, false]]);
    assert.equal(fromDirect.holders[0].applicationName, runName("ss-test-broker-fencing-served"));
    // The broker's client sees its own holder by name, and the direct waiter by pid.
    const waiting = direct.getLock(key, { timeout: 30_000 });
    await eventually(
      async () => (await gamma.inspect(key)).waiters.length === 1,
      "the direct request seen waiting through the broker",
    );
    const fromClient = await gamma.inspect(key);
    assert.match(fromClient.holders[0].owner!, OWNER("gamma"));
    assert.match(fromClient.waiters[0].owner!, /ss-test-broker-fencing-direct.* \(pid \d+/);
    await first.release();
    const second = await waiting;
    const secondToken = await second.fencingToken();
    assert.ok(secondToken > firstToken, `${secondToken} after ${firstToken}`);
    await second.release();
    const third = await gamma.getLock(key);
    assert.ok(await third.fencingToken() > secondToken);
    await third.release();
  });
});
