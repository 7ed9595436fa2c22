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
import { macrotask } from "./helpers.ts";
import {
  aborted,
  adminClient,
  advisoryLocksOf,
  DATABASE_URL,
  lockPids,
  postgresSkip,
  terminate,
  testState,
  within,
} from "./postgres_env.ts";

const skip = await postgresSkip();

/** A TCP proxy to the database that can go silent: it then drops every byte, closing nothing. */
class SilentProxy {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  silent = false;

  constructor(target: URL) {
    this.#server = createServer((client) => {
      const upstream = new (client.constructor as typeof Socket)();
      upstream.connect(Number(target.port || 5432), target.hostname);
      for (const [from, to] of [[client, upstream], [upstream, client]]) {
        this.#sockets.add(from);
        from.on("data", (chunk) => {
          if (!this.silent) to.write(chunk);
        });
        from.on("error", () => to.destroy());
        from.on("close", () => {
          this.#sockets.delete(from);
          to.destroy();
        });
      }
    });
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
    const proxy = new SilentProxy(new URL(DATABASE_URL));
    const url = await proxy.start(DATABASE_URL);
    const state = new PostgresState(url, {
      namespace,
      heartbeatInterval: 50,
      clientOptions: { connection: { application_name: app } },
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

  it("keeps its locks when the event loop was blocked for longer than the interval", async () => {
    const app = "ss-test-heartbeat-blocked";
    const state = testState(app, { namespace, heartbeatInterval: 10 });
    try {
      const locks = [];
      for (let i = 0; i < 25; i++) {
        const lock = await state.getLock(`b/${i}`);
        locks.push(lock);
        // Block at varying points of the heartbeat cycle, for several intervals.
        await macrotask((i * 7) % 10);
        const until = performance.now() + 40;
        while (performance.now() < until) {
          // Synchronous work: no timer, no I/O runs.
        }
        // A few heartbeat rounds after the block.
        await macrotask(25);
        assert.ok(!lock.signal.aborted, `lost after block ${i}: ${String(lock.signal.reason)}`);
      }
      assert.ok(locks.every((lock) => !lock.signal.aborted));
      assert.equal((await advisoryLocksOf(admin!, app)).length, 25);
      await Promise.all(locks.map((lock) => lock.release()));
    } finally {
      await state.close();
    }
  });
});
