/**
 * The npm build as each runtime loads it (docs/runtimes.md, the Node table): `require()` of
 * every entry point by the package's name, through its export map (Node 20.19+, 22.12+, 24,
 * Bun), and `await using` written natively in a program that uses the package: it runs where the
 * runtime has it (Node 24, Bun) and releases at the end of the scope, and is a syntax error
 * where it has not (Node 20 and 22: compile it down). Only on the compiled package (`node --test`
 * and `bun test` on `npm/esm/tests/`): the sources under Deno have no npm package to load.
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { describe, it } from "node:test";

const compiled = import.meta.url.endsWith(".js");
const isBun = (process.versions as { bun?: string }).bun !== undefined;
const nodeMajor = Number(process.versions.node.split(".")[0]);

/** Runs `node` (or `bun`) on a script; its exit code and output. */
function runScript(path: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [path], { timeout: 30_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1;
      resolve({ code, output: `${stdout}${stderr}` });
    });
  });
}

describe("the npm package as the runtime loads it", {
  skip: !compiled && "the npm build only (node --test or bun test on npm/esm/tests/)",
}, () => {
  it("require()s every entry point by the package's name, through its export map", async () => {
    const manifest = JSON.parse(
      await readFile(new URL("../../package.json", import.meta.url), "utf8"),
    ) as { name: string; exports: Record<string, unknown> };
    const require = createRequire(import.meta.url);
    // ./cli is a program as well as a module: its exports are checked, it does not run.
    const entries = Object.keys(manifest.exports);
    assert.ok(entries.includes("."), "the export map has a main entry point");
    for (const entry of entries) {
      const specifier = entry === "." ? manifest.name : `${manifest.name}${entry.slice(1)}`;
      const module = require(specifier) as Record<string, unknown>;
      assert.ok(Object.keys(module).length > 0, `require("${specifier}") exported nothing`);
    }
    const main = require(manifest.name) as Record<string, unknown>;
    assert.equal(typeof main.LocalState, "function");
    // The same module instance as import: no dual package.
    const imported = await import(manifest.name) as Record<string, unknown>;
    assert.equal(main.LocalState, imported.LocalState);
  });

  it("runs `await using` natively where the runtime has it (Node 24, Bun), and only there", async () => {
    const dir = await mkdtemp(join(tmpdir(), "shared-state-await-using-"));
    try {
      const script = join(dir, "await_using.mjs");
      const mod = new URL("../mod.js", import.meta.url).href;
      await writeFile(
        script,
        `import { LocalState } from ${JSON.stringify(mod)};
const state = new LocalState();
{
  await using lock = await state.getLock("k");
  if (lock.key !== "k" || (await state.testLock("k"))) throw new Error("not held in the scope");
}
if (!(await state.testLock("k"))) throw new Error("await using did not release the lock");
await state.close();
console.log("released at the end of the scope");
`,
      );
      const { code, output } = await runScript(script);
      if (isBun || nodeMajor >= 24) {
        assert.equal(code, 0, output);
        assert.match(output, /released at the end of the scope/);
      } else {
        assert.notEqual(code, 0, `Node ${process.versions.node} ran await using: update the docs`);
        assert.match(output, /SyntaxError/);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
