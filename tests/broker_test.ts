import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { LocalState, type Lock, LockFailed, LockLost, type LockRequest } from "../mod.ts";
import { brokerHandler, BrokerState, MAX_KEY_LENGTH } from "../backends/broker.ts";
import { serveBroker } from "../backends/broker_node.ts";
import { clientOptions, type RunningBroker, startBroker } from "./broker_env.ts";
import { startFreezingProxy } from "./broker_proxy.ts";
import { RawClient } from "./broker_raw.ts";
import { random } from "../testing/helpers.ts";

const TOKEN = "broker-test-token";

/** Resolves with the signal's reason once it aborts. */
function aborted(signal: AbortSignal): Promise<unknown> {
  if (signal.aborted) return Promise.resolve(signal.reason);
  return new Promise((resolve) => {
    signal.addEventListener("abort", () => resolve(signal.reason), { once: true });
  });
}

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe("broker: construction", () => {
  it("refuses an empty or missing token, bad URLs and bad options with TypeError/RangeError", async () => {
    const bad = (value: unknown) => value as never;
    assert.throws(() => new BrokerState("ws://127.0.0.1:1", { token: "" }), TypeError);
    assert.throws(() => new BrokerState("ws://127.0.0.1:1", bad({})), TypeError);
    assert.throws(() => new BrokerState("ws://127.0.0.1:1", bad(undefined)), TypeError);
    assert.throws(() => new BrokerState("ws://127.0.0.1:1", { token: bad(42) }), TypeError);
    // A WebSocket class is needed where there is no global one (Node 20); it is not called here.
    const { WebSocket } = await clientOptions("t");
    assert.throws(() => new BrokerState("not a url", { token: "t", WebSocket }), TypeError);
    assert.throws(
      () => new BrokerState("ftp://example.com/", { token: "t", WebSocket }),
      TypeError,
    );
    assert.throws(
      () => new BrokerState("ws://127.0.0.1:1", { token: "t", heartbeatInterval: 0, WebSocket }),
      RangeError,
    );
    assert.throws(
      () => new BrokerState("ws://127.0.0.1:1", { token: "t", WebSocket: bad("not a class") }),
      TypeError,
    );
    assert.throws(() => brokerHandler(new LocalState(), { token: "" }), TypeError);
    assert.throws(() => brokerHandler(new LocalState(), bad({})), TypeError);
    assert.throws(() => brokerHandler(bad({}), { token: "t" }), TypeError);
    assert.throws(
      () => brokerHandler(new LocalState(), { token: "t", maxRequests: 0 }),
      RangeError,
    );
  });

  it("refuses unknown options by name, in the client, the handler and serveBroker", async () => {
    const { WebSocket } = await clientOptions("t");
    assert.throws(
      () => new BrokerState("ws://127.0.0.1:1", { token: "t", WebSocket, heartBeat: 5 } as never),
      {
        name: "TypeError",
        message: 'unknown option "heartBeat" in BrokerState options ' +
          "(known: token, WebSocket, heartbeatInterval, name)",
      },
    );
    assert.throws(
      () => new BrokerState("ws://127.0.0.1:1", { token: "t", WebSocket: "ws" as never }),
      {
        name: "TypeError",
        message: 'option "WebSocket" in BrokerState options must be a WebSocket class, got "ws"',
      },
    );
    assert.throws(
      () => new BrokerState("ws://127.0.0.1:1", { token: "t", WebSocket, heartbeatInterval: 0 }),
      {
        name: "RangeError",
        message: 'option "heartbeatInterval" in BrokerState options must be a number of ' +
          "milliseconds > 0 and < 2^31, got 0",
      },
    );
    assert.throws(() => brokerHandler(new LocalState(), { token: "t", maxRequest: 5 } as never), {
      name: "TypeError",
      message: /^unknown option "maxRequest" in brokerHandler options \(known: token, /,
    });
    assert.throws(() => brokerHandler(new LocalState(), { token: "t", maxErrors: "9" as never }), {
      name: "TypeError",
      message: 'option "maxErrors" in brokerHandler options must be an integer >= 1, got "9"',
    });
    const state = new LocalState();
    await assert.rejects(serveBroker({ state, token: "t", prot: 8787 } as never), {
      name: "TypeError",
      message:
        /^unknown option "prot" in serveBroker options \(known: state, port, hostname, token, /,
    });
    await assert.rejects(serveBroker({ state, token: "t", port: 70000 }), {
      name: "RangeError",
      message: 'option "port" in serveBroker options must be an integer from 0 to 65535, got 70000',
    });
    await assert.rejects(serveBroker({ state, token: "t", maxRequests: 0 }), RangeError);
  });

  it("accepts http(s) URLs as ws(s) and connects lazily, on the first request", async () => {
    const state = new BrokerState("https://broker.invalid/x", await clientOptions("t"));
    assert.equal(state.url, "wss://broker.invalid/x");
    await state.close(); // never connected: nothing to do
    await assert.rejects(state.getLock("k"), LockFailed);
  });
});

describe("broker: a served state", () => {
  const served = new LocalState({ name: "served" });
  let broker: RunningBroker;
  before(async () => {
    broker = await startBroker(served, { token: TOKEN, authTimeout: 200, maxRequests: 8 });
  });
  after(async () => {
    await broker.close();
    await served.close();
  });

  it("answers a plain HTTP request with 426 Upgrade Required", async () => {
    const response = await fetch(broker.url.replace("ws:", "http:"));
    assert.equal(response.status, 426);
    assert.match(await response.text(), /WebSocket/);
  });

  it("fails requests at once with LockFailed when the token is wrong", async () => {
    const state = new BrokerState(broker.url, await clientOptions("not-the-token"));
    const holder = new BrokerState(broker.url, await clientOptions(TOKEN));
    const lock = await holder.getLock("auth/k");
    // No timeout: a refused token must not leave this waiting for ever.
    const error = await state.getLock("auth/k").then(() => assert.fail("granted"), (e) => e);
    assert.ok(error instanceof LockFailed);
    assert.equal(error.reason, "refused");
    assert.match(error.message, /refused/);
    await assert.rejects(state.testLock("auth/k"), LockFailed);
    await assert.rejects(state.withLock("auth/free", () => 1), LockFailed);
    await lock.release();
    await state.close();
    await holder.close();
    assert.equal(served.size, 0);
  });

  it("closes a connection whose first frame is not hello, or that says nothing", async () => {
    const eager = await RawClient.connect(broker.url);
    eager.send({ op: "acquire", id: 1, key: "auth/eager", exclusive: true });
    assert.equal(await eager.closed, 4001);
    assert.equal(eager.frames.some((frame) => frame.op === "granted"), false);
    const mute = await RawClient.connect(broker.url);
    assert.equal(await mute.closed, 4001); // after authTimeout (200 ms here)
    const wrong = await RawClient.connect(broker.url);
    wrong.send({ op: "hello", version: 1, token: "nope" });
    assert.equal((await wrong.next()).op, "refused");
    assert.equal(await wrong.closed, 4001);
    const empty = await RawClient.connect(broker.url);
    empty.send({ op: "hello", version: 1 });
    assert.equal(await empty.closed, 4001);
    assert.equal(served.size, 0);
  });

  it("refuses a protocol version it does not speak", async () => {
    const client = await RawClient.connect(broker.url);
    client.send({ op: "hello", version: 99, token: TOKEN });
    assert.equal((await client.next()).op, "refused");
    assert.equal(await client.closed, 4003);
  });

  it("takes keys up to the limit (NULs cost 6 bytes each) and refuses longer ones", async () => {
    const state = new BrokerState(broker.url, await clientOptions(TOKEN));
    const worst = "\0".repeat(MAX_KEY_LENGTH);
    const lock = await state.getLock(worst, { timeout: 0 });
    assert.equal(lock.key, worst);
    assert.equal(await state.testLock(worst), false);
    const tooLong = `${worst}x`;
    await assert.rejects(state.getLock(tooLong), LockFailed);
    await assert.rejects(state.testLock(tooLong), LockFailed);
    await lock.release();
    assert.equal(await state.testLock(worst), true);
    await state.close();
  });

  it("refuses requests beyond maxRequests per connection, and serves the rest", async () => {
    const state = new BrokerState(broker.url, await clientOptions(TOKEN));
    const locks = await Promise.all(
      Array.from({ length: 8 }, (_, i) => state.getLock(`limit/${i}`)),
    );
    const error = await state.getLock("limit/9").then(() => assert.fail("granted"), (e) => e);
    assert.ok(error instanceof LockFailed);
    assert.match(error.message, /too many requests/);
    await locks[0].release();
    await (await state.getLock("limit/9", { timeout: 0 })).release();
    for (const lock of locks) await lock.release();
    await state.close();
    assert.equal(served.size, 0);
  });

  it("leaks no lock when grants race with timeouts and aborts", async () => {
    const a = new BrokerState(broker.url, await clientOptions(TOKEN));
    const b = new BrokerState(broker.url, await clientOptions(TOKEN));
    const next = random(2024);
    for (let round = 0; round < 200; round++) {
      const key = `race/${round % 3}`;
      const holder = await a.getLock(key);
      const controller = new AbortController();
      const request = b.getLock(key, {
        timeout: next() < 0.5 ? Math.floor(next() * 3) : undefined,
        signal: controller.signal,
      }).then((lock) => lock.release(), (error) => assert.ok(error instanceof LockFailed));
      // Release and give up at nearly the same moment, in either order.
      if (next() < 0.5) {
        holder.release();
        controller.abort();
      } else {
        controller.abort();
        holder.release();
      }
      await request;
    }
    await a.close();
    await b.close();
    assert.equal(served.size, 0, "a lock granted after the client gave up stayed held");
  });

  it("fails requests with LockFailed when the broker cannot be reached", async () => {
    const state = new BrokerState(
      `ws://127.0.0.1:${await closedPort()}`,
      await clientOptions(TOKEN),
    );
    const error = await state.getLock("k").then(() => assert.fail("granted"), (e) => e);
    assert.ok(error instanceof LockFailed);
    assert.equal(error.reason, "unreachable");
    assert.match(error.message, /could not be reached|lost/);
    await assert.rejects(state.testLock("k"), LockFailed);
    await state.close();
  });
});

/**
 * Heartbeat interval of the half-open tests. A side declares the other dead after two silent
 * intervals, so the interval must outlast an event-loop stall of a loaded CI machine (stalls of
 * over 200 ms were seen there with 40 ms), or a live connection is declared dead.
 */
const HALF_OPEN_HEARTBEAT = 250;

describe("broker: losing the connection", () => {
  it("when the broker stops: held locks are lost, waits fail, and new requests reconnect", async () => {
    const served = new LocalState();
    let broker = await startBroker(served, { token: TOKEN });
    const port = broker.port;
    const a = new BrokerState(broker.url, await clientOptions(TOKEN));
    const b = new BrokerState(broker.url, await clientOptions(TOKEN));
    const held = await a.getLock("stop/k");
    const shared = await a.getLock("stop/s", { exclusive: false });
    const waiting = b.getLock("stop/k").then(() => assert.fail("granted"), (e) => e);
    // Frames on one connection are handled in order: once this answers, the wait is queued.
    assert.equal(await b.testLock("stop/k"), false);
    await broker.close();
    const reason = await aborted(held.signal);
    assert.ok(reason instanceof LockLost);
    assert.equal(reason.reason, "disconnected");
    assert.equal(reason.key, "stop/k");
    assert.ok(reason.cause !== undefined, "the reason carries the cause");
    assert.ok((await aborted(shared.signal)) instanceof LockLost);
    const failure = await waiting;
    assert.ok(failure instanceof LockFailed);
    assert.equal(failure.reason, "unreachable");
    assert.equal(served.size, 0, "the broker released what its clients held");
    await held.release(); // harmless after the loss
    // The broker is gone: new requests fail, they do not hang.
    await assert.rejects(a.getLock("stop/k"), LockFailed);
    // A broker comes back on the same port: new requests connect again, nothing was re-acquired.
    const served2 = new LocalState();
    broker = await startBroker(served2, { token: TOKEN }, port);
    assert.equal(await a.testLock("stop/k"), true);
    const again = await b.getLock("stop/k", { timeout: 0 });
    assert.equal(served2.size, 1);
    await again.release();
    await a.close();
    await b.close();
    await broker.close();
    assert.equal(served2.size, 0);
  });

  it("passes on the loss of a lock that a served state of its own makes (its signal only)", async () => {
    // Issue 14: the package's own locks tell the session of a loss directly; any other
    // StateABC's lock is watched through its signal. One whose locks are plain objects:
    const controllers: AbortController[] = [];
    class PlainLocks extends LocalState {
      protected override async acquire(key: string, request: LockRequest): Promise<Lock> {
        const inner = await super.acquire(key, request);
        const controller = new AbortController();
        controllers.push(controller);
        return {
          key,
          exclusive: inner.exclusive,
          signal: controller.signal,
          release: () => inner.release(),
          fencingToken: () => inner.fencingToken(),
          [Symbol.asyncDispose]: () => inner.release(),
        };
      }
    }
    const served = new PlainLocks();
    const broker = await startBroker(served, { token: TOKEN });
    const state = new BrokerState(broker.url, await clientOptions(TOKEN));
    const kept = await state.getLock("plain/kept");
    const lost = await state.getLock("plain/lost");
    controllers[1].abort(new Error("taken away"));
    const reason = await aborted(lost.signal);
    assert.ok(reason instanceof LockLost);
    assert.match(String((reason.cause as Error).message), /taken away/);
    assert.equal(kept.signal.aborted, false);
    await kept.release(); // released, not lost: its listener is gone
    controllers[0].abort(new Error("too late"));
    assert.equal(kept.signal.aborted, false);
    await lost.release();
    await state.close();
    await broker.close();
    await served.close();
  });

  it("passes a LockLost of the served state on to the client's lock", async () => {
    const served = new LocalState();
    const broker = await startBroker(served, { token: TOKEN });
    const state = new BrokerState(broker.url, await clientOptions(TOKEN));
    const lock = await state.getLock("lost/k");
    await served.close();
    const reason = await aborted(lock.signal);
    assert.ok(reason instanceof LockLost);
    assert.match(String((reason.cause as Error).message), /closed/);
    const error = await state.getLock("lost/k").then(() => assert.fail("granted"), (e) => e);
    assert.ok(error instanceof LockFailed);
    assert.match(error.message, /state is closed/);
    await lock.release();
    await state.close();
    await broker.close();
  });

  it("notices a half-open connection on both sides through heartbeats", async () => {
    const served = new LocalState();
    const broker = await startBroker(served, {
      token: TOKEN,
      heartbeatInterval: HALF_OPEN_HEARTBEAT,
    });
    const proxy = await startFreezingProxy(broker.port);
    const viaProxy = new BrokerState(
      proxy.url,
      await clientOptions(TOKEN, { heartbeatInterval: HALF_OPEN_HEARTBEAT }),
    );
    const direct = new BrokerState(broker.url, await clientOptions(TOKEN));
    const lock = await viaProxy.getLock("half-open/k");
    const waiter = direct.getLock("half-open/k");
    proxy.freeze(); // no byte and no close passes any more
    // The client notices: its lock is lost.
    const reason = await aborted(lock.signal);
    assert.ok(reason instanceof LockLost);
    assert.match(reason.message, /no word/);
    // The broker notices: it released the lock, so the waiter gets it.
    const handedOver = await waiter;
    assert.equal(handedOver.key, "half-open/k");
    await handedOver.release();
    await viaProxy.close();
    await direct.close();
    await proxy.close();
    await broker.close();
    assert.equal(served.size, 0);
  });

  it("reconnects for new requests after a loss, and keeps serving locks taken after it", async () => {
    const served = new LocalState();
    const broker = await startBroker(served, {
      token: TOKEN,
      heartbeatInterval: HALF_OPEN_HEARTBEAT,
    });
    const proxy = await startFreezingProxy(broker.port);
    const state = new BrokerState(
      proxy.url,
      await clientOptions(TOKEN, { heartbeatInterval: HALF_OPEN_HEARTBEAT }),
    );
    const first: Lock = await state.getLock("reconnect/k");
    proxy.freeze();
    await aborted(first.signal);
    await proxy.close(); // the proxy port now refuses: new requests fail, not hang
    await assert.rejects(state.getLock("reconnect/k"), LockFailed);
    await state.close();
    const fresh = new BrokerState(broker.url, await clientOptions(TOKEN));
    await (await fresh.getLock("reconnect/k", { timeout: 0 })).release();
    await fresh.close();
    await broker.close();
    assert.equal(served.size, 0);
  });
});
