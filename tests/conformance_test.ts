/**
 * The conformance suite judges: run through the public entry (`testing.ts`) on LocalState broken
 * on purpose (`broken_backend.ts`, in a child process under this runtime's test runner), it must
 * fail, naming the tests of the broken rules, and pass the same LocalState unbroken.
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import process from "node:process";
import { before, describe, it } from "node:test";
import { testScriptCommand } from "./child_script.ts";

interface Run {
  code: number | null;
  output: string;
  passed: Set<string>;
  failed: Set<string>;
}

/**
 * Test names and outcomes from `deno test` (`name ... ok`), the spec reporter (`✔ name (…)`) or
 * `bun test` (`(pass) suite > group > name [… ms]`, of which the name is the last part).
 */
function outcomes(output: string): Pick<Run, "passed" | "failed"> {
  const passed = new Set<string>();
  const failed = new Set<string>();
  for (const line of output.split("\n")) {
    const deno = /^\s*(.+?) \.\.\. (ok|FAILED)\b/.exec(line);
    const node = /^\s*([✔✖]) (.+?) \(\d[\d.]*m?s\)/.exec(line);
    const bun = /^\((pass|fail)\) (.+?)(?: \[[\d.]+m?s\])?\s*$/.exec(line);
    if (deno) (deno[2] === "ok" ? passed : failed).add(deno[1]);
    else if (node) (node[1] === "✔" ? passed : failed).add(node[2]);
    else if (bun) (bun[1] === "pass" ? passed : failed).add(bun[2].split(" > ").at(-1)!);
  }
  return { passed, failed };
}

function runSuite(broken: string): Promise<Run> {
  const { command, args } = testScriptCommand("broken_backend");
  // Under `node --test`, NODE_TEST_CONTEXT would make the child report to this runner, not print.
  const { NODE_TEST_CONTEXT: _, ...env } = process.env;
  const child = spawn(command, args, {
    env: { ...env, BROKEN: broken, NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (text: string) => output += text);
  child.stderr.setEncoding("utf8").on("data", (text: string) => output += text);
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => {
      // deno test colours its report even when piped.
      const plain = output.replace(new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g"), "");
      resolve({ code, output: plain, ...outcomes(plain) });
    });
  });
}

/** Asserts that the run failed, and that each of `names` failed in it. */
function assertFailed(run: Run, names: string[]): void {
  assert.notEqual(run.code, 0, `the suite passed a broken backend:\n${run.output}`);
  for (const name of names) {
    assert.ok(run.failed.has(name), `"${name}" did not fail:\n${run.output}`);
  }
}

describe("the conformance suite, on a backend broken on purpose", () => {
  const runs: Record<string, Promise<Run>> = {};
  before(() => {
    // The runs go side by side; each test awaits its own.
    for (const broken of ["none", "exclusive", "release", "fencing"]) {
      runs[broken] = runSuite(broken);
      runs[broken].catch(() => {}); // awaited (and reported) by its test
    }
  });

  it("passes LocalState unbroken, run the same way", async () => {
    const run = await runs.none;
    assert.equal(run.code, 0, run.output);
    assert.deepEqual([...run.failed], []);
    assert.ok(run.passed.has("lets one exclusive holder in alone"), run.output);
    // The suite's 24 tests of a backend without sharedBacking (Deno and Node list its groups too).
    assert.ok(run.passed.size >= 24, `only ${run.passed.size} tests passed:\n${run.output}`);
  });

  it("fails one whose exclusive mode lets a second holder in", async () => {
    const run = await runs.exclusive;
    assertFailed(run, [
      "lets one exclusive holder in alone",
      "makes an exclusive request wait for every shared holder",
      "keeps the invariant under random interleavings",
    ]);
    // Rules the breakage does not touch still pass: the suite ran, and judged each rule.
    assert.ok(run.passed.has("lets many shared holders in together"), run.output);
  });

  it("fails one whose release does nothing, each hanging test within its timeout", async () => {
    const run = await runs.release;
    assertFailed(run, [
      "is idempotent, and a stale release never frees a later holder",
      "withLock releases on return and on throw",
      "makes an exclusive request wait for every shared holder",
    ]);
    assert.match(run.output, /did not end within 1000 ms/);
    assert.ok(
      run.passed.has("rejects ill-typed arguments with TypeError and bad timeouts with RangeError"),
    );
  });

  it("fails one whose fencing tokens do not grow", async () => {
    const run = await runs.fencing;
    assertFailed(run, [
      "grow from holder to holder, and repeat on one lock",
      "grow across a hand-over to a waiter, and after concurrent shared holders",
    ]);
    assert.ok(run.passed.has("lets one exclusive holder in alone"), run.output);
  });
});
