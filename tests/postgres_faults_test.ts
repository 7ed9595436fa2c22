/**
 * PostgresState under the messy faults of production (issue 9), reproduced on loopback by
 * tests/fault_proxy.ts: a server that accepts and drops, a server that never answers, a network
 * that goes silent (for every connection, or for one), and an operator ending a backend. Every
 * request must settle within the documented bound, close() must be prompt, and nothing may stay
 * in PostgreSQL's queue or hold a lock that nobody knows about.
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { LockFailed } from "../mod.ts";
import { PostgresState } from "../backends/postgres.ts";
import type { LockMode } from "../backends/postgres.ts";
import { scriptCommand } from "./child_script.ts";
import { type AcceptMode, FaultProxy } from "./fault_proxy.ts";
import {
  adminClient,
  DATABASE_URL,
  eventually,
  lockPids,
  postgresSkip,
  runName,
  terminate,
  testState,
  waitingInPostgres,
  within,
} from "./postgres_env.ts";

const skip = await postgresSkip();

/** Runs tests/postgres_exit_child.ts against `url`; resolves with its report once it exited. */
async function runExitChild(url: string, request: string) {
  const { command, args } = scriptCommand("postgres_exit_child", [url, request]);
  const child = spawn(command, args, {
    cwd: fileURLToPath(new URL("..", import.meta.url)),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk) => stdout += chunk);
  child.stderr.on("data", (chunk) => stderr += chunk);
  const code = await within(
    new Promise<number | null>((resolve) => child.on("exit", resolve)),
    `the child (${request}) exiting by itself after close()`,
    15_000,
  ).catch((error) => {
    child.kill("SIGKILL");
    throw error;
  });
  assert.equal(code, 0, stderr);
  return { ...JSON.parse(stdout.trim().split("\n").at(-1)!), stderr };
}

/** Resolves with the error `promise` rejects with; fails the test if it fulfils. */
async function rejection(promise: Promise<unknown>, what: string): Promise<unknown> {
  try {
    await within(promise, what);
  } catch (error) {
    if (error instanceof Error && error.message.startsWith("hung:")) throw error;
    return error;
  }
  assert.fail(`${what}: it succeeded`);
}

describe("PostgresState under messy faults (issue 9)", { skip }, () => {
  const admin = skip ? undefined : adminClient();
  after(() => admin?.end());
  const namespace = `faults-${Date.now()}`;

  /** A state whose connections all go through `proxy`, with short heartbeats. */
  function proxiedState(proxy: FaultProxy, app: string, mode: LockMode = "session") {
    return new PostgresState(proxy.url(DATABASE_URL), {
      namespace,
      mode,
      heartbeatInterval: 100,
      clientOptions: { connection: { application_name: runName(app) } },
    });
  }

  const servers: [AcceptMode, string][] = [
    ["drop", "accepts and drops connections"],
    ["blackhole", "accepts connections and never answers"],
  ];
  for (const [mode, what] of servers) {
    for (const request of ["wait", "timeout", "test"]) {
      it(`a server that ${what}: the request (${request}) fails, and the process exits after close()`, async () => {
        const proxy = await FaultProxy.start(mode);
        try {
          const report = await runExitChild(proxy.url(DATABASE_URL), request);
          assert.equal(report.outcome, "LockFailed", report.stderr);
          assert.equal(report.connections, 0);
          if (mode === "drop") assert.match(report.stderr, /closed|before it was ready/);
        } finally {
          await proxy.stop();
        }
      });
    }
  }

  for (const mode of ["session", "transaction"] as const) {
    it(`a silent network fails every request in flight, on any connection (${mode} mode)`, async () => {
      const app = `ss-test-silent-${mode}`;
      const holder = testState(`${app}-holder`, { namespace });
      const proxy = await FaultProxy.start("forward", DATABASE_URL);
      const state = proxiedState(proxy, app, mode);
      const later = testState(`${app}-later`, { namespace });
      try {
        const held = await holder.getLock("silent/held");
        const waiting = state.getLock("silent/held");
        waiting.catch(() => {});
        await waitingInPostgres(admin!, app, 1, "the request waiting in PostgreSQL");
        await state.getLock("silent/free").then((lock) => lock.release());
        proxy.silent = true;
        const requests = [
          waiting,
          state.testLock("silent/other"),
          state.getLock("silent/fresh"),
          state.getLock("silent/fresh-shared", { exclusive: false }),
        ];
        const outcomes = await within(
          Promise.allSettled(requests),
          "the requests in flight on a silent network",
        );
        for (const outcome of outcomes) {
          assert.equal(outcome.status, "rejected");
          assert.ok(outcome.reason instanceof LockFailed, String(outcome.reason));
          assert.equal(outcome.reason.reason, "unreachable");
        }
        // The network comes back: new requests connect again, and the wait the silent network
        // left queued on the server is taken out of PostgreSQL's queue, not granted to nobody.
        proxy.silent = false;
        const again = await state.getLock("silent/again", { timeout: 5000 });
        await again.release();
        await held.release();
        const next = await within(later.getLock("silent/held"), "the key free for others");
        await next.release();
      } finally {
        await Promise.all([state.close(), holder.close(), later.close()]);
        await proxy.stop();
      }
    });
  }

  it("a wait whose connection alone goes silent never holds a lock that nobody knows about", async () => {
    const app = "ss-test-silent-waiter";
    const holder = testState(`${app}-holder`, { namespace });
    const proxy = await FaultProxy.start("forward", DATABASE_URL);
    const state = proxiedState(proxy, app);
    const later = testState(`${app}-later`, { namespace });
    try {
      const held = await holder.getLock("lone/held");
      await state.testLock("lone/other"); // the main connection: connections[0]
      const waiting = state.getLock("lone/held");
      waiting.catch(() => {});
      await waitingInPostgres(admin!, app, 1, "the request waiting in PostgreSQL");
      assert.equal(proxy.connections.length, 2);
      proxy.connections[1].silence();
      // The grant goes to the waiting backend, and its answer is lost on the way.
      await held.release();
      const error = await rejection(waiting, "the wait whose answer was lost");
      assert.ok(error instanceof LockFailed, String(error));
      const next = await within(later.getLock("lone/held"), "the key free for others");
      await next.release();
    } finally {
      await Promise.all([state.close(), holder.close(), later.close()]);
      await proxy.stop();
    }
  });

  for (const mode of ["session", "transaction"] as const) {
    it(`close() during an outage with a waiting request resolves promptly (${mode} mode)`, async () => {
      const app = `ss-test-outage-close-${mode}`;
      const holder = testState(`${app}-holder`, { namespace });
      const proxy = await FaultProxy.start("forward", DATABASE_URL);
      const state = proxiedState(proxy, app, mode);
      try {
        const held = await holder.getLock("outage/held");
        const waiting = state.getLock("outage/held");
        waiting.catch(() => {});
        await waitingInPostgres(admin!, app, 1, "the request waiting in PostgreSQL");
        proxy.silent = true;
        await within(state.close(), "close() during the outage", 5000);
        assert.ok(await rejection(waiting, "the wait after close()") instanceof LockFailed);
        // The outage ends with the connections: the server then ends the waiting session.
        await proxy.stop();
        await waitingInPostgres(admin!, app, 0, "the wait gone from PostgreSQL's queue");
        await held.release();
      } finally {
        await Promise.all([state.close(), holder.close()]);
        await proxy.stop();
      }
    });
  }

  for (const mode of ["session", "transaction"] as const) {
    it(`an aborted wait leaves PostgreSQL's queue when the main connection is unresponsive (${mode} mode)`, async () => {
      const app = `ss-test-abort-frozen-main-${mode}`;
      const holder = testState(`${app}-holder`, { namespace });
      const proxy = await FaultProxy.start("forward", DATABASE_URL);
      // No heartbeats: the frozen main connection is not noticed, as with a long interval.
      const state = new PostgresState(proxy.url(DATABASE_URL), {
        namespace,
        mode,
        heartbeatInterval: 0,
        clientOptions: { connection: { application_name: runName(app) } },
      });
      const later = testState(`${app}-later`, { namespace });
      try {
        const held = await holder.getLock("frozen/held");
        assert.equal(await state.testLock("frozen/other"), true); // the main connection
        const main = proxy.connections[0];
        const controller = new AbortController();
        const waiting = state.getLock("frozen/held", { signal: controller.signal });
        waiting.catch(() => {});
        await waitingInPostgres(admin!, app, 1, "the request waiting in PostgreSQL");
        main.silence();
        controller.abort();
        assert.ok(await rejection(waiting, "the aborted wait") instanceof LockFailed);
        await waitingInPostgres(admin!, app, 0, "the aborted wait gone from PostgreSQL's queue");
        await held.release();
        const next = await within(later.getLock("frozen/held"), "the key free for others");
        await next.release();
      } finally {
        await Promise.all([state.close(), holder.close(), later.close()]);
        await proxy.stop();
      }
    });
  }

  it("a waiter whose backend an operator ended is told so", async () => {
    const app = "ss-test-terminated-waiter";
    const holder = testState(`${app}-holder`, { namespace });
    const state = testState(app, { namespace });
    try {
      const held = await holder.getLock("terminated/held");
      const waiting = state.getLock("terminated/held");
      waiting.catch(() => {});
      await waitingInPostgres(admin!, app, 1, "the request waiting in PostgreSQL");
      await terminate(admin!, await lockPids(admin!, app, false));
      const error = await rejection(waiting, "the wait whose backend was ended");
      assert.ok(error instanceof LockFailed);
      assert.equal(error.reason, "unreachable");
      assert.match(error.message, /ended by the server|terminated/);
      assert.doesNotMatch(error.message, /could not be reached/);
      await held.release();
      await eventually(async () => await state.testLock("terminated/held"), "the key free");
    } finally {
      await Promise.all([state.close(), holder.close()]);
    }
  });
});
