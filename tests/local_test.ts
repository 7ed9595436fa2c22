import assert from "node:assert/strict";
import process from "node:process";
import { describe, it } from "node:test";
import { LocalState } from "../mod.ts";
import { conformanceSuite } from "../testing.ts";

const states = new Set<LocalState>();

conformanceSuite("LocalState", {
  create() {
    const state = new LocalState();
    states.add(state);
    return state;
  },
  assertClean() {
    for (const state of states) assert.equal(state.size, 0, "LocalState kept a key entry");
    states.clear();
    return Promise.resolve();
  },
});

describe("LocalState", () => {
  it("forgets a key as soon as it is neither held nor awaited", async () => {
    const state = new LocalState();
    const lock = await state.getLock("a");
    const waiter = state.getLock("a", { timeout: 5 }).catch(() => "timed out");
    assert.equal(state.size, 1);
    assert.equal(await waiter, "timed out");
    assert.equal(state.size, 1);
    await lock.release();
    assert.equal(state.size, 0);
  });

  it("leaves the heap where it was after 200,000 distinct keys", async () => {
    const gc = (globalThis as { gc?: () => void }).gc;
    const state = new LocalState();
    const lockAll = async (prefix: string) => {
      for (let i = 0; i < 200_000; i++) {
        const lock = await state.getLock(`${prefix}/${i}`, { exclusive: i % 2 === 0 });
        await lock.release();
      }
    };
    await lockAll("warm-up");
    gc?.();
    const before = process.memoryUsage().heapUsed;
    await lockAll("measured");
    gc?.();
    const after = process.memoryUsage().heapUsed;
    assert.equal(state.size, 0);
    if (gc !== undefined) {
      // A kept entry costs well over 100 bytes: 200,000 of them would be > 20 MB.
      const grown = after - before;
      assert.ok(grown < 4 * 1024 * 1024, `heap grew by ${grown} bytes`);
    }
  });

  it("frees the keys a getLocks took in the abort itself, so that the next call finds them free", async () => {
    const state = new LocalState();
    const holder = await state.getLock("b");
    const controller = new AbortController();
    const waiting = state.getLocks(["a", "b", "c"], { signal: controller.signal });
    waiting.catch(() => {});
    await Promise.resolve();
    assert.equal(await state.testLock("a"), false, "a is held while b is awaited");
    controller.abort(new Error("enough"));
    // No await between the abort and the look: a broker reads its next frame just so.
    const free = state.testLock("a");
    assert.equal(await free, true);
    await assert.rejects(waiting, { name: "LockFailed", reason: "aborted", key: "b" });
    await holder.release();
    assert.equal(state.size, 0);
  });

  it("forgets a permit key as soon as no permit of it is held or awaited", async () => {
    const state = new LocalState();
    const permit = await state.getPermit("p", { limit: 1 });
    const lock = await state.getLock("p");
    const waiter = state.getPermit("p", { limit: 1, timeout: 5 }).catch(() => "timed out");
    assert.equal(state.size, 2, "a lock key and a permit key of the same name");
    assert.equal(await waiter, "timed out");
    await permit.release();
    assert.equal(state.size, 1);
    await lock.release();
    assert.equal(state.size, 0);
  });

  it("rejects bad constructor options, an unknown one by name", () => {
    assert.throws(() => new LocalState(null as never), {
      name: "TypeError",
      message: "LocalState options must be an object, got null",
    });
    assert.throws(() => new LocalState({ name: 5 as never }), {
      name: "TypeError",
      message: 'option "name" in LocalState options must be a string, got 5',
    });
    assert.throws(() => new LocalState({ nmae: "grader" } as never), {
      name: "TypeError",
      message: 'unknown option "nmae" in LocalState options (known: name)',
    });
    new LocalState({ name: undefined });
  });
});
