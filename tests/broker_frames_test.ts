import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Buffer } from "node:buffer";
import { LocalState } from "../mod.ts";
import { parseClientFrame, parseServerFrame, ProtocolError } from "../backends/broker/protocol.ts";
import { random } from "../testing/helpers.ts";
import { startBroker } from "./broker_env.ts";
import { encodeFrame, Opcode, TcpClient, type TcpFrame } from "./broker_tcp.ts";

/** What `parse` makes of `text`: the frame, or the ProtocolError's message. */
function outcome(parse: (text: unknown) => unknown, text: string): unknown {
  try {
    return parse(text);
  } catch (error) {
    assert.ok(error instanceof ProtocolError, `not a ProtocolError: ${error}`);
    return { error: error.message };
  }
}

/** Frames near the compact ones that both sides read without `JSON.parse` (issue 14). */
function nearCompact(next: () => number): string {
  const ops = ["release", "granted", "released", "queued", "acquire"];
  const op = ops[Math.floor(next() * ops.length)];
  const ids = [
    "0",
    "7",
    "42",
    "007",
    "-1",
    "1.5",
    "1e3",
    "9007199254740991",
    "9007199254740992",
    "99999999999999999",
    "",
    " 5",
    "5 ",
    '"5"',
  ];
  const id = ids[Math.floor(next() * ids.length)];
  const variants = [
    `{"op":"${op}","id":${id}}`,
    `{"op":"${op}","id":${id}} `,
    `{"op":"${op}","id":${id},"key":"k"}`,
    `{"op":"${op}","id":${id}`,
    `{"op":"${op}", "id":${id}}`,
    `{"id":${id},"op":"${op}"}`,
  ];
  return variants[Math.floor(next() * variants.length)];
}

describe("broker: frames", () => {
  it("reads the compact frames exactly as the full parse does, and nothing else", () => {
    const next = random(14);
    for (let i = 0; i < 5000; i++) {
      const text = nearCompact(next);
      // A leading space takes the full parse (JSON allows it; the compact reading does not).
      for (const parse of [parseClientFrame, parseServerFrame]) {
        assert.deepEqual(outcome(parse, text), outcome(parse, ` ${text}`), text);
      }
    }
  });

  it("reads the compact frames both sides write", () => {
    assert.deepEqual(parseClientFrame('{"op":"release","id":12}'), { op: "release", id: 12 });
    assert.deepEqual(parseServerFrame('{"op":"granted","id":0}'), { op: "granted", id: 0 });
    assert.deepEqual(parseServerFrame('{"op":"released","id":9007199254740991}'), {
      op: "released",
      id: 9007199254740991,
    });
    assert.throws(() => parseServerFrame('{"op":"granted","id":9007199254740992}'), ProtocolError);
    assert.throws(() => parseServerFrame('{"op":"granted","id":01}'), ProtocolError);
  });
});

describe("broker: frames in one TCP segment", () => {
  it("serves each after what the one before it set off has settled", async () => {
    // ws on Node emits the messages of one segment in one go, unless told not to: a release that
    // grants a waiting request, then that request's cancel, then a test, were served before the
    // grant had reached the session, so the test found the key held by the cancelled request.
    const served = new LocalState();
    const broker = await startBroker(served, { token: "frames-token" });
    const client = await TcpClient.upgraded(Number(new URL(broker.url).port));
    try {
      assert.equal((await client.hello("frames-token"))?.op, "welcome");
      const answer = async (op: string, id: number) => {
        const frame = await client.frame((frame: TcpFrame) => {
          if (frame.opcode !== Opcode.text) return false;
          const parsed = JSON.parse(frame.payload.toString("utf8"));
          return parsed.op === op && parsed.id === id;
        });
        assert.ok(frame !== undefined, `no ${op} for ${id}: the connection closed`);
        return JSON.parse(frame.payload.toString("utf8"));
      };
      client.sendText({ op: "acquire", id: 1, key: "k", exclusive: true });
      await answer("granted", 1);
      client.sendText({ op: "acquire", id: 2, key: "k", exclusive: true });
      await answer("queued", 2);
      client.write(Buffer.concat([
        encodeFrame(Opcode.text, JSON.stringify({ op: "release", id: 1 })),
        encodeFrame(Opcode.text, JSON.stringify({ op: "cancel", id: 2 })),
        encodeFrame(Opcode.text, JSON.stringify({ op: "test", id: 3, key: "k", exclusive: true })),
      ]));
      assert.deepEqual(await answer("tested", 3), { op: "tested", id: 3, free: true });
      assert.equal(served.size, 0);
    } finally {
      await client.destroy();
      await broker.close();
      await served.close();
    }
  });
});
