/**
 * Permits and multi-key locks through the broker (issue 13), beyond the conformance suite: the
 * `permit`, `testPermit` and `acquireAll` frames as any client sends them, their validation, a
 * failed `acquireAll` naming the key it could not get, and losses (the broker gone, the served
 * state's own) reaching permits and multi-key locks.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { LocalState, LockLost } from "../mod.ts";
import { BrokerState } from "../backends/broker.ts";
import { clientOptions, type RunningBroker, startBroker } from "./broker_env.ts";
import { RawClient } from "./broker_raw.ts";

const TOKEN = "broker-permits-token";

function aborted(signal: AbortSignal): Promise<unknown> {
  if (signal.aborted) return Promise.resolve(signal.reason);
  return new Promise((resolve) => {
    signal.addEventListener("abort", () => resolve(signal.reason), { once: true });
  });
}

describe("broker: permits and multi-key locks over the protocol", () => {
  const served = new LocalState({ name: "served" });
  let broker: RunningBroker;
  before(async () => {
    broker = await startBroker(served, { token: TOKEN });
  });
  after(async () => {
    await broker.close();
    await served.close();
  });

  it("serves permit, testPermit and acquireAll frames with the usual replies", async () => {
    const client = await RawClient.authenticated(broker.url, TOKEN);
    client.send({ op: "permit", id: 1, key: "p", limit: 2 });
    client.send({ op: "permit", id: 2, key: "p", limit: 2, timeout: null });
    assert.equal((await client.reply(1)).op, "granted");
    assert.equal((await client.reply(2)).op, "granted");
    client.send({ op: "permit", id: 3, key: "p", limit: 2, timeout: 0 });
    assert.deepEqual(await client.reply(3), {
      op: "failed",
      id: 3,
      reason: "busy",
      message: 'Could not acquire permit on "p" (limit 2): it is busy (timeout 0)',
    });
    client.send({ op: "testPermit", id: 4, key: "p", limit: 2 });
    assert.deepEqual(await client.reply(4), { op: "tested", id: 4, free: false });
    client.send({ op: "testPermit", id: 5, key: "p", limit: 3 });
    assert.deepEqual(await client.reply(5), { op: "tested", id: 5, free: true });
    // A permit key is not a lock key.
    client.send({ op: "test", id: 6, key: "p", exclusive: true });
    assert.deepEqual(await client.reply(6), { op: "tested", id: 6, free: true });

    client.send({ op: "acquireAll", id: 7, keys: ["b", "a", "b"], exclusive: true });
    assert.equal((await client.reply(7)).op, "granted");
    client.send({ op: "acquireAll", id: 8, keys: ["c", "a"], exclusive: false, timeout: 0 });
    assert.deepEqual(await client.reply(8), {
      op: "failed",
      id: 8,
      reason: "busy",
      message: 'Could not acquire shared lock on "a": it is busy (timeout 0)',
      key: "a",
    });
    assert.equal(await served.testLock("c"), true, "the failed acquireAll kept nothing");
    for (const id of [1, 2, 7]) {
      client.send({ op: "release", id });
      assert.deepEqual(await client.reply(id), { op: "released", id });
    }
    assert.equal(served.size, 0);
    await client.close();
  });

  it("answers malformed permit and acquireAll frames with an error, and goes on serving", async () => {
    const client = await RawClient.authenticated(broker.url, TOKEN);
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ op: "permit", id: 10, key: "p" }, /"limit" must be an integer/],
      [{ op: "permit", id: 11, key: "p", limit: 0 }, /"limit" must be an integer/],
      [{ op: "permit", id: 12, key: "p", limit: "3" }, /"limit" must be an integer/],
      [{ op: "permit", id: 13, key: 5, limit: 3 }, /"key" must be a string/],
      [{ op: "permit", id: 14, key: "p", limit: 1, timeout: -1 }, /"timeout"/],
      [{ op: "testPermit", id: 15, key: "p", limit: 1.5 }, /"limit" must be an integer/],
      [{ op: "acquireAll", id: 16, keys: [], exclusive: true }, /"keys" must be an array/],
      [{ op: "acquireAll", id: 17, keys: "a", exclusive: true }, /"keys" must be an array/],
      [{ op: "acquireAll", id: 18, keys: ["a", 1], exclusive: true }, /strings only/],
      [{ op: "acquireAll", id: 19, keys: ["a"] }, /"exclusive" must be a boolean/],
      [
        {
          op: "acquireAll",
          id: 20,
          keys: Array.from({ length: 1025 }, (_, i) => `${i}`),
          exclusive: true,
        },
        /1 to 1024 strings/,
      ],
    ];
    for (const [frame, message] of bad) {
      client.send(frame);
      const reply = await client.reply(frame.id as number);
      assert.equal(reply.op, "error", JSON.stringify(reply));
      assert.match(String(reply.message), message);
    }
    // An op of a later revision ends its request at once.
    client.send({ op: "lease", id: 22, key: "p" });
    const unknown = await client.reply(22);
    assert.equal(unknown.op, "error");
    assert.match(String(unknown.message), /unknown op "lease"/);
    client.send({ op: "permit", id: 21, key: "p", limit: 1 });
    assert.equal((await client.reply(21)).op, "granted");
    await client.close();
    // The broker hears of the close when its own socket ends, which may come after the client's
    // close event (it does with Node 22's and 24's WebSocket): the permit is free from then on.
    const freed = await served.getPermit("p", { limit: 1, timeout: 10_000 });
    await freed.release();
    assert.equal(served.size, 0, "closing the connection released the permit");
  });
});

describe("broker: losing permits and multi-key locks", () => {
  it("when the broker stops, permits' and multi-key locks' signals abort with LockLost", async () => {
    const served = new LocalState();
    const broker = await startBroker(served, { token: TOKEN });
    const state = new BrokerState(broker.url, await clientOptions(TOKEN));
    const permit = await state.getPermit("api", { limit: 3 });
    const locks = await state.getLocks(["x", "y"]);
    await broker.close();
    const [permitReason, locksReason] = await Promise.all([
      aborted(permit.signal),
      aborted(locks.signal),
    ]);
    assert.ok(permitReason instanceof LockLost, String(permitReason));
    assert.equal(permitReason.reason, "disconnected");
    assert.equal(permitReason.key, "api");
    assert.equal(permitReason.limit, 3);
    assert.ok(locksReason instanceof LockLost, String(locksReason));
    assert.equal(locksReason.reason, "disconnected");
    assert.equal(served.size, 0, "the broker released what its client held");
    await Promise.all([permit.release(), locks.release()]);
    await state.close();
    await served.close();
  });

  it("passes a LockLost of the served state on to permits and multi-key locks", async () => {
    const served = new LocalState();
    const broker = await startBroker(served, { token: TOKEN });
    const state = new BrokerState(broker.url, await clientOptions(TOKEN));
    const permit = await state.getPermit("api", { limit: 1 });
    const locks = await state.getLocks(["x", "y"], { exclusive: false });
    await served.close();
    for (const signal of [permit.signal, locks.signal]) {
      const reason = await aborted(signal);
      assert.ok(reason instanceof LockLost, String(reason));
      assert.match(String((reason.cause as Error).message), /closed/);
    }
    await state.close();
    await broker.close();
  });
});
