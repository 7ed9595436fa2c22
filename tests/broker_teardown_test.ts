/**
 * Connections the broker ends are closed at the TCP level promptly (issue 9, item 6), also when
 * the client never answers the close frame: after the auth timeout, a heartbeat timeout, a wrong
 * token, or the broker's own close. Each client here is raw TCP that reads but never replies, and
 * each test awaits the TCP close itself, bounded by a generous deadline so that it cannot hang.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { LocalState } from "../mod.ts";
import { CloseCode } from "../backends/broker.ts";
import { CLOSE_GRACE } from "../backends/broker/socket_close.ts";
import { isDeno, type RunningBroker, startBroker } from "./broker_env.ts";
import { Opcode, TcpClient } from "./broker_tcp.ts";

const TOKEN = "teardown-token";
const AUTH_TIMEOUT = 300;
const HEARTBEAT_INTERVAL = 200;
/** Far beyond what the broker promises (the timeout, then CLOSE_GRACE): only a hang exceeds it. */
const DEADLINE = AUTH_TIMEOUT + 3 * HEARTBEAT_INTERVAL + CLOSE_GRACE + 5000;

/** `true` if `closed` settles within `ms`, `false` if the deadline passes first. */
async function settlesWithin(closed: Promise<void>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([closed.then(() => true), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** The code of the broker's close frame (the client never answers it). */
async function closeCode(client: TcpClient): Promise<number | undefined> {
  const frame = await client.frame((frame) => frame.opcode === Opcode.close);
  return frame === undefined ? undefined : frame.payload.readUInt16BE(0);
}

describe("broker: ended connections are closed at the TCP level", () => {
  const served = new LocalState({ name: "served" });
  let broker: RunningBroker;
  const clients: TcpClient[] = [];
  before(async () => {
    broker = await startBroker(served, {
      token: TOKEN,
      authTimeout: AUTH_TIMEOUT,
      heartbeatInterval: HEARTBEAT_INTERVAL,
    });
  });
  after(async () => {
    await Promise.all(clients.map((client) => client.destroy()));
    await broker.close();
    await served.close();
  });

  /** An upgraded raw connection that is destroyed after the test whatever happens. */
  async function connect(): Promise<TcpClient> {
    const client = await TcpClient.upgraded(broker.port);
    clients.push(client);
    return client;
  }

  it("after the auth timeout, for a client that sends nothing and ignores the close frame", async () => {
    const client = await connect();
    assert.equal(await closeCode(client), CloseCode.unauthorized);
    assert.ok(await settlesWithin(client.closed, DEADLINE), "the TCP connection is still open");
  });

  it("after a heartbeat timeout, for a client that went silent while holding a lock", async () => {
    const client = await connect();
    assert.equal((await client.hello(TOKEN))?.op, "welcome");
    client.sendText({ op: "acquire", id: 1, key: "teardown/held", exclusive: true });
    await client.frame((frame) => frame.payload.toString().includes('"granted"'));
    // From now on the client neither pings nor answers anything.
    assert.equal(await closeCode(client), CloseCode.heartbeatTimeout);
    assert.ok(await settlesWithin(client.closed, DEADLINE), "the TCP connection is still open");
    assert.equal(await served.testLock("teardown/held"), true);
  });

  it("after a wrong token, for a client that ignores the close frame", async () => {
    const client = await connect();
    assert.deepEqual(await client.hello("wrong"), { op: "refused", message: "wrong token" });
    assert.equal(await closeCode(client), CloseCode.unauthorized);
    assert.ok(await settlesWithin(client.closed, DEADLINE), "the TCP connection is still open");
  });

  it("when the handler closes, and close() resolves once such clients are cut off", async () => {
    const own = await startBroker(served, { token: TOKEN, heartbeatInterval: 60_000 });
    try {
      const client = await TcpClient.upgraded(own.port);
      clients.push(client);
      assert.equal((await client.hello(TOKEN))?.op, "welcome");
      // The handler alone, not the server: stopping a server may cut its connections anyway.
      assert.ok(await settlesWithin(own.handler.close(), DEADLINE), "close() did not resolve");
      assert.equal(await closeCode(client), CloseCode.goingAway);
      assert.ok(await settlesWithin(client.closed, DEADLINE), "the TCP connection is still open");
    } finally {
      await own.close();
    }
  });

  it("for an HTTP request whose headers never finish, after the auth timeout", {
    skip: isDeno
      ? "Deno.serve cannot time out a request whose headers never finish (denoland/deno#3515; " +
        "measured on Deno 2.9: still open after 70 s); the shipped broker (shared-state broker) survives the EMFILE " +
        "such a flood causes instead"
      : false,
  }, async () => {
    const client = await TcpClient.connect(broker.port);
    clients.push(client);
    client.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n`);
    assert.ok(await settlesWithin(client.closed, DEADLINE), "the TCP connection is still open");
  });
});
