/**
 * Every snippet of docs/cli.md, and that of the README's "Command line" section, runs as written
 * (issue 11), in document order, with `shared-state`
 * on the `PATH` (the CLI under the runtime the tests run on) and `DATABASE_URL` set, each in a
 * scratch directory:
 *
 * - ` ```sh ` blocks run with `sh -e` and must exit 0;
 * - ` ```sh server ` blocks start a server that the later blocks use: it must say where it
 *   listens (a `ws://` URL), and is stopped (SIGTERM) after the last block;
 * - ` ```crontab ` blocks: the command of each job line runs as cron would run it;
 * - ` ```sh install ` blocks (registries) and blocks without a language (output, synopses) are
 *   not run.
 *
 * Blocks that call `psql` are skipped, with a note, where it is not installed.
 */

import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import process from "node:process";
import { after, describe, it } from "node:test";
import { cliCommand } from "./child_script.ts";
import { Scratch } from "./cli_commands.ts";
import { DATABASE_URL, postgresSkip, within } from "./postgres_env.ts";

/** No block may run longer. */
const BLOCK_TIMEOUT_MS = 60_000;

/**
 * A file of the repository: beside the sources, or three levels above the compiled tests
 * (npm/esm/tests).
 */
function repositoryFile(name: string): string | undefined {
  for (const relative of [`../${name}`, `../../../${name}`]) {
    const file = new URL(relative, import.meta.url);
    if (fs.existsSync(file)) return fs.readFileSync(file, "utf8");
  }
  return undefined;
}

/** The README's "Command line" section, as a document of its own. */
function readmeSection(readme: string): string {
  const start = readme.indexOf("\n## Command line\n");
  assert.ok(start >= 0, "README.md has a Command line section");
  const end = readme.indexOf("\n## ", start + 1);
  return readme.slice(start, end < 0 ? undefined : end);
}

interface Block {
  /** 1-based line of the opening fence. */
  line: number;
  /** The info string: `sh`, `sh server`, `crontab`, … */
  info: string;
  code: string;
}

function fencedBlocks(markdown: string): Block[] {
  const blocks: Block[] = [];
  const lines = markdown.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(.*)$/.exec(lines[i]);
    if (open === null) continue;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && lines[j] !== "```"; j++) body.push(lines[j]);
    assert.ok(j < lines.length, `docs/cli.md line ${i + 1}: unclosed code block`);
    blocks.push({ line: i + 1, info: open[1].trim(), code: body.join("\n") + "\n" });
    i = j;
  }
  return blocks;
}

/** The commands of a crontab's job lines: the five time fields dropped. */
function cronCommands(crontab: string): string[] {
  return crontab.split("\n")
    .filter((line) => line.trim() !== "" && !line.trim().startsWith("#"))
    .filter((line) => !/^\w+=/.test(line)) // VAR=value lines set the environment
    .map((line) => line.trim().split(/\s+/).slice(5).join(" "));
}

/** A `shared-state` on the PATH that runs the CLI under this runtime. */
function installShim(dir: string): string {
  const bin = path.join(dir, "bin");
  fs.mkdirSync(bin);
  const { command, args } = cliCommand([]);
  const quoted = [command, ...args].map((word) => {
    assert.ok(!word.includes("'"), `cannot quote ${word}`);
    return `'${word}'`;
  });
  fs.writeFileSync(path.join(bin, "shared-state"), `#!/bin/sh\nexec ${quoted.join(" ")} "$@"\n`, {
    mode: 0o755,
  });
  return bin;
}

function hasPsql(): boolean {
  return spawnSync("psql", ["--version"], { stdio: "ignore" }).status === 0;
}

const guide = repositoryFile("docs/cli.md");
const readme = repositoryFile("README.md");
const skip = guide === undefined || readme === undefined
  ? "docs/cli.md and README.md are not beside these tests (a copy without the repository)"
  : await postgresSkip();

describe("docs/cli.md", { skip }, () => {
  const scratch = new Scratch();
  const servers: ChildProcess[] = [];
  after(() => {
    for (const server of servers) {
      if (server.exitCode === null && server.signalCode === null) {
        process.kill(-server.pid!, "SIGKILL");
      }
    }
    scratch.remove();
  });

  it("runs every snippet as written", async (t) => {
    const bin = installShim(scratch.dir);
    const env: Record<string, string> = {};
    for (const [name, value] of Object.entries(process.env)) {
      if (value !== undefined && !/^(SHARED_STATE_|TOKEN$)/.test(name)) env[name] = value;
    }
    Object.assign(env, { PATH: `${bin}${path.delimiter}${process.env.PATH}`, DATABASE_URL });
    const psql = hasPsql();

    /** Runs `code` with `sh -e` in a fresh directory; fails unless it exits 0. */
    const runBlock = async (where: string, code: string) => {
      if (/\bpsql\b/.test(code) && !psql) {
        t.diagnostic(`${where}: skipped, psql is not installed`);
        return;
      }
      const cwd = fs.mkdtempSync(path.join(scratch.dir, "block-"));
      const child = spawn("sh", ["-e", "-c", code], {
        cwd,
        env,
        stdio: ["ignore", "pipe", "pipe"],
      });
      let output = "";
      child.stdout!.on("data", (chunk) => output += chunk);
      child.stderr!.on("data", (chunk) => output += chunk);
      const timer = setTimeout(() => child.kill("SIGKILL"), BLOCK_TIMEOUT_MS);
      const code_ = await new Promise<number | string>((resolve) =>
        child.on("close", (exit, signal) => resolve(exit ?? signal ?? "unknown"))
      );
      clearTimeout(timer);
      assert.equal(code_, 0, `${where} exited ${code_}:\n${code}\n${output}`);
      return output;
    };

    const section = fencedBlocks(readmeSection(readme!)).filter((block) => block.info === "sh");
    assert.equal(section.length, 1, "the README's Command line section has one sh snippet");
    await runBlock("README.md, Command line", section[0].code);

    let ran = 0;
    for (const block of fencedBlocks(guide!)) {
      const where = `docs/cli.md line ${block.line} (${block.info || "no language"})`;
      if (block.info === "sh") {
        const output = await runBlock(where, block.code);
        if (block.code.includes("for replica in 1 2 3")) {
          // The migration recipe: one replica at a time.
          const lines = output!.split("\n").filter((line) => line.startsWith("replica"));
          for (let i = 0; i < lines.length; i += 2) {
            assert.equal(lines[i + 1], lines[i].replace("migrates", "is done"), output);
          }
          assert.equal(lines.length, 6, output);
        }
        ran++;
      } else if (block.info === "crontab") {
        for (const command of cronCommands(block.code)) {
          await runBlock(`${where}: ${command}`, command);
        }
        ran++;
      } else if (block.info === "sh server") {
        const server = spawn("sh", ["-c", block.code], {
          cwd: scratch.dir,
          env,
          detached: true, // its own process group: SIGTERM reaches the shell and the server
          stdio: ["ignore", "pipe", "inherit"],
        });
        servers.push(server);
        let output = "";
        server.stdout!.on("data", (chunk) => output += chunk);
        await within(
          new Promise<void>((resolve, reject) => {
            server.stdout!.on("data", () => output.includes("ws://") && resolve());
            server.on("close", () => reject(new Error(`${where} ended: ${output}`)));
          }),
          `${where} listening`,
        );
        ran++;
      } else {
        assert.ok(["", "sh install"].includes(block.info), `${where}: unknown kind of block`);
      }
    }
    assert.ok(ran >= 10, `only ${ran} blocks ran`);

    for (const server of servers) {
      const closed = new Promise((resolve) => server.on("close", resolve));
      process.kill(-server.pid!, "SIGTERM");
      await within(closed, "the servers of docs/cli.md stopped");
    }
  });
});
