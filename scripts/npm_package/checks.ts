/**
 * Packaging checks of the built `npm/` directory: the export maps agree, publint and "Are the
 * Types Wrong?" report nothing, the tarball holds only what users need, and a fresh Node project
 * that installs the tarball can `import` and `require()` every entry point, type-check against
 * them, compile (and run) the README's Node examples, and run the `shared-state` command.
 *
 * @module
 */

import ts from "typescript";
import { binProblems } from "./bin.ts";
import { checkBinAlone, checkBinWithPeers } from "./bin_smoke.ts";
import type { DenoConfig } from "./config.ts";
import { exportMapProblems, type PackageJson } from "./manifest.ts";
import { run, runOk, step } from "./run.ts";

/** Dev-only tools, run from npm with npx; pinned to a minor so that their verdicts are stable. */
const PUBLINT = "publint@~0.3.25";
const ATTW = "@arethetypeswrong/cli@~0.18.2";

const QUIET_NPM = ["--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"];

/** One failed check: what it was and what it printed. */
export class CheckFailed extends Error {
  /**
   * @param check The check's name.
   * @param report What the check reported.
   */
  constructor(check: string, report: string) {
    super(`${check} failed:\n${report}`);
    this.name = "CheckFailed";
  }
}

/** Reads `npm/package.json`. */
export async function readManifest(npmDir: string): Promise<PackageJson> {
  return JSON.parse(await Deno.readTextFile(`${npmDir}/package.json`));
}

/** `package.json` exports the same entry points as `deno.json`, and the files exist. */
export async function checkExportMaps(config: DenoConfig, npmDir: string): Promise<void> {
  const problems = await exportMapProblems(config, await readManifest(npmDir), npmDir);
  if (problems.length > 0) throw new CheckFailed("export maps", problems.join("\n"));
}

/** Every `bin` file exists, starts with `#!/usr/bin/env node` and is executable. */
export async function checkBins(npmDir: string): Promise<void> {
  const { bin = {} } = await readManifest(npmDir);
  const problems = await binProblems(npmDir, bin);
  if (problems.length > 0) throw new CheckFailed("bin files", problems.join("\n"));
  report("", `bin: ${Object.entries(bin).map(([name, file]) => `${name} → ${file}`).join(", ")}`);
}

/** publint, at every level down to suggestions, reports nothing. */
export async function checkPublint(npmDir: string): Promise<void> {
  const result = await run("npx", [
    "--yes",
    PUBLINT,
    "run",
    ".",
    "--level",
    "suggestion",
    "--strict",
  ], {
    cwd: npmDir,
  });
  if (result.code !== 0 || /Suggestions?:|Warnings?:|Errors?:/.test(result.output)) {
    throw new CheckFailed("publint", result.output);
  }
  report("", result.output.trim().split("\n").at(-1)!);
}

/**
 * "Are the Types Wrong?" finds no problem. The `esm-only` profile leaves out the CommonJS-only
 * resolution modes (`node10`, `node16` from CommonJS): the package is ESM only, and
 * `require()` of it works on Node 20.19+ without them.
 */
export async function checkTypes(npmDir: string): Promise<void> {
  const result = await run(
    "npx",
    ["--yes", "-p", ATTW, "attw", "--pack", ".", "--profile", "esm-only", "--format", "ascii"],
    { cwd: npmDir },
  );
  if (result.code !== 0) throw new CheckFailed("are the types wrong", result.output);
  report("", "no problems (profile esm-only: node16 from ESM and bundler, every entry point)");
}

/**
 * Every relative import of the published JavaScript and declarations names a `.js` file that
 * exists (with its `.d.ts` beside it, for declarations). TypeScript would tolerate `./x.ts` in a
 * declaration file, but not every tool does.
 */
export async function checkRelativeImports(npmDir: string): Promise<void> {
  const manifest = await readManifest(npmDir);
  const published = new Set(manifest.files);
  const problems: string[] = [];
  for (const file of manifest.files.filter((f) => /\.(js|d\.ts)$/.test(f))) {
    const text = await Deno.readTextFile(`${npmDir}/${file}`);
    for (const { fileName: specifier } of ts.preProcessFile(text, true, true).importedFiles) {
      if (!/^\.\.?\//.test(specifier)) continue;
      const target = new URL(specifier, `file:///${file}`).pathname.slice(1);
      const needed = file.endsWith(".d.ts") ? target.replace(/\.js$/, ".d.ts") : target;
      if (!specifier.endsWith(".js") || !published.has(needed)) {
        problems.push(`${file}: "${specifier}" does not name a published .js file`);
      }
    }
  }
  if (problems.length > 0) throw new CheckFailed("relative imports", problems.join("\n"));
}

/** Files `npm pack` would publish. */
async function packedFiles(npmDir: string): Promise<string[]> {
  const output = await runOk("npm", ["pack", "--dry-run", "--json", "--loglevel=error"], {
    cwd: npmDir,
  });
  const [pack] = JSON.parse(output.slice(output.indexOf("[")));
  return pack.files.map((file: { path: string }) => file.path).sort();
}

/** The tarball holds exactly the compiled package, its manifest, README and LICENSE. */
export async function checkPackedFiles(npmDir: string): Promise<void> {
  const manifest = await readManifest(npmDir);
  const expected = ["LICENSE", "README.md", "package.json", ...manifest.files].sort();
  const actual = await packedFiles(npmDir);
  const extra = actual.filter((file) => !expected.includes(file));
  const missing = expected.filter((file) => !actual.includes(file));
  if (extra.length > 0 || missing.length > 0) {
    throw new CheckFailed(
      "npm pack",
      `unexpected: ${extra.join(", ") || "none"}\nmissing: ${missing.join(", ") || "none"}`,
    );
  }
  const compiled = actual.filter((file) => file.startsWith("esm/")).length;
  report("", `${actual.length} files: package.json, README.md, LICENSE, ${compiled} compiled`);
}

/** `name` + `./sub` → the specifier a user imports. */
function specifierOf(name: string, exportName: string): string {
  return exportName === "." ? name : `${name}/${exportName.slice(2)}`;
}

/** A script that loads every specifier with `import` or `require()` and checks it exports something. */
function loaderScript(specifiers: string[], how: "import" | "require"): string {
  const load = how === "import" ? "await import(s)" : "require(s)";
  return [
    `for (const s of ${JSON.stringify(specifiers)}) {`,
    `  const m = ${load};`,
    '  if (Object.keys(m).length === 0) throw new Error(s + " exports nothing");',
    '  console.log(s, "→", Object.keys(m).join(", "));',
    "}",
  ].join("\n");
}

/** A consumer that uses the main entry point's `LocalState` for real, once loaded. */
const SMOKE = `
const { LocalState } = await import(process.argv[1]);
const state = new LocalState();
const lock = await state.getLock("smoke", { exclusive: false });
if (await state.testLock("smoke")) throw new Error("an exclusive testLock must see the shared holder");
await lock.release();
if (!(await state.testLock("smoke"))) throw new Error("released lock still held");
await state.close();
console.log("LocalState works");
`;

/** A TypeScript example of the README meant for Node. */
export interface NodeSnippet {
  /** The 1-based line of its opening fence in the README. */
  line: number;
  /** Its code, without the fence's indentation. */
  code: string;
  /** Whether it is marked to run (` ```ts node run `), not only to type-check. */
  run: boolean;
}

/**
 * The README's Node examples: fenced blocks whose info string is `ts node` or `ts node run`,
 * indented or not (inside a list item).
 */
export function nodeSnippets(markdown: string): NodeSnippet[] {
  const snippets: NodeSnippet[] = [];
  const lines = markdown.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const open = /^( *)```ts node( run)?\s*$/.exec(lines[i]);
    if (open === null) continue;
    const indent = open[1].length;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !/^ *```\s*$/.test(lines[j]); j++) body.push(lines[j].slice(indent));
    if (j === lines.length) throw new Error(`README line ${i + 1}: unclosed code block`);
    snippets.push({ line: i + 1, code: body.join("\n") + "\n", run: open[2] !== undefined });
    i = j;
  }
  return snippets;
}

/** Types for the README's Node examples, besides `@types/node`. */
const SNIPPET_TYPES = "@types/ws@^8.18.0";

/** Strict compiler options of a user's project in `dir`, with Node's types, emitting nothing. */
function consumerOptions(
  dir: string,
  module: ts.ModuleKind,
  moduleResolution: ts.ModuleResolutionKind,
): ts.CompilerOptions {
  return {
    module,
    moduleResolution,
    target: ts.ScriptTarget.ES2022,
    lib: ["lib.es2022.d.ts", "lib.esnext.disposable.d.ts"],
    types: ["node"],
    typeRoots: [`${dir}/node_modules/@types`],
    strict: true,
    noEmit: true,
  };
}

/** A Markdown document whose Node examples are checked: its name in reports, and its text. */
export interface Document {
  name: string;
  text: string;
}

/**
 * The Node examples of the README and the guides in docs/, as a new user would take them: each
 * compiled on its own as an ES module of the scratch project, `tsc --strict --module nodenext`
 * with `@types/node` and `@types/ws`; those marked `run` compiled to JavaScript and run with
 * `node`.
 */
async function checkNodeSnippets(dir: string, documents: Document[]): Promise<void> {
  const snippets = documents.flatMap((document) =>
    nodeSnippets(document.text).map((snippet) => ({ ...snippet, document: document.name }))
  );
  if (snippets.length === 0 || !snippets.some((snippet) => snippet.run)) {
    throw new CheckFailed("Node examples", "no ```ts node (run) block in the README or docs/");
  }
  const files = snippets.map((snippet) => {
    const base = snippet.document.replace(/[^A-Za-z0-9]+/g, "_");
    const file = `${dir}/${base}_line_${snippet.line}.ts`;
    Deno.writeTextFileSync(file, snippet.code);
    return file;
  });
  const options = consumerOptions(dir, ts.ModuleKind.NodeNext, ts.ModuleResolutionKind.NodeNext);
  const host = ts.createCompilerHost(options, true);
  const program = ts.createProgram(files, options, host);
  const diagnostics = ts.getPreEmitDiagnostics(program);
  if (diagnostics.length > 0) {
    throw new CheckFailed(
      "type-checking the Node examples (tsc --strict --module nodenext)",
      ts.formatDiagnosticsWithColorAndContext(diagnostics, host),
    );
  }
  const names = documents.map((document) => document.name).join(", ");
  report("", `${snippets.length} Node examples of ${names} type-check (strict, nodenext)`);
  for (const [i, snippet] of snippets.entries()) {
    if (!snippet.run) continue;
    const where = `${snippet.document} line ${snippet.line}`;
    const script = files[i].replace(/\.ts$/, ".mjs");
    const { outputText } = ts.transpileModule(snippet.code, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    });
    await Deno.writeTextFile(script, outputText);
    const output = await runOk("node", [script], { cwd: dir }).catch((error) => {
      throw new CheckFailed(`running the example of ${where}`, String(error));
    });
    report("", `the example of ${where} runs with node:`);
    report("  ", output);
  }
}

/** The guides in docs/ of the repository (not published to npm, but their examples are). */
async function guides(): Promise<Document[]> {
  const folder = new URL("../../docs/", import.meta.url);
  const documents: Document[] = [];
  for await (const entry of Deno.readDir(folder)) {
    if (!entry.isFile || !entry.name.endsWith(".md")) continue;
    const text = await Deno.readTextFile(new URL(entry.name, folder));
    documents.push({ name: `docs/${entry.name}`, text });
  }
  return documents.sort((a, b) => a.name.localeCompare(b.name));
}

/** Prints what a check found, indented under its step. */
function report(label: string, output: string): void {
  for (const line of output.trim().split("\n")) console.log(`  ${label}${line}`);
}

async function loadAll(dir: string, specifiers: string[]): Promise<void> {
  report(
    "import ",
    await runOk("node", ["--input-type=module", "-e", loaderScript(specifiers, "import")], {
      cwd: dir,
    }),
  );
  const requireWorks = await run("node", ["-p", "process.features.require_module === true"], {
    cwd: dir,
  });
  if (requireWorks.output.trim() !== "true") {
    console.log("  (this Node cannot require() ES modules: the require() check is skipped)");
    return;
  }
  report(
    "require() ",
    await runOk("node", ["--input-type=commonjs", "-e", loaderScript(specifiers, "require")], {
      cwd: dir,
    }),
  );
}

/** Type-checks a consumer of every entry point, as Node16 and as bundler projects would. */
function typeCheckConsumer(dir: string, packageName: string, specifiers: string[]): void {
  const file = `${dir}/consumer.ts`;
  Deno.writeTextFileSync(
    file,
    specifiers.map((s, i) => `import * as entry${i} from "${s}";\nconsole.log(entry${i});\n`)
      .join(""),
  );
  const modes: [string, ts.ModuleKind, ts.ModuleResolutionKind][] = [
    ["node16", ts.ModuleKind.Node16, ts.ModuleResolutionKind.Node16],
    ["bundler", ts.ModuleKind.ESNext, ts.ModuleResolutionKind.Bundler],
  ];
  for (const [label, module, moduleResolution] of modes) {
    const options = consumerOptions(dir, module, moduleResolution);
    const host = ts.createCompilerHost(options, true);
    const program = ts.createProgram([file], options, host);
    // Other packages' declarations are not ours to judge; ours and the consumer's must be clean.
    const ours = program.getSourceFiles().filter((source) =>
      source.fileName === file || source.fileName.includes(`/node_modules/${packageName}/`)
    );
    const diagnostics = [
      ...program.getGlobalDiagnostics(),
      ...ours.flatMap((source) => [
        ...program.getSyntacticDiagnostics(source),
        ...program.getSemanticDiagnostics(source),
      ]),
    ];
    if (diagnostics.length > 0) {
      throw new CheckFailed(
        `type-checking a ${label} consumer`,
        ts.formatDiagnosticsWithColorAndContext(diagnostics, host),
      );
    }
  }
}

/**
 * Installs the packed tarball into a scratch project: first alone (the main entry point must
 * work with no optional peer installed), then with the optional peers, `@types/node` and
 * `@types/ws`, and type-checks (and runs) the README's Node examples there.
 */
export async function checkScratchInstall(npmDir: string): Promise<void> {
  const manifest = await readManifest(npmDir);
  const dir = await Deno.makeTempDir({ prefix: "shared-state-consumer-" });
  try {
    await runOk("npm", ["pack", "--pack-destination", dir, "--loglevel=error"], { cwd: npmDir });
    const tarball = [...Deno.readDirSync(dir)].find((entry) => entry.name.endsWith(".tgz"))!.name;
    await Deno.writeTextFile(
      `${dir}/package.json`,
      JSON.stringify({ name: "consumer", private: true, version: "0.0.0", type: "module" }),
    );
    await runOk("npm", ["install", `./${tarball}`, ...QUIET_NPM], { cwd: dir });

    const main = manifest.name;
    for (const peer of Object.keys(manifest.peerDependencies ?? {})) {
      if (await exists(`${dir}/node_modules/${peer}`)) {
        throw new CheckFailed("scratch install", `optional peer ${peer} was installed unasked`);
      }
    }
    report("", "installed alone (no optional peer):");
    await loadAll(dir, [main]);
    report("", await runOk("node", ["--input-type=module", "-e", SMOKE, main], { cwd: dir }));
    if (manifest.bin !== undefined) {
      for (const line of await checkBinAlone(dir, manifest.version)) report("bin ", line);
    }

    const peers = Object.entries(manifest.peerDependencies ?? {}).map(([n, r]) => `${n}@${r}`);
    const types = [`@types/node@${manifest.devDependencies["@types/node"]}`, SNIPPET_TYPES];
    await runOk("npm", ["install", ...peers, ...types, ...QUIET_NPM], { cwd: dir });
    report("", `with ${[...peers, ...types].join(", ")}:`);
    const all = Object.keys(manifest.exports).map((name) => specifierOf(main, name));
    await loadAll(dir, all);
    typeCheckConsumer(dir, main, all);
    report("", "a consumer of every entry point type-checks (node16 and bundler resolution)");
    if (manifest.bin !== undefined) {
      for (const line of await checkBinWithPeers(dir)) report("bin ", line);
    }
    await checkNodeSnippets(dir, [
      { name: "README.md", text: await Deno.readTextFile(`${npmDir}/README.md`) },
      ...await guides(),
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Runs every packaging check on a built `npm/` directory. */
export async function checkPackage(config: DenoConfig, npmDir: string): Promise<void> {
  await step(
    "export maps of deno.json and package.json agree",
    () => checkExportMaps(config, npmDir),
  );
  await step("npm pack lists only the package", () => checkPackedFiles(npmDir));
  await step("bin files have a node shebang and are executable", () => checkBins(npmDir));
  await step("relative imports name published .js files", () => checkRelativeImports(npmDir));
  await step("publint", () => checkPublint(npmDir));
  await step("are the types wrong", () => checkTypes(npmDir));
  await step(
    "a scratch project installs, imports, requires and type-checks it",
    () => checkScratchInstall(npmDir),
  );
}
