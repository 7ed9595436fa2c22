/**
 * A BrokerState whose WebSocket throws from `readyState`, `send` and `close`, as Cloudflare
 * Workers' does when a request touches a socket that another request opened ("Cannot perform I/O
 * on behalf of a different request", docs/runtimes.md). Every request on it must fail with
 * `LockFailed` (never the socket's own error), held locks be lost with `LockLost`, the next request
 * open a fresh connection, and `close()` resolve.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { LocalState, LockFailed, LockLost } from "../mod.ts";
import { BrokerState, type WebSocketConstructor, type WebSocketLike } from "../backends/broker.ts";
import { clientOptions, type RunningBroker, startBroker } from "./broker_env.ts";

const TOKEN = "throwing-socket-token";
const IO_ERROR = "Cannot perform I/O on behalf of a different request";

/** WebSockets of the runtime's class that throw on every use once `poison()` was called. */
function throwingWebSockets(Base: WebSocketConstructor) {
  const made: { real: WebSocketLike; poisoned: boolean }[] = [];
  class ThrowingWebSocket implements WebSocketLike {
    readonly #entry: { real: WebSocketLike; poisoned: boolean };
    constructor(url: string) {
      this.#entry = { real: new Base(url), poisoned: false };
      made.push(this.#entry);
    }
    #check(): void {
      if (this.#entry.poisoned) throw new Error(IO_ERROR);
    }
    get readyState(): number {
      this.#check();
      return this.#entry.real.readyState;
    }
    send(data: string): void {
      this.#check();
      this.#entry.real.send(data);
    }
    close(code?: number, reason?: string): void {
      this.#check();
      this.#entry.real.close(code, reason);
    }
    addEventListener(type: string, listener: (event: unknown) => void): void {
      this.#entry.real.addEventListener(type, listener);
    }
  }
  return {
    WebSocket: ThrowingWebSocket,
    /** How many sockets were made. */
    get count(): number {
      return made.length;
    },
    /** Makes every socket made so far throw. */
    poison(): void {
      for (const entry of made) entry.poisoned = true;
    },
    /** Closes the real sockets (the broker then frees what they held). */
    closeAll(): void {
      for (const entry of made) entry.real.close();
    },
  };
}

function assertFailed(error: unknown, key: string): true {
  assert.ok(error instanceof LockFailed, `not a LockFailed: ${String(error)}`);
  assert.equal(error.reason, "unreachable");
  assert.equal(error.key, key);
  assert.match(String((error.cause as Error)?.message), /Cannot perform I\/O/);
  return true;
}

describe("broker client: a WebSocket that throws on every use", () => {
  const served = new LocalState({ name: "served" });
  let broker: RunningBroker;
  let sockets: ReturnType<typeof throwingWebSockets>;
  let state: BrokerState;

  before(async () => {
    broker = await startBroker(served, { token: TOKEN });
    const options = await clientOptions(TOKEN);
    const Base = options.WebSocket ??
      (globalThis as unknown as { WebSocket: WebSocketConstructor }).WebSocket;
    sockets = throwingWebSockets(Base);
    state = new BrokerState(broker.url, { token: TOKEN, WebSocket: sockets.WebSocket });
  });
  after(async () => {
    await state.close();
    sockets.closeAll();
    await broker.close();
    await served.close();
  });

  it("fails requests with LockFailed, opens a fresh connection next time, and closes", async () => {
    await (await state.getLock("a")).release();
    assert.equal(sockets.count, 1);

    sockets.poison();
    await assert.rejects(state.getLock("a"), (error) => assertFailed(error, "a"));
    // The connection ended: the next request opens another, and gets the lock on the broker.
    const lock = await state.getLock("a");
    assert.equal(sockets.count, 2);
    assert.equal(await served.testLock("a"), false);
    await lock.release();
    assert.equal(await served.testLock("a"), true);

    sockets.poison();
    await assert.rejects(state.testLock("a"), (error) => assertFailed(error, "a"));
    assert.equal(await state.testLock("a"), true);
    assert.equal(sockets.count, 3);
  });

  it("loses a held lock with LockLost, and close() resolves, when the socket throws", async () => {
    const lock = await state.getLock("held");
    sockets.poison();
    await assert.rejects(state.getLock("next"), (error) => assertFailed(error, "next"));
    // The connection is gone, and the lock with it.
    assert.ok(lock.signal.reason instanceof LockLost, String(lock.signal.reason));
    assert.equal(lock.signal.reason.reason, "disconnected");
    await lock.release(); // harmless

    const other = await state.getLock("other");
    const busy = await served.getLock("busy");
    const waiting = state.getLock("busy");
    waiting.catch(() => {});
    // Answered in order on the one connection: once it is, the request above was sent.
    assert.equal(await state.testLock("probe"), true);
    const count = sockets.count;
    sockets.poison();
    await state.close(); // never rejects, whatever the socket does
    assert.equal(sockets.count, count, "close() opened a connection");
    assert.ok(other.signal.reason instanceof LockLost, String(other.signal.reason));
    assert.equal(other.signal.reason.reason, "closed");
    // Closing, not the socket, is why the waiting request failed.
    await assert.rejects(waiting, { name: "LockFailed", reason: "closed" });
    await busy.release();
    await assert.rejects(state.getLock("other"), { name: "LockFailed", reason: "closed" });
  });
});
