/**
 * `package.json` derived from `deno.json` and the module graph, and the check that both export
 * maps agree.
 *
 * @module
 */

import { isBuiltin } from "node:module";
import { type DenoConfig, npmPackageOf } from "./config.ts";

/** Where compiled files go inside `npm/`. */
export const OUT_DIR = "esm";

/** Types for type-checking the tests under Node; the supported floor of `engines.node`. */
export const NODE_TYPES_RANGE = "^20.19.0";

/**
 * The Node versions the package works on, `require()` included: require(esm) is unflagged from
 * 20.19 on the 20 line and from 22.12 on the 22 line (21 and 22.0–22.11 can only `import` it).
 */
export const NODE_ENGINES = "^20.19.0 || >=22.12.0";

/** npm-only metadata that `deno.json` has no field for. */
const KEYWORDS = [
  "lock",
  "rwlock",
  "read-write-lock",
  "mutex",
  "advisory-lock",
  "postgres",
  "deno",
];

/**
 * The package's commands (npm `bin`): command name → the `deno.json` export it runs. The
 * compiled file gets a `#!/usr/bin/env node` line (bin.ts), so that `npx @momotor/shared-state`
 * and an installed `shared-state` run it with Node (issue 11).
 */
export const BINS: Readonly<Record<string, string>> = { "shared-state": "./cli" };

/** The subset of `package.json` this build writes and checks. */
export interface PackageJson {
  name: string;
  version: string;
  description: string;
  keywords: string[];
  license: string;
  type: "module";
  sideEffects: false;
  main: string;
  types: string;
  engines: { node: string };
  exports: Record<string, { types: string; default: string }>;
  /** Command name → compiled file (`esm/cli.js`, no `./`: npm's own spelling). */
  bin?: Record<string, string>;
  files: string[];
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional: true }>;
  devDependencies: Record<string, string>;
}

/** What the manifest is made from. */
export interface ManifestInput {
  config: DenoConfig;
  /** First paragraph of the main entry point's `@module` doc. */
  description: string;
  /** Non-relative imports reachable from the `"."` entry point. */
  mainImports: Iterable<string>;
  /** Non-relative imports reachable from the other entry points only. */
  optionalImports: Iterable<string>;
  /** Non-relative imports of the tests. */
  testImports: Iterable<string>;
  /** Paths (relative to the root, `.ts`) of every source file in the package. */
  packageFiles: Iterable<string>;
}

/** `./backends/local.ts` → `./esm/backends/local` (no extension). */
function compiledBase(sourcePath: string): string {
  return `./${OUT_DIR}/${sourcePath.replace(/^\.\//, "").replace(/\.m?ts$/, "")}`;
}

/** The `package.json` `exports` entry of one `deno.json` export. */
export function exportEntry(sourcePath: string): { types: string; default: string } {
  const base = compiledBase(sourcePath);
  return { types: `${base}.d.ts`, default: `${base}.js` };
}

/** npm name → range for the packages among `specifiers` (builtins are skipped). */
function packagesOf(specifiers: Iterable<string>, config: DenoConfig): Map<string, string> {
  const found = new Map<string, string>();
  for (const specifier of specifiers) {
    if (specifier.startsWith("node:") || isBuiltin(specifier)) continue;
    if (specifier.startsWith("jsr:") || /^https?:/.test(specifier)) {
      throw new Error(`"${specifier}" cannot be imported from an npm package`);
    }
    const { name, range } = npmPackageOf(specifier, config);
    const known = found.get(name);
    if (known !== undefined && known !== range) {
      throw new Error(`${name} is imported with two ranges: ${known} and ${range}`);
    }
    found.set(name, range);
  }
  return found;
}

function sorted(map: Map<string, string>): Record<string, string> {
  return Object.fromEntries([...map].sort(([a], [b]) => a.localeCompare(b)));
}

/**
 * Builds `package.json`. Packages the main entry point needs are `dependencies`; packages only
 * other entry points need (a database driver) are optional `peerDependencies`, so that users of
 * the main entry point install nothing else; those and the tests' packages are `devDependencies`
 * for the Node test run.
 */
export function buildManifest(input: ManifestInput): PackageJson {
  const { config } = input;
  const dependencies = packagesOf(input.mainImports, config);
  const peers = packagesOf(input.optionalImports, config);
  for (const name of dependencies.keys()) peers.delete(name);
  const dev = new Map([...packagesOf(input.testImports, config), ...peers]);
  for (const name of dependencies.keys()) dev.delete(name);
  dev.set("@types/node", NODE_TYPES_RANGE);

  const files: string[] = [];
  for (const source of [...new Set(input.packageFiles)].sort()) {
    const base = compiledBase(source).slice(2);
    files.push(`${base}.js`, `${base}.js.map`, `${base}.d.ts`);
  }

  const exports = Object.fromEntries(
    Object.entries(config.exports).map(([name, path]) => [name, exportEntry(path)]),
  );
  const bin = Object.fromEntries(
    Object.entries(BINS)
      .filter(([, exportName]) => exportName in exports)
      .map(([command, exportName]) => [command, exports[exportName].default.slice(2)]),
  );
  return {
    name: config.name,
    version: config.version,
    description: input.description,
    keywords: KEYWORDS,
    license: config.license,
    type: "module",
    sideEffects: false,
    // For tools that predate `exports` (TypeScript's `node10` resolution): the main entry only.
    main: exports["."].default,
    types: exports["."].types,
    exports,
    ...(Object.keys(bin).length > 0 ? { bin } : {}),
    files,
    engines: { node: NODE_ENGINES },
    ...(dependencies.size > 0 ? { dependencies: sorted(dependencies) } : {}),
    ...(peers.size > 0
      ? {
        peerDependencies: sorted(peers),
        peerDependenciesMeta: Object.fromEntries(
          [...peers.keys()].sort().map((name) => [name, { optional: true as const }]),
        ),
      }
      : {}),
    devDependencies: sorted(dev),
  };
}

/**
 * Problems with the export maps: `package.json` must export exactly what `deno.json` exports, each
 * entry compiled from the same source, and every file it names must exist in `npmDir`.
 */
export async function exportMapProblems(
  config: DenoConfig,
  manifest: PackageJson,
  npmDir: string,
): Promise<string[]> {
  const problems: string[] = [];
  const denoNames = Object.keys(config.exports).sort();
  const npmNames = Object.keys(manifest.exports ?? {}).sort();
  if (denoNames.join() !== npmNames.join()) {
    problems.push(`deno.json exports ${denoNames.join(", ")}; package.json ${npmNames.join(", ")}`);
  }
  for (const [name, source] of Object.entries(config.exports)) {
    const entry = manifest.exports?.[name];
    if (entry === undefined) continue;
    const expected = exportEntry(source);
    if (entry.types !== expected.types || entry.default !== expected.default) {
      problems.push(
        `export ${name}: ${JSON.stringify(entry)}, expected ${JSON.stringify(expected)}`,
      );
    }
    for (const path of [entry.types, entry.default]) {
      try {
        await Deno.stat(`${npmDir}/${path}`);
      } catch {
        problems.push(`export ${name}: ${path} is missing from ${npmDir}`);
      }
    }
  }
  return problems;
}

/** The text of a file's leading JSDoc comment (its `@module` doc), without the `*` margins. */
export function moduleDoc(source: string): string {
  const doc = /^\s*\/\*\*([\s\S]*?)\*\//.exec(source)?.[1] ?? "";
  return doc.split("\n").map((line) => line.replace(/^\s*\* ?/, "").trimEnd()).join("\n").trim();
}

/** The first paragraph of a file's `@module` doc, on one line, as plain text. */
export function moduleSummary(source: string): string {
  const [paragraph] = moduleDoc(source).split(/\n\s*\n/);
  return paragraph.split("\n").map((line) => line.trim()).join(" ")
    .replace(/\{@link\s+([^}|\s]+)[^}]*\}/g, "$1")
    .replaceAll("`", "")
    .trim();
}
