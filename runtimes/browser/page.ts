/**
 * The page that `runtimes/browser_test.ts` opens in headless Chromium, bundled for the browser
 * with `node:test` and `node:assert` mapped to `node_test.ts` and `assert.ts`. It runs, in the
 * browser, the package's conformance suite (`testing/conformance.ts`) on `LocalState` and on
 * `BrokerState` (the browser's own `WebSocket`) against the broker the test serves, smoke checks
 * of `await using` and `withLock`, and a self-check of the harness whose tests must fail; then it
 * reports every result to the test, one POST to `/report` each (`report.ts`).
 *
 * The page's URL carries the broker's `ws://` URL (`?broker=`) and token (`&token=`), a second
 * broker's (`&doomed=`) that the test stops when the page asks (`/action/stop-doomed`), and a URL
 * where no broker listens (`&closed=`). The test's server also answers `/served/size` (the
 * broker's key entries) and holds or releases a key of the broker's state for the page
 * (`/served/hold?key=`, `/served/release?key=`).
 *
 * @module
 */

import { LocalState, LockFailed, LockLost } from "../../mod.ts";
import { BrokerState } from "../../backends/broker.ts";
import { conformanceSuite } from "../../testing.ts";
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { registered, run } from "./node_test.ts";
import type { Report } from "./report.ts";

/** The conformance suite's own bound on a test; the harness gives each test more. */
const SUITE_TIMEOUT_MS = 30_000;
const TEST_TIMEOUT_MS = 45_000;

const params = new URL(location.href).searchParams;
const BROKER_URL = params.get("broker") ?? "";
const TOKEN = params.get("token") ?? "";
const DOOMED_URL = params.get("doomed") ?? "";
const CLOSED_URL = params.get("closed") ?? "";

/** Reports in order: each POST waits for the one before it. */
let posting: Promise<void> = Promise.resolve();
function post(report: Report): Promise<void> {
  posting = posting.then(async () => {
    try {
      const response = await fetch("/report", { method: "POST", body: JSON.stringify(report) });
      await response.body?.cancel();
    } catch (error) {
      console.error("could not report", report, error);
    }
  });
  return posting;
}

addEventListener("error", (event) => {
  void post({ type: "uncaught", message: `${event.message} (${event.filename}:${event.lineno})` });
});
addEventListener("unhandledrejection", (event) => {
  const reason = event.reason;
  void post({
    type: "uncaught",
    message: `unhandled rejection: ${reason instanceof Error ? reason.stack : String(reason)}`,
  });
});

/** Asks the test's server something about the broker's state. */
async function served(path: string): Promise<{ size: number }> {
  const response = await fetch(`/served/${path}`, { method: "POST" });
  if (!response.ok) throw new Error(`/served/${path}: HTTP ${response.status}`);
  return await response.json();
}

const localStates = new Set<LocalState>();
conformanceSuite("LocalState in the browser", {
  timeout: SUITE_TIMEOUT_MS,
  create() {
    const state = new LocalState();
    localStates.add(state);
    return state;
  },
  assertClean() {
    for (const state of localStates) assert.equal(state.size, 0, "LocalState kept a key entry");
    localStates.clear();
  },
});

conformanceSuite("BrokerState in the browser (its WebSocket)", {
  timeout: SUITE_TIMEOUT_MS,
  sharedBacking: true,
  create: () => new BrokerState(BROKER_URL, { token: TOKEN }),
  async assertClean() {
    assert.equal((await served("size")).size, 0, "the broker's state kept a key entry");
  },
});

describe("smoke: the entry points as a page uses them", () => {
  it("holds a LocalState lock with await using, released at the end of the block", async () => {
    await using state = new LocalState();
    {
      await using lock = await state.getLock("page");
      assert.equal(lock.key, "page");
      assert.equal(await state.testLock("page"), false);
    }
    assert.equal(await state.testLock("page"), true);
    assert.equal(state.size, 0);
  });

  it("runs one LocalState withLock at a time", async () => {
    const state = new LocalState();
    const order: string[] = [];
    const task = (name: string) =>
      state.withLock("page", async () => {
        order.push(`${name} in`);
        await new Promise((resolve) => setTimeout(resolve, 5));
        order.push(`${name} out`);
      });
    await Promise.all([task("a"), task("b")]);
    assert.deepEqual(order, ["a in", "a out", "b in", "b out"]);
    await state.close();
  });

  it("takes a broker lock with withLock and await using, seen by the broker", async () => {
    await using state = new BrokerState(BROKER_URL, { token: TOKEN });
    const size = await state.withLock("page/with", async () => (await served("size")).size);
    assert.equal(size, 1, "the broker held the page's lock during withLock");
    {
      await using _lock = await state.getLock("page/using");
      assert.equal((await served("size")).size, 1);
    }
    assert.equal((await served("size")).size, 0);
  });

  it("waits for a lock another client of the broker holds, and fails on a timeout", async () => {
    await served("hold?key=page/contended");
    await using state = new BrokerState(BROKER_URL, { token: TOKEN });
    await assert.rejects(state.getLock("page/contended", { timeout: 100 }), {
      name: "LockFailed",
      reason: "timeout",
    });
    const waiting = state.getLock("page/contended", { timeout: 10_000 });
    // The broker reads one socket's frames in order: by the time it answers this, it queued that.
    const info = await state.inspect("page/contended");
    assert.deepEqual(info.holders.map((h) => h.exclusive), [true]);
    assert.deepEqual(info.waiters.map((w) => w.exclusive), [true]);
    await served("release?key=page/contended");
    const lock = await waiting;
    assert.equal(lock.signal.aborted, false);
    await lock.release();
  });

  it("fails at once with LockFailed (refused) when the broker refuses the token", async () => {
    await using state = new BrokerState(BROKER_URL, { token: `${TOKEN}-wrong` });
    // No timeout: a refused token must not leave the request waiting.
    const error = await state.getLock("page/refused").then(
      () => assert.fail("a lock from a broker that refused the token"),
      (error: unknown) => error,
    );
    assert.ok(error instanceof LockFailed, `not a LockFailed: ${error}`);
    assert.equal(error.reason, "refused");
  });

  it("fails at once with LockFailed (unreachable) when no broker listens", async () => {
    await using state = new BrokerState(CLOSED_URL, { token: TOKEN });
    const error = await state.getLock("page/nowhere").then(
      () => assert.fail("a lock from no broker"),
      (error: unknown) => error,
    );
    assert.ok(error instanceof LockFailed, `not a LockFailed: ${error}`);
    assert.equal(error.reason, "unreachable");
    await assert.rejects(state.testLock("page/nowhere"), { name: "LockFailed" });
  });

  it("loses held locks and fails waits when the broker stops, then fails new requests", async () => {
    await using holder = new BrokerState(DOOMED_URL, { token: TOKEN });
    await using waiter = new BrokerState(DOOMED_URL, { token: TOKEN });
    const lock = await holder.getLock("page/doomed");
    const lost = new Promise<unknown>((resolve) => {
      lock.signal.addEventListener("abort", () => resolve(lock.signal.reason), { once: true });
    });
    const waiting = waiter.getLock("page/doomed").then(
      () => assert.fail("granted by a stopped broker"),
      (error: unknown) => error,
    );
    // Frames on one connection are handled in order: once this answers, the wait is queued.
    assert.equal(await waiter.testLock("page/doomed"), false);
    await fetch("/action/stop-doomed", { method: "POST" });
    const reason = await lost;
    assert.ok(reason instanceof LockLost, `not a LockLost: ${reason}`);
    assert.equal(reason.reason, "disconnected");
    const failure = await waiting;
    assert.ok(failure instanceof LockFailed, `not a LockFailed: ${failure}`);
    assert.equal(failure.reason, "unreachable");
    await lock.release(); // harmless after the loss
    await assert.rejects(holder.getLock("page/doomed"), { name: "LockFailed" });
  });
});

describe("harness self-check: these three must come back failed, failed and skipped", () => {
  it("fails on a wrong assertion", () => {
    assert.equal(1 + 1, 3);
  });
  it("fails when it outlasts its timeout", { timeout: 50 }, () => new Promise(() => {}));
  it("is skipped", { skip: "skipped on purpose" }, () => {
    throw new Error("a skipped test ran");
  });
});

const started = performance.now();
await post({ type: "started", userAgent: navigator.userAgent });
await run({ timeout: TEST_TIMEOUT_MS, report: (result) => post({ type: "result", result }) });
await post({ type: "done", registered: registered(), ms: performance.now() - started });
