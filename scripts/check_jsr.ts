/**
 * Checks what JSR will show and score, for every entry point of `deno.json` (read from its export
 * map, so a new entry point is checked without editing this file): a `@module` doc with an
 * example, an example on every exported class and function, `deno doc --lint` clean (every
 * exported symbol documented), `deno publish --dry-run` clean (no slow types, no excluded
 * module), and every module of the package type-checks with `isolatedDeclarations` (stricter than
 * JSR's slow types: the npm build compiles with it, and would fail later). Every check runs; all
 * failures are reported at the end.
 *
 * Usage: `deno run --allow-all scripts/check_jsr.ts` (part of `deno task check`).
 *
 * @module
 */

import { type DenoConfig, readDenoConfig } from "./npm_package/config.ts";
import { moduleDoc } from "./npm_package/manifest.ts";
import { runOk, step } from "./npm_package/run.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** The parts of `deno doc --json` output read here. */
interface DocOutput {
  nodes: Record<string, {
    symbols: {
      name: string;
      declarations: { kind: string; jsDoc?: { doc?: string; tags?: { kind: string }[] } }[];
    }[];
  }>;
}

/** Exported classes and functions whose doc comment has no `@example` (nor a code block). */
export function symbolsWithoutExample(doc: DocOutput): string[] {
  const missing: string[] = [];
  for (const [module, { symbols }] of Object.entries(doc.nodes)) {
    for (const { name, declarations } of symbols) {
      for (const { kind, jsDoc } of declarations) {
        if (kind !== "class" && kind !== "function") continue;
        const example = jsDoc?.tags?.some((tag) => tag.kind === "example") ||
          /```/.test(jsDoc?.doc ?? "");
        if (!example) missing.push(`${module.replace(`file://${ROOT}/`, "")}: ${kind} ${name}`);
      }
    }
  }
  return missing;
}

/**
 * `deno check` of the entry points with `isolatedDeclarations`, through a config of its own (in a
 * temporary directory) that has the project's imports: the project's config stays as it is.
 */
async function checkIsolatedDeclarations(deno: string, config: DenoConfig, entryPoints: string[]) {
  const dir = await Deno.makeTempDir({ prefix: "shared-state-isolated-" });
  try {
    await Deno.writeTextFile(
      `${dir}/deno.json`,
      JSON.stringify({
        imports: config.imports,
        nodeModulesDir: "none",
        compilerOptions: { isolatedDeclarations: true },
      }),
    );
    await runOk(deno, ["check", "--quiet", "--config", `${dir}/deno.json`, ...entryPoints], {
      cwd: ROOT,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function main(): Promise<void> {
  const config = await readDenoConfig(ROOT);
  const entryPoints = Object.values(config.exports);
  const deno = Deno.execPath();
  const failures: string[] = [];
  const check = async (name: string, body: () => Promise<unknown>) => {
    try {
      await step(name, body);
    } catch (error) {
      console.error(`✘ ${name}`);
      failures.push(`${name}:\n${error instanceof Error ? error.message : error}`);
    }
  };
  await check("every entry point has a @module doc with an example", async () => {
    const problems: string[] = [];
    for (const path of entryPoints) {
      const source = await Deno.readTextFile(`${ROOT}/${path}`).catch(() => undefined);
      const doc = source === undefined ? undefined : moduleDoc(source);
      if (doc === undefined) problems.push(`${path}: exported by deno.json, but missing`);
      else if (!/^@module\b/m.test(doc)) problems.push(`${path}: no @module doc comment first`);
      else if (!/^(@example\b|```)/m.test(doc)) {
        problems.push(`${path}: its @module doc has no example`);
      }
    }
    if (problems.length > 0) throw new Error(problems.join("\n"));
  });
  await check("every exported class and function has an example", async () => {
    const json = await runOk(deno, ["doc", "--json", ...entryPoints], { cwd: ROOT });
    const missing = symbolsWithoutExample(JSON.parse(json));
    if (missing.length > 0) throw new Error(`no @example:\n${missing.join("\n")}`);
  });
  await check(
    `deno doc --lint ${entryPoints.join(" ")}`,
    () => runOk(deno, ["doc", "--lint", ...entryPoints], { cwd: ROOT }),
  );
  await check(
    "declarations need no inference (isolatedDeclarations, as the npm build compiles)",
    () => checkIsolatedDeclarations(deno, config, entryPoints),
  );
  await check(
    "deno publish --dry-run",
    () => runOk(deno, ["publish", "--dry-run", "--allow-dirty"], { cwd: ROOT }),
  );
  if (failures.length > 0) throw new Error(failures.join("\n\n"));
}

if (import.meta.main) {
  try {
    await main();
  } catch (error) {
    console.error(`\ncheck_jsr failed: ${error instanceof Error ? error.message : error}`);
    Deno.exit(1);
  }
}
