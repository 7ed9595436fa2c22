/**
 * Bundles the browser page (`page.ts`, with the package's sources it imports) into one ES module
 * for the browser, with `deno bundle --platform browser`. The import map is `deno.json`'s, plus
 * `node:test` and `node:assert` mapped to the browser's stand-ins (`node_test.ts`, `assert.ts`),
 * so that the conformance suite runs unchanged. The bundle must import no `node:` module: the
 * package's browser entry points (`.` and `./broker`) and the suite need none besides those two.
 *
 * @module
 */

const HERE = new URL(".", import.meta.url);
const ROOT = new URL("../../", import.meta.url);

/** Bundles `page.ts` into `dir`; resolves with the bundle's text. */
export async function bundlePage(dir: string): Promise<string> {
  const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));
  const assertModule = new URL("assert.ts", HERE).href;
  const importMap = {
    imports: {
      ...config.imports,
      "node:test": new URL("node_test.ts", HERE).href,
      "node:assert": assertModule,
      "node:assert/strict": assertModule,
    },
  };
  await Deno.writeTextFile(`${dir}/import_map.json`, JSON.stringify(importMap));
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      "--platform",
      "browser",
      "--import-map",
      `${dir}/import_map.json`,
      "--output",
      `${dir}/page.js`,
      new URL("page.ts", HERE).pathname,
    ],
    cwd: ROOT.pathname,
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  if (code !== 0) {
    throw new Error(
      `deno bundle exited ${code}:\n${decoder.decode(stdout)}${decoder.decode(stderr)}`,
    );
  }
  const bundle = await Deno.readTextFile(`${dir}/page.js`);
  const nodeImport = /(?:from|import)\s*\(?\s*["'](node:[a-z_/]+)["']/.exec(bundle);
  if (nodeImport) throw new Error(`the page's bundle imports ${nodeImport[1]}`);
  return bundle;
}
