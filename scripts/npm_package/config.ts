/**
 * What the npm build reads from `deno.json`: name, version, license, the export map and the npm
 * packages of the import map. `deno.json` is the one source of truth; `package.json` is derived.
 *
 * @module
 */

/** The parts of `deno.json` the npm build uses. */
export interface DenoConfig {
  /** The package name, e.g. `@momotor/shared-state`. */
  name: string;
  /** The version, e.g. `0.1.0`. */
  version: string;
  /** An SPDX license id. */
  license: string;
  /** Export name (`"."`, `"./postgres"`) to source path (`"./mod.ts"`), always an object. */
  exports: Record<string, string>;
  /** Bare specifier (or prefix ending in `/`) to target, as written in `deno.json`. */
  imports: Record<string, string>;
}

/** An npm package named by an `npm:` specifier. */
export interface NpmPackage {
  /** The package name, e.g. `@logtape/logtape`. */
  name: string;
  /** The version range, e.g. `^2.4.2`. */
  range: string;
  /** The path inside the package, e.g. `/types`, or `""`. */
  subpath: string;
}

/** Reads and checks `deno.json` in `root`. */
export async function readDenoConfig(root: string): Promise<DenoConfig> {
  const path = `${root}/deno.json`;
  const raw = JSON.parse(await Deno.readTextFile(path));
  for (const field of ["name", "version", "license"]) {
    if (typeof raw[field] !== "string" || raw[field] === "") {
      throw new Error(`${path}: "${field}" must be a non-empty string`);
    }
  }
  const exports = typeof raw.exports === "string" ? { ".": raw.exports } : raw.exports;
  if (typeof exports !== "object" || exports === null || !("." in exports)) {
    throw new Error(`${path}: "exports" must name a "." entry point`);
  }
  for (const [name, target] of Object.entries(exports)) {
    if (typeof target !== "string" || !/^\.\/.+\.ts$/.test(target)) {
      throw new Error(`${path}: export ${name} must be a relative path to a .ts file`);
    }
  }
  return {
    name: raw.name,
    version: raw.version,
    license: raw.license,
    exports: exports as Record<string, string>,
    imports: raw.imports ?? {},
  };
}

/** Parses `npm:name@range/subpath`; `undefined` for anything else. */
export function parseNpmSpecifier(specifier: string): NpmPackage | undefined {
  const match = /^npm:\/?((?:@[^/@]+\/)?[^/@]+)(?:@([^/]+))?(\/.*)?$/.exec(specifier);
  if (match === null) return undefined;
  return { name: match[1], range: match[2] ?? "", subpath: match[3] ?? "" };
}

/**
 * The npm package behind a bare specifier as the source writes it, through the import map (an
 * exact entry, or the longest `prefix/` entry) or written inline as `npm:`.
 *
 * @throws {Error} for a specifier that has no npm package behind it, or no version range.
 */
export function npmPackageOf(specifier: string, config: DenoConfig): NpmPackage {
  let target = specifier.startsWith("npm:") ? specifier : config.imports[specifier];
  if (target === undefined) {
    const prefix = Object.keys(config.imports)
      .filter((key) => key.endsWith("/") && specifier.startsWith(key))
      .sort((a, b) => b.length - a.length)[0];
    if (prefix !== undefined) target = config.imports[prefix] + specifier.slice(prefix.length);
  }
  const found = target === undefined ? undefined : parseNpmSpecifier(target);
  if (found === undefined) {
    throw new Error(
      `"${specifier}" is not an npm package in deno.json "imports" (npm needs npm: packages)`,
    );
  }
  if (found.range === "") {
    throw new Error(`"${specifier}" has no version range in deno.json "imports"`);
  }
  return found;
}
