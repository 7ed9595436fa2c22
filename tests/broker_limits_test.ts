/**
 * The broker's resource limits against single hostile clients: frames measured in bytes, not
 * UTF-16 code units, and a client that sends but never reads its replies.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { after, before, describe, it } from "node:test";
import { LocalState } from "../mod.ts";
import { BrokerState, CloseCode, MAX_FRAME_BYTES } from "../backends/broker.ts";
import { clientOptions, type RunningBroker, startBroker } from "./broker_env.ts";
import { RawClient } from "./broker_raw.ts";
import { encodeFrame, Opcode, TcpClient } from "./broker_tcp.ts";

const TOKEN = "limits-token";

describe("broker: limits", () => {
  const served = new LocalState({ name: "served" });
  let broker: RunningBroker;
  let state: BrokerState;
  before(async () => {
    broker = await startBroker(served, {
      token: TOKEN,
      maxRequests: 1,
      maxBufferedBytes: 64 * 1024,
    });
    state = new BrokerState(broker.url, await clientOptions(TOKEN));
  });
  after(async () => {
    await state.close();
    await broker.close();
    await served.close();
  });

  it("measures frames in UTF-8 bytes: a frame of few code units but too many bytes is closed", async () => {
    for (const unit of ["\u20ac", "\ud83d\ude00", "\u00e9"]) {
      // Well under MAX_FRAME_BYTES code units, well over it in bytes.
      const padding = unit.repeat(Math.ceil((MAX_FRAME_BYTES * 1.2) / (unit === "\u00e9" ? 2 : 3)));
      assert.ok(padding.length < MAX_FRAME_BYTES);
      const client = await RawClient.authenticated(broker.url, TOKEN);
      client.send({ op: "ping", padding });
      const outcome = await Promise.race([
        client.next((frame) => frame.op === "pong").then(() => "answered"),
        client.closed,
      ]);
      assert.equal(outcome, CloseCode.tooBig, `a ${padding.length}-unit frame of ${unit}`);
    }
    // Just under the limit in bytes is fine.
    const client = await RawClient.authenticated(broker.url, TOKEN);
    client.send({ op: "ping", padding: "\u20ac".repeat(Math.floor((MAX_FRAME_BYTES - 64) / 3)) });
    await client.next((frame) => frame.op === "pong");
    await client.close();
  });

  it("ends the session of a client that does not read its replies, and frees its locks", async () => {
    const client = await TcpClient.upgraded(broker.port);
    assert.equal((await client.hello(TOKEN))?.op, "welcome");
    client.sendText({ op: "acquire", id: 0, key: "unread/k", exclusive: true });
    const granted = await client.frame((frame) =>
      frame.opcode === Opcode.text && frame.payload.toString().includes('"granted"')
    );
    assert.ok(granted !== undefined);
    assert.equal(await state.testLock("unread/k"), false); // connects the waiter's state first
    const connections = broker.handler.connections;
    // Stop reading, and send requests whose replies (refusals: maxRequests is 1) pile up; then
    // release the lock, so that a broker that kept the session would free it as well.
    client.socket.pause();
    const waiter = state.getLock("unread/k");
    const chunk: Uint8Array[] = [];
    for (let id = 1; id <= 200_000; id++) {
      chunk.push(encodeFrame(Opcode.text, `{"op":"acquire","id":${id},"key":"","exclusive":true}`));
      if (chunk.length === 1000) client.write(Buffer.concat(chunk.splice(0)));
    }
    client.sendText({ op: "release", id: 0 });
    const lock = await waiter;
    // Freed by the end of the session, not by the release at the end of the pile.
    assert.equal(
      broker.handler.connections,
      connections - 1,
      "the broker queued every reply for a client not reading",
    );
    await lock.release();
    await client.destroy();
    assert.equal(served.size, 0);
  });
});
