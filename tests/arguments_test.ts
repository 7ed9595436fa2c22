/**
 * The argument checks every call and constructor shares (internal/arguments.ts): one message
 * style, each value quoted once.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LocalState } from "../mod.ts";
import { checkOptions, optionNames, show } from "../internal/arguments.ts";

describe("argument checks", () => {
  it("quote a value once, whatever its type", () => {
    assert.equal(show(undefined), "undefined");
    assert.equal(show(null), "null");
    assert.equal(show(42), "42");
    assert.equal(show(NaN), "NaN");
    assert.equal(show("10"), '"10"');
    assert.equal(show("x".repeat(100)), `"${"x".repeat(40)}…"`);
    assert.equal(show(10n), "10n");
    assert.equal(show(Symbol("k")), "Symbol(k)");
    assert.equal(show(function named() {}), "function named");
    assert.equal(show({ a: 1 }), '{"a":1}');
    assert.equal(show(["a"]), '["a"]');
    assert.equal(show(new Map()), "[object Map]");
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    assert.equal(show(cyclic), "[object Object]");
  });

  it("name the bad key's value once", async () => {
    const state = new LocalState();
    await assert.rejects(state.getLock(undefined as never), {
      name: "TypeError",
      message: "key must be a string, got undefined",
    });
    await assert.rejects(state.testLock(7 as never), {
      name: "TypeError",
      message: "key must be a string, got 7",
    });
  });

  it("name an unknown option, where it was given and the known ones", async () => {
    assert.throws(() => checkOptions({ nameSpace: "a" }, ["namespace", "mode"], "X options"), {
      name: "TypeError",
      message: 'unknown option "nameSpace" in X options (known: namespace, mode)',
    });
    assert.throws(() => checkOptions(null, ["a"], "X options"), {
      name: "TypeError",
      message: "X options must be an object, got null",
    });
    checkOptions({ a: 1, b: undefined }, ["a", "b", "c"], "X options");
    checkOptions({}, [], "X options");
    const state = new LocalState();
    await assert.rejects(state.getLock("k", { exclusive: false, timeOut: 5 } as never), {
      name: "TypeError",
      message: 'unknown option "timeOut" in getLock options (known: exclusive, timeout, signal)',
    });
    await assert.rejects(state.withLock("k", () => 1, { signl: undefined } as never), {
      name: "TypeError",
      message: 'unknown option "signl" in withLock options (known: exclusive, timeout, signal)',
    });
    await assert.rejects(state.testLock("k", { timeout: 0 } as never), {
      name: "TypeError",
      message: 'unknown option "timeout" in testLock options (known: exclusive)',
    });
  });

  it("say what an ill-typed or out-of-range option must be, in the same style", async () => {
    const state = new LocalState();
    await assert.rejects(state.getLock("k", { timeout: "10" as never }), {
      name: "TypeError",
      message: 'option "timeout" in getLock options must be a number of milliseconds, got "10"',
    });
    await assert.rejects(state.withLock("k", () => 1, { timeout: -1 }), {
      name: "RangeError",
      message: 'option "timeout" in withLock options must be a finite number >= 0 ' +
        "(leave it out to wait for ever), got -1",
    });
    await assert.rejects(state.testLock("k", { exclusive: 1 as never }), {
      name: "TypeError",
      message: 'option "exclusive" in testLock options must be a boolean, got 1',
    });
    await assert.rejects(state.getLock("k", null as never), {
      name: "TypeError",
      message: "getLock options must be an object, got null",
    });
  });

  it("list every option of a type, in order", () => {
    assert.deepEqual(optionNames<{ a?: 1; b: 2 }>({ a: true, b: true }), ["a", "b"]);
  });
});
