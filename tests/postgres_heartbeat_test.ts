/**
 * Heartbeats: a connection that goes silent (a network loss: nothing is closed, nothing answers)
 * loses its locks with LockLost, while a busy process whose event loop was blocked for longer
 * than the heartbeat interval keeps them.
 */

import assert from "node:assert/strict";
import { createServer, type Server, type Socket } from "node:net";
import { after, describe, it } from "node:test";
import { LockLost } from "../mod.ts";
import { PostgresState } from "../backends/postgres.ts";
import { macrotask } from "../testing/helpers.ts";
import {
  aborted,
  adminClient,
  advisoryLocksOf,
  DATABASE_URL,
  lockPids,
  postgresSkip,
  runName,
  terminate,
  within,
} from "./postgres_env.ts";

const skip = await postgresSkip();

/**
 * A TCP proxy to the database that can go silent (it then drops every byte, closing nothing), or
 * hold the server's answers back until {@link Proxy.flush}.
 */
class Proxy {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #held: [Socket, Uint8Array][] = [];
  #onHeld: (() => void) | undefined;
  silent = false;
  hold = false;

  constructor(target: URL) {
    this.#server = createServer((client) => {
      const upstream = new (client.constructor as typeof Socket)();
      upstream.connect(Number(target.port || 5432), target.hostname);
      for (const [from, to] of [[client, upstream], [upstream, client]]) {
        this.#sockets.add(from);
        from.on("data", (chunk: Uint8Array) => {
          if (this.silent) return;
          if (this.hold && from === upstream) {
            this.#held.push([to, chunk]);
            this.#onHeld?.();
          } else {
            to.write(chunk);
          }
        });
        // A lost network tells the other side nothing: while silent, a close is not passed on.
        from.on("error", () => this.silent || to.destroy());
        from.on("close", () => {
          if (!this.silent) this.#sockets.delete(from);
          if (!this.silent) to.destroy();
        });
      }
    });
  }

  /** Resolves once an answer from the server is being held back. */
  held(): Promise<void> {
    if (this.#held.length > 0) return Promise.resolve();
    return new Promise((resolve) => this.#onHeld = resolve);
  }

  /** Stops holding answers back and passes on the held ones. */
  flush(): void {
    this.hold = false;
    this.#onHeld = undefined;
    for (const [to, chunk] of this.#held.splice(0)) to.write(chunk);
  }

  /** Listens on a free port of 127.0.0.1 and returns the URL to connect through. */
  async start(url: string): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    const { port } = this.#server.address() as { port: number };
    const proxied = new URL(url);
    proxied.hostname = "127.0.0.1";
    proxied.port = String(port);
    return proxied.href;
  }

  async stop(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}

describe("PostgresState heartbeats", { skip }, () => {
  const admin = skip ? undefined : adminClient();
  after(() => admin?.end());
  const namespace = `heartbeat-${Date.now()}`;

  it("loses the locks of a connection that went silent, and works again", async () => {
    const app = "ss-test-heartbeat-silent";
    const proxy = new Proxy(new URL(DATABASE_URL));
    const url = await proxy.start(DATABASE_URL);
    const state = new PostgresState(url, {
      namespace,
      heartbeatInterval: 50,
      clientOptions: { connection: { application_name: runName(app) } },
    });
    try {
      const locks = await Promise.all(["s/1", "s/2", "s/3"].map((key) => state.getLock(key)));
      const holders = await lockPids(admin!, app, true);
      proxy.silent = true;
      const reasons = await within(
        Promise.all(locks.map((lock) => aborted(lock.signal))),
        "the silent connection's locks lost",
      );
      assert.ok(reasons.every((reason) => reason instanceof LockLost));
      // The server still holds them for the silent backend, until an operator or TCP ends it.
      assert.equal((await advisoryLocksOf(admin!, app)).filter((l) => l.granted).length, 3);
      await terminate(admin!, holders);
      proxy.silent = false;
      const again = await state.getLock("s/1", { timeout: 5000 });
      assert.ok(!again.signal.aborted);
      await again.release();
    } finally {
      await state.close();
      await proxy.stop();
    }
  });

  it("keeps its locks when heartbeat answers come late (slow network, busy event loop)", async () => {
    const app = "ss-test-heartbeat-late";
    const interval = 100;
    const proxy = new Proxy(new URL(DATABASE_URL));
    const url = await proxy.start(DATABASE_URL);
    const state = new PostgresState(url, {
      namespace,
      heartbeatInterval: interval,
      clientOptions: { connection: { application_name: runName(app) } },
    });
    try {
      const lock = await state.getLock("late");
      for (let i = 0; i < 4; i++) {
        // The next heartbeat's answer arrives after a while, but the event loop is busy then
        // and the next heartbeat tick is late: when the loop is free again, the timer may run
        // before the answer is read. (Odd rounds: the answer alone is late, by a fraction.)
        proxy.hold = true;
        await proxy.held();
        await macrotask(0.3 * interval);
        proxy.flush();
        if (i % 2 === 0) {
          const until = performance.now() + 1.1 * interval;
          while (performance.now() < until) {
            // Synchronous work: no timer, no I/O runs.
          }
        }
        // A few heartbeat rounds after it.
        await macrotask(3 * interval);
        assert.ok(!lock.signal.aborted, `lost after round ${i}: ${String(lock.signal.reason)}`);
      }
      assert.equal((await advisoryLocksOf(admin!, app)).length, 1);
      await lock.release();
    } finally {
      await state.close();
      await proxy.stop();
    }
  });
});
