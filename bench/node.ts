/**
 * Runs the in-process group under Node against the npm build (`npm/esm/`, made by
 * `deno task build:npm`, which runs first when the build is missing or stale): compiles the runtime-neutral bench files to `.bench-tmp/node/` with the
 * `npm:` specifiers turned into package names and `../mod.ts` into the built package, installs the
 * peers there with npm, and runs `bench/node_entry.ts` under `node --expose-gc`.
 *
 * @module
 */

import ts from "typescript";
import type { GroupResult } from "./results.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const BUILT_MOD = `${ROOT}/npm/esm/mod.js`;
const OUT = `${ROOT}/.bench-tmp/node`;
/** The runtime-neutral files the Node run needs. */
const FILES = [
  "harness.ts",
  "results.ts",
  "subjects.ts",
  "scenarios.ts",
  "in_process.ts",
  "in_process_child.ts",
  "node_entry.ts",
  "net_subjects.ts",
  "net_child.ts",
  "peer_server.ts",
];

/** The newest modification time of the package's sources (what the npm build compiles). */
async function newestSource(): Promise<number> {
  let newest = 0;
  const visit = async (dir: string) => {
    for await (const entry of Deno.readDir(dir)) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) await visit(path);
      else if (entry.name.endsWith(".ts")) {
        newest = Math.max(newest, (await Deno.stat(path)).mtime?.getTime() ?? 0);
      }
    }
  };
  for (const file of ["mod.ts", "state.ts", "errors.ts"]) {
    newest = Math.max(newest, (await Deno.stat(`${ROOT}/${file}`)).mtime?.getTime() ?? 0);
  }
  for (const dir of ["internal", "backends"]) await visit(`${ROOT}/${dir}`);
  return newest;
}

/**
 * Why the Node run cannot happen, or `undefined` when it can. Makes the npm build first
 * (`deno task build:npm --skip-tests --skip-checks`) when it is missing or older than the sources.
 */
export async function nodeUnavailable(log: (line: string) => void): Promise<string | undefined> {
  try {
    await run("node", ["--version"], ROOT);
  } catch {
    return "`node` is not installed";
  }
  const built = await Deno.stat(BUILT_MOD).then((stat) => stat.mtime?.getTime() ?? 0, () => -1);
  if (built < await newestSource()) {
    log(
      built < 0 ? "npm build missing: building it" : "npm build older than the sources: rebuilding",
    );
    try {
      await run(Deno.execPath(), ["task", "build:npm", "--skip-tests", "--skip-checks"], ROOT);
    } catch {
      return "the npm build (`deno task build:npm --skip-tests --skip-checks`) failed";
    }
  }
  return undefined;
}

/** `npm:name@range/sub` → `{ name, range, subpath }`. */
function parseNpm(specifier: string): { name: string; range: string; subpath: string } {
  const match = /^npm:(@[^/@]+\/[^/@]+|[^/@]+)@([^/]+)(\/.*)?$/.exec(specifier);
  if (match === null) throw new Error(`bench/node.ts: cannot read ${specifier}`);
  return { name: match[1], range: match[2], subpath: match[3] ?? "" };
}

/** Compiles the bench files; returns the npm packages they import, name to range. */
async function compile(): Promise<Record<string, string>> {
  const packages: Record<string, string> = {};
  await Deno.mkdir(OUT, { recursive: true });
  for (const file of FILES) {
    const source = await Deno.readTextFile(`${ROOT}/bench/${file}`);
    const specifier = /(from\s+|import\(\s*)"([^"]+)"/g;
    const rewritten = source.replace(specifier, (_, from: string, spec: string) => {
      if (spec.startsWith("npm:")) {
        const { name, range, subpath } = parseNpm(spec);
        packages[name] = range;
        return `${from}"${name}${subpath}"`;
      }
      if (spec === "../mod.ts") return `${from}"${BUILT_MOD}"`;
      if (spec.startsWith("../backends/")) {
        return `${from}"${ROOT}/npm/esm/${spec.slice(3).replace(/\.ts$/, ".js")}"`;
      }
      if (spec.startsWith("./")) return `${from}"${spec.replace(/\.ts$/, ".js")}"`;
      return `${from}"${spec}"`;
    });
    const { outputText } = ts.transpileModule(rewritten, {
      compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
      fileName: file,
    });
    await Deno.writeTextFile(`${OUT}/${file.replace(/\.ts$/, ".js")}`, outputText);
  }
  return packages;
}

async function run(command: string, args: string[], cwd: string, stdin = false): Promise<string> {
  const output = await new Deno.Command(command, {
    args,
    cwd,
    stdout: "piped",
    stderr: "inherit",
    stdin: stdin ? "inherit" : "null",
  }).output();
  if (!output.success) throw new Error(`${command} ${args.join(" ")} failed (${output.code})`);
  return new TextDecoder().decode(output.stdout);
}

/** Node's version, e.g. `v20.20.2`. */
export async function nodeVersion(): Promise<string> {
  return (await run("node", ["--version"], ROOT)).trim();
}

let prepared: Promise<string> | undefined;

/**
 * Compiles the runtime-neutral bench files for Node and installs the packages they import; once
 * per run. Needs the npm build (see {@link nodeUnavailable}).
 *
 * @returns The directory of the compiled files.
 */
export function prepareNode(): Promise<string> {
  return prepared ??= (async () => {
    const packages = await compile();
    const manifest = { private: true, type: "module", dependencies: packages };
    await Deno.writeTextFile(`${OUT}/package.json`, JSON.stringify(manifest, null, 2) + "\n");
    await run("npm", [
      "install",
      "--no-package-lock",
      "--no-audit",
      "--no-fund",
      "--prefer-offline",
      "--ignore-scripts", // live-mutex's postinstall only copies shell helpers to $HOME
      "--loglevel=error",
    ], OUT);
    return OUT;
  })();
}

/**
 * Runs the in-process group under Node against the npm build.
 *
 * @param smoke `true` for the CI smoke round.
 */
export async function runNodeGroup(smoke: boolean): Promise<GroupResult> {
  await prepareNode();
  const args = ["--expose-gc", `${OUT}/node_entry.js`, ...(smoke ? ["--smoke"] : [])];
  const stdout = await run("node", args, ROOT);
  const last = stdout.trim().split("\n").at(-1) ?? "";
  return JSON.parse(last) as GroupResult;
}
