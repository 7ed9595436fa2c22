/**
 * The module graph of the sources, without resolving packages: which local files an entry point
 * reaches and which packages they import. It decides what `package.json` must declare.
 *
 * @module
 */

import ts from "typescript";

/** What a set of entry points reaches. */
export interface Reach {
  /** Absolute paths of the local source files. */
  files: Set<string>;
  /** Non-relative specifiers as written (`postgres`, `@logtape/logtape`, `node:net`). */
  external: Set<string>;
}

/** Follows relative imports (static, dynamic, type-only, re-exports) from `entries`. */
export async function reach(entries: readonly string[]): Promise<Reach> {
  const result: Reach = { files: new Set(), external: new Set() };
  const pending = [...entries];
  while (pending.length > 0) {
    const file = pending.pop()!;
    if (result.files.has(file)) continue;
    result.files.add(file);
    const text = await Deno.readTextFile(file);
    const info = ts.preProcessFile(text, true, true);
    for (const { fileName: specifier } of info.importedFiles) {
      if (specifier.startsWith("./") || specifier.startsWith("../")) {
        pending.push(new URL(specifier, `file://${file}`).pathname);
      } else {
        result.external.add(specifier);
      }
    }
  }
  return result;
}

/** Every `.ts` file under `dir` (recursively), sorted; none when `dir` does not exist. */
export async function tsFilesUnder(dir: string): Promise<string[]> {
  const found: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory && entry.name !== "node_modules") {
        found.push(...await tsFilesUnder(path));
      } else if (entry.isFile && /\.m?ts$/.test(entry.name) && !entry.name.endsWith(".d.ts")) {
        found.push(path);
      }
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return found.sort();
}
