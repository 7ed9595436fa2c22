/**
 * Hostile input against a broker in an OS process of its own: random bytes instead of HTTP,
 * broken WebSocket framing, random text, truncated JSON, huge numbers, wrong types, unknown ops,
 * binary and oversized frames, frames before hello, wrong tokens, floods, connections cut while
 * holding. Meanwhile well-behaved clients keep working, a lock held throughout is never lost, and
 * the broker process stays up with nothing of the hostile clients left behind.
 */

import assert from "node:assert/strict";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import { type Lock, LockFailed } from "../mod.ts";
import { BrokerState, MAX_FRAME_BYTES, MAX_KEY_LENGTH } from "../backends/broker.ts";
import { clientOptions } from "./broker_env.ts";
import { Worker } from "./broker_processes.ts";
import { type Frame, RawClient } from "./broker_raw.ts";
import { encodeFrame, Opcode, TcpClient } from "./broker_tcp.ts";
import { InvariantMonitor, random } from "../testing/helpers.ts";

const TOKEN = "fuzz-token";
const FUZZ_KEYS = 6;
const SERVER_OPS = new Set([
  "welcome",
  "refused",
  "queued",
  "granted",
  "failed",
  "released",
  "lost",
  "tested",
  "error",
  "ping",
  "pong",
]);

type Next = () => number;

const pick = <T>(next: Next, items: readonly T[]): T => items[Math.floor(next() * items.length)];
const integer = (next: Next, below: number) => Math.floor(next() * below);

/** A random string of code units, lone surrogates, NULs and JSON punctuation included. */
function randomText(next: Next, length: number): string {
  const alphabet =
    '{}[]":,\\0123456789abcdefghijklmnopqrstuvwxyz \n\t\0\u00e9\u20ac\ud83d\ude00\udc00';
  let text = "";
  for (let i = 0; i < length; i++) {
    text += next() < 0.1 ? String.fromCharCode(integer(next, 0x10000)) : pick(next, [...alphabet]);
  }
  return text;
}

function randomBytes(next: Next, length: number): Uint8Array {
  return Uint8Array.from({ length }, () => integer(next, 256));
}

/** A frame that is valid, so that fuzzed sessions also hold and wait. */
function validFrame(next: Next, ids: Set<number>): Record<string, unknown> {
  const id = integer(next, 40);
  const key = `fuzz/${integer(next, FUZZ_KEYS)}`;
  switch (integer(next, 5)) {
    case 0:
    case 1:
      ids.add(id);
      return {
        op: "acquire",
        id,
        key,
        exclusive: next() < 0.5,
        ...(next() < 0.5 ? { timeout: integer(next, 20) } : {}),
      };
    case 2:
      return { op: "release", id };
    case 3:
      return { op: "cancel", id };
    default:
      return { op: "test", id: 1000 + id, key, exclusive: next() < 0.5 };
  }
}

/** A malformed or hostile text frame. */
function hostileText(next: Next, ids: Set<number>): string {
  const valid = JSON.stringify(validFrame(next, new Set()));
  switch (integer(next, 12)) {
    case 0:
      return randomText(next, integer(next, 200));
    case 1:
      return valid.slice(0, integer(next, valid.length)); // truncated JSON
    case 2:
      return pick(next, [
        '{"op":"acquire","id":1e400,"key":"fuzz/0","exclusive":true}',
        '{"op":"acquire","id":-1,"key":"fuzz/0","exclusive":true}',
        '{"op":"acquire","id":1.5,"key":"fuzz/0","exclusive":true}',
        '{"op":"acquire","id":9007199254740993,"key":"fuzz/0","exclusive":true}',
        '{"op":"acquire","id":7,"key":"fuzz/0","exclusive":true,"timeout":1e400}',
        '{"op":"acquire","id":7,"key":"fuzz/0","exclusive":true,"timeout":-1}',
        '{"op":"acquire","id":7,"key":"fuzz/0","exclusive":true,"timeout":1e300}',
        '{"op":"acquire","id":7,"key":"fuzz/0","exclusive":true,"timeout":99999999999999999999}',
        '{"op":"hello","version":1e400,"token":"x"}',
      ]);
    case 3:
      return JSON.stringify({
        op: pick(next, ["acquire", "release", "cancel", "test", "hello", "ping"]),
        id: pick(next, [null, "1", [], {}, true, -0, 2 ** 53, NaN]),
        key: pick(next, [null, 5, [], {}, true, "fuzz/1"]),
        exclusive: pick(next, [null, "yes", 0, 1, [], true]),
        timeout: pick(next, [null, "5", [], {}, -3, 1]),
        token: pick(next, [null, 5, TOKEN]),
        version: pick(next, [null, "1", 1]),
      });
    case 4:
      return JSON.stringify({
        op: pick(next, [
          "__proto__",
          "constructor",
          "toString",
          "hasOwnProperty",
          "granted",
          "welcome",
          "",
          randomText(next, 60),
        ]),
        id: integer(next, 40),
      });
    case 5:
      return pick(next, [
        "null",
        "42",
        '"acquire"',
        "[]",
        '[{"op":"ping"}]',
        "{}",
        '{"op":null}',
        '{"op":5}',
        "true",
        "",
        " ",
      ]);
    case 6:
      return `{"op":"acquire","__proto__":{"id":3,"key":"fuzz/0","exclusive":true}}`;
    case 7:
      return "[".repeat(integer(next, 100_000)); // deep nesting
    case 8:
      return JSON.stringify({
        op: "acquire",
        id: integer(next, 40),
        key: "k".repeat(MAX_KEY_LENGTH + 1),
        exclusive: true,
      });
    case 9:
      return JSON.stringify({ op: "hello", version: 1, token: TOKEN }); // hello again
    default:
      return JSON.stringify(validFrame(next, ids));
  }
}

/** One authenticated session of hostile frames; returns what it saw. */
async function hostileSession(url: string, next: Next): Promise<void> {
  const client = await RawClient.authenticated(url, TOKEN);
  const ids = new Set<number>();
  const count = integer(next, 60);
  for (let i = 0; i < count && client.open; i++) {
    const roll = next();
    if (roll < 0.02) client.send(randomBytes(next, integer(next, 100))); // binary: closed 1003
    else if (roll < 0.03) client.send("x".repeat(MAX_FRAME_BYTES + 1)); // closed 1009
    else {
      const text = hostileText(next, ids);
      client.send(text);
      // Every id an acquire frame named, valid or not: a grant must be for one of them.
      try {
        const parsed = JSON.parse(text);
        if (parsed?.op === "acquire" && typeof parsed.id === "number") ids.add(parsed.id);
      } catch {
        // not JSON
      }
    }
  }
  // Frames are handled in order: the pong (or the close) says all of the above was handled.
  client.send({ op: "ping" });
  const last = await Promise.race([client.next((frame) => frame.op === "pong"), client.closed]);
  for (const frame of client.frames) {
    assert.ok(SERVER_OPS.has(frame.op), `unexpected frame ${JSON.stringify(frame)}`);
    if (frame.op === "granted") assert.ok(ids.has(frame.id as number), "granted an unasked id");
  }
  if (typeof last !== "number") {
    // Still open: leave either politely or by cutting the connection.
    if (next() < 0.5) await client.close();
    else client.send(randomBytes(next, 8));
  }
  await client.closed;
}

/** A flood of one kind of frame on one connection. */
async function flood(url: string, kind: number): Promise<void> {
  const client = await RawClient.authenticated(url, TOKEN);
  for (let i = 0; i < 5000 && client.open; i++) {
    if (kind === 0) client.send({ op: "ping" });
    else if (kind === 1) client.send("garbage");
    else if (kind === 2) {
      client.send({ op: "acquire", id: i, key: `fuzz/${i % FUZZ_KEYS}`, exclusive: true });
    } else client.send({ op: "acquire", id: i, key: "flood", exclusive: false });
  }
  client.send({ op: "ping" });
  await Promise.race([client.next((frame) => frame.op === "pong"), client.closed]);
  for (const frame of client.frames) assert.ok(SERVER_OPS.has(frame.op), frame.op);
  if (kind === 3) {
    // Up to the limit they were granted (shared), the rest refused: nothing else.
    const granted = client.frames.filter((frame) => frame.op === "granted").length;
    const refused = client.frames.filter((frame) => frame.reason === "limit").length;
    assert.equal(granted + refused, 5000);
  }
  await client.close();
}

/** A connection that breaks the rules before (or instead of) a valid hello. */
async function unauthenticated(url: string, next: Next): Promise<void> {
  const client = await RawClient.connect(url);
  const choice = integer(next, 6);
  if (choice === 0) {
    const text = hostileText(next, new Set());
    // Anything but a hello with the right token (hostileText makes some).
    client.send(text.includes(TOKEN) ? text.replace(TOKEN, "wrong") : text);
  } else if (choice === 1) client.send({ op: "hello", version: 1, token: `${TOKEN}x` });
  else if (choice === 2) {
    client.send(pick(next, [{ op: "hello", version: 1, token: "" }, { op: "hello", version: 1 }, {
      op: "hello",
      version: 1,
      token: 42,
    }, { op: "hello", version: 1, token: "t".repeat(5000) }]));
  } else if (choice === 3) client.send(randomBytes(next, 16));
  else if (choice === 4) client.send({ op: "acquire", id: 1, key: "fuzz/0", exclusive: true });
  // choice 5: says nothing, and is closed after authTimeout.
  const code = await client.closed;
  assert.ok([4001, 4003, 1003, 1009, 1006, 1005, 0].includes(code), `closed with ${code}`);
  assert.equal(client.frames.some((frame: Frame) => frame.op === "welcome"), false);
  assert.equal(client.frames.some((frame: Frame) => frame.op === "granted"), false);
}

/** Bytes that are not HTTP, or broken WebSocket framing after a real upgrade. */
async function rawTcp(port: number, next: Next): Promise<void> {
  if (next() < 0.5) {
    const client = await TcpClient.connect(port);
    client.write(randomBytes(next, 1 + integer(next, 2000)));
    client.socket.end();
    await client.closed;
    return;
  }
  const client = await TcpClient.upgraded(port);
  const choice = integer(next, 6);
  if (choice === 0) {
    client.write(randomBytes(next, 1 + integer(next, 500)));
  } else if (choice === 1) {
    // An unmasked frame from a client is a protocol error.
    client.write(new Uint8Array([0x81, 0x02, 0x7b, 0x7d]));
  } else if (choice === 2) {
    // A frame announcing 2^62 bytes, then nothing of it.
    client.write(new Uint8Array([0x81, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]));
  } else if (choice === 4) {
    // A hello in fragments with a ping between them is still a hello; then a bogus close frame.
    const hello = JSON.stringify({ op: "hello", version: 1, token: TOKEN });
    const cut = 1 + integer(next, hello.length - 1);
    client.write(encodeFrame(Opcode.text, hello.slice(0, cut), false));
    client.write(encodeFrame(Opcode.ping, "are you there"));
    client.write(encodeFrame(0, hello.slice(cut), true)); // continuation
    const pong = await client.frame((frame) => frame.opcode === Opcode.pong);
    assert.equal(pong?.payload.toString(), "are you there");
    const welcome = await client.frame((frame) => frame.opcode === Opcode.text);
    assert.equal(JSON.parse(welcome!.payload.toString()).op, "welcome");
    client.sendText({ op: "acquire", id: 0, key: "fuzz/0", exclusive: true });
    client.write(encodeFrame(Opcode.close, new Uint8Array([0x03, 0xe7, 0xff]))); // code 999, bad UTF-8
  } else if (choice === 5) {
    // A flood of protocol-level pings around a hello, then the connection is cut.
    for (let i = 0; i < 500; i++) client.write(encodeFrame(Opcode.ping, randomBytes(next, 20)));
    const answer = await client.hello(TOKEN);
    // Deno answers every ping; Node's ws cuts a client with too many pongs pending.
    assert.ok(answer === undefined || answer.op === "welcome", JSON.stringify(answer));
    for (let i = 0; i < 500; i++) client.write(encodeFrame(Opcode.ping, randomBytes(next, 20)));
    client.sendText({ op: "acquire", id: 0, key: `fuzz/${integer(next, FUZZ_KEYS)}` });
    client.socket.destroy();
  } else {
    // Authenticated, takes locks, then cut in the middle of a frame.
    await client.hello(TOKEN);
    for (let i = 0; i < 5; i++) {
      client.sendText({ op: "acquire", id: i, key: `fuzz/${i}`, exclusive: next() < 0.5 });
    }
    client.write(encodeFrame(Opcode.text, '{"op":"ping"}').subarray(0, 5));
    client.socket.destroy();
  }
  client.socket.end();
  // The server closes broken framing; a half-sent frame is closed by our destroy above.
  if (choice === 2) client.socket.destroy();
  await client.closed;
}

describe("broker: fuzzed and hostile frames", () => {
  let broker: Worker;
  let url: string;
  before(async () => {
    // On loopback the hostile clients share the well-behaved ones' address: the brake on wrong
    // tokens per address would refuse them all (it is tested in broker_auth_failures_test.ts).
    const maxAuthFailures = 1_000_000;
    broker = new Worker("broker", [
      TOKEN,
      JSON.stringify({ authTimeout: 1000, maxErrors: 20, maxRequests: 64, maxAuthFailures }),
    ]);
    url = (await broker.line("ready ")).slice("ready ".length);
  });
  after(async () => {
    await broker.kill();
  });

  it("serves well-behaved clients and stays up, whatever others send", async () => {
    const seed = Number(process.env.SEED ?? Date.now() % 1e9);
    const next = random(seed);
    const port = Number(new URL(url).port);
    const good = new BrokerState(url, await clientOptions(TOKEN, { name: "good" }));
    const keeper = new BrokerState(url, await clientOptions(TOKEN, { name: "keeper" }));
    const kept: Lock = await keeper.getLock("good/kept");
    assert.equal(await good.testLock("good/kept"), false); // both connected before the storm

    // Well-behaved traffic, until the hostile phase is over.
    let hostileDone = false;
    const monitor = new InvariantMonitor();
    let cycles = 0;
    const worker = async (task: number) => {
      const local = random(seed + task + 1);
      while (!hostileDone || cycles < 100) {
        const key = `good/${integer(local, 3)}`;
        const exclusive = local() < 0.5;
        const state = local() < 0.5 ? good : keeper;
        const lock = await state.getLock(key, { exclusive });
        monitor.enter(key, exclusive);
        if (local() < 0.3) await new Promise((resolve) => setTimeout(resolve, 0));
        monitor.exit(key, exclusive);
        assert.equal(lock.signal.aborted, false);
        await lock.release();
        cycles++;
      }
    };
    const goodTraffic = Promise.all([0, 1, 2].map(worker));
    goodTraffic.catch(() => {}); // awaited below; never an unhandled rejection meanwhile

    const jobs: (() => Promise<void>)[] = [];
    for (let i = 0; i < 60; i++) jobs.push(() => hostileSession(url, next));
    for (let i = 0; i < 20; i++) jobs.push(() => unauthenticated(url, next));
    for (let i = 0; i < 20; i++) jobs.push(() => rawTcp(port, next));
    for (let kind = 0; kind < 4; kind++) jobs.push(() => flood(url, kind));
    // Random order, eight at a time.
    for (let i = jobs.length - 1; i > 0; i--) {
      const j = integer(next, i + 1);
      [jobs[i], jobs[j]] = [jobs[j], jobs[i]];
    }
    try {
      for (let i = 0; i < jobs.length; i += 8) {
        await Promise.all(jobs.slice(i, i + 8).map((job) => job()));
      }
    } finally {
      hostileDone = true;
    }
    await goodTraffic;
    assert.deepEqual(monitor.violations, [], `seed ${seed}`);
    assert.equal(kept.signal.aborted, false, "a lock held throughout was lost");
    assert.ok(broker.running, "the broker process died");

    // Nothing of the hostile clients is left: every key they took is free (the timeout only
    // turns a leak into a failure instead of a hang).
    for (const key of [...Array(FUZZ_KEYS).keys()].map((i) => `fuzz/${i}`).concat("flood")) {
      const lock = await good.getLock(key, { timeout: 30_000 }).catch((error) => {
        assert.ok(error instanceof LockFailed);
        assert.fail(`${key} stayed held after its hostile holder left (seed ${seed})`);
      });
      await lock.release();
    }
    broker.send("size");
    assert.match(await broker.line("size "), /^size 1 /, "only good/kept is held");
    await kept.release();
    await good.close();
    await keeper.close();
    // A newcomer is served as usual, and the broker exits cleanly when asked to.
    const fresh = new BrokerState(url, await clientOptions(TOKEN));
    assert.equal(await fresh.testLock("good/kept"), true);
    await (await fresh.getLock("fuzz/0", { timeout: 0 })).release();
    await fresh.close();
    assert.equal(await broker.end(), 0);
  });
});
