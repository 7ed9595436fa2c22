/**
 * Tests of the npm build's pure parts: specifiers, the derived manifest, the export map check,
 * the judgement of a Node test run.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type DenoConfig, npmPackageOf, parseNpmSpecifier, readDenoConfig } from "./config.ts";
import { reach } from "./graph.ts";
import { rewriteSpecifier } from "./compile.ts";
import { buildManifest, exportMapProblems, moduleSummary } from "./manifest.ts";
import { runProblems, type Skipped } from "./node_tests.ts";
import { nodeSnippets } from "./checks.ts";
import { SHEBANG, withShebang } from "./bin.ts";

const config: DenoConfig = {
  name: "@momotor/shared-state",
  version: "1.2.3",
  license: "MIT",
  exports: { ".": "./mod.ts", "./postgres": "./backends/postgres.ts", "./broker": "./b/broker.ts" },
  imports: {
    "@logtape/logtape": "npm:@logtape/logtape@^2.4.2",
    "postgres": "npm:postgres@^3.4.9",
    "ws": "npm:ws@^8.18.0",
    "fast-check": "npm:fast-check@^4",
    "typescript": "npm:typescript@~5.9.3",
    "unpinned": "npm:unpinned",
    "local/": "./vendor/",
    "lodash/": "npm:/lodash@^4.17.0/",
  },
};

describe("npm specifiers", () => {
  it("parses names, scopes, ranges and subpaths", () => {
    assert.deepEqual(parseNpmSpecifier("npm:postgres@^3.4.9"), {
      name: "postgres",
      range: "^3.4.9",
      subpath: "",
    });
    assert.deepEqual(parseNpmSpecifier("npm:@logtape/logtape@2/x/y"), {
      name: "@logtape/logtape",
      range: "2",
      subpath: "/x/y",
    });
    assert.deepEqual(parseNpmSpecifier("npm:/lodash@^4.17.0/fp"), {
      name: "lodash",
      range: "^4.17.0",
      subpath: "/fp",
    });
    assert.equal(parseNpmSpecifier("jsr:@std/assert"), undefined);
    assert.equal(parseNpmSpecifier("./mod.ts"), undefined);
  });

  it("finds the package behind a bare specifier through the import map", () => {
    assert.equal(npmPackageOf("postgres", config).range, "^3.4.9");
    assert.deepEqual(npmPackageOf("lodash/fp", config), {
      name: "lodash",
      range: "^4.17.0",
      subpath: "/fp",
    });
    assert.equal(npmPackageOf("npm:left-pad@1", config).name, "left-pad");
    assert.throws(() => npmPackageOf("unknown", config), /not an npm package/);
    assert.throws(() => npmPackageOf("local/x.ts", config), /not an npm package/);
    assert.throws(() => npmPackageOf("unpinned", config), /no version range/);
  });

  it("rewrites relative .ts to .js and npm: to bare names, nothing else", () => {
    assert.equal(rewriteSpecifier("./state.ts"), "./state.js");
    assert.equal(rewriteSpecifier("../internal/log.ts"), "../internal/log.js");
    assert.equal(rewriteSpecifier("./x.mts"), "./x.mjs");
    assert.equal(rewriteSpecifier("npm:postgres@^3"), "postgres");
    assert.equal(rewriteSpecifier("npm:@a/b@1/c"), "@a/b/c");
    assert.equal(rewriteSpecifier("postgres"), "postgres");
    assert.equal(rewriteSpecifier("node:test"), "node:test");
    assert.equal(rewriteSpecifier("some.ts"), "some.ts");
  });
});

describe("package.json", () => {
  const manifest = buildManifest({
    config,
    description: "Locks.",
    mainImports: ["@logtape/logtape", "node:process"],
    optionalImports: ["postgres", "ws", "@logtape/logtape", "node:net"],
    testImports: ["node:test", "fast-check", "postgres"],
    packageFiles: ["mod.ts", "backends/postgres.ts", "mod.ts"],
  });

  it("makes what the main entry point imports a dependency, the rest optional peers", () => {
    assert.deepEqual(manifest.dependencies, { "@logtape/logtape": "^2.4.2" });
    assert.deepEqual(manifest.peerDependencies, { postgres: "^3.4.9", ws: "^8.18.0" });
    assert.deepEqual(manifest.peerDependenciesMeta, {
      postgres: { optional: true },
      ws: { optional: true },
    });
    assert.deepEqual(Object.keys(manifest.devDependencies), [
      "@types/node",
      "fast-check",
      "postgres",
      "ws",
    ]);
  });

  it("exports every deno.json entry point with types and default", () => {
    assert.deepEqual(manifest.exports, {
      ".": { types: "./esm/mod.d.ts", default: "./esm/mod.js" },
      "./postgres": {
        types: "./esm/backends/postgres.d.ts",
        default: "./esm/backends/postgres.js",
      },
      "./broker": { types: "./esm/b/broker.d.ts", default: "./esm/b/broker.js" },
    });
    assert.equal(manifest.main, "./esm/mod.js");
    assert.equal(manifest.version, "1.2.3");
    assert.equal(manifest.type, "module");
    assert.equal(manifest.sideEffects, false);
    // require(esm) needs 20.19 (or 22.12): the claim must not reach further back.
    assert.equal(manifest.engines.node, "^20.19.0 || >=22.12.0");
  });

  it("lists each compiled file once", () => {
    assert.deepEqual(manifest.files, [
      "esm/backends/postgres.js",
      "esm/backends/postgres.js.map",
      "esm/backends/postgres.d.ts",
      "esm/mod.js",
      "esm/mod.js.map",
      "esm/mod.d.ts",
    ]);
  });

  it("has no bin without the ./cli export, and the shared-state bin with it", () => {
    assert.equal(manifest.bin, undefined);
    const withCli = buildManifest({
      ...baseInput(),
      config: { ...config, exports: { ...config.exports, "./cli": "./cli.ts" } },
    });
    assert.deepEqual(withCli.bin, { "shared-state": "esm/cli.js" });
  });

  it("refuses imports npm cannot serve", () => {
    for (const specifier of ["jsr:@std/assert", "https://deno.land/x/y.ts"]) {
      assert.throws(
        () => buildManifest({ ...baseInput(), mainImports: [specifier] }),
        /cannot be imported from an npm package/,
      );
    }
  });

  it("takes the description from the first paragraph of the @module doc", () => {
    const source =
      "/**\n * Named locks, see {@link StateABC}\n * and `LocalState`.\n *\n * More.\n" +
      " *\n * @module\n */\nexport {};\n";
    assert.equal(moduleSummary(source), "Named locks, see StateABC and LocalState.");
  });
});

function baseInput() {
  return {
    config,
    description: "",
    mainImports: [],
    optionalImports: [],
    testImports: [],
    packageFiles: [],
  };
}

describe("bin files", () => {
  it("get the node shebang once, and their source map a line more", () => {
    const first = withShebang("run();\n", { mappings: "AAAA" });
    assert.equal(first.code, `${SHEBANG}\nrun();\n`);
    assert.deepEqual(first.map, { mappings: ";AAAA" });
    assert.deepEqual(withShebang(first.code, first.map), first);
    assert.equal(withShebang("x;", undefined).map, undefined);
  });
});

describe("export map check", () => {
  it("reports missing, extra and mismatched entries and missing files", async () => {
    const manifest = buildManifest({ ...baseInput(), packageFiles: ["mod.ts"] });
    delete manifest.exports["./broker"];
    manifest.exports["./extra"] = { types: "./esm/x.d.ts", default: "./esm/x.js" };
    manifest.exports["./postgres"].default = "./esm/elsewhere.js";
    const problems = await exportMapProblems(config, manifest, "/nonexistent");
    assert.match(problems[0], /deno.json exports \., \.\/broker, \.\/postgres; package.json/);
    assert.ok(problems.some((p) => p.startsWith("export ./postgres: {")));
    assert.ok(problems.some((p) => p.includes("./esm/mod.js is missing")));
  });

  it("accepts a manifest built from the same deno.json", async () => {
    const dir = await Deno.makeTempDir();
    try {
      for (const path of ["esm/mod", "esm/backends/postgres", "esm/b/broker"]) {
        await Deno.mkdir(`${dir}/${path.slice(0, path.lastIndexOf("/"))}`, { recursive: true });
        await Deno.writeTextFile(`${dir}/${path}.js`, "");
        await Deno.writeTextFile(`${dir}/${path}.d.ts`, "");
      }
      assert.deepEqual(await exportMapProblems(config, buildManifest(baseInput()), dir), []);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

describe("Node test run", () => {
  const file = (passed: number, skipped: Skipped[] = [], failed: string[] = []) => ({
    passed,
    skipped,
    failed,
  });

  it("accepts a run where every file passed tests", () => {
    const summary = {
      "esm/tests/local_test.js": file(40),
      "esm/tests/postgres_x_test.js": file(3),
    };
    assert.deepEqual(runProblems(summary, true), []);
  });

  it("refuses a run that tested nothing, or a file that registered no test", () => {
    const summary = { "esm/tests/local_test.js": file(0), "esm/tests/b_test.js": file(0) };
    assert.deepEqual(runProblems(summary, false), [
      "no test passed: the run tested nothing",
      "esm/tests/local_test.js: registered no test under Node",
      "esm/tests/b_test.js: registered no test under Node",
    ]);
    assert.deepEqual(runProblems({ "esm/tests/a_test.js": file(1), ...summary }, false), [
      "esm/tests/local_test.js: registered no test under Node",
      "esm/tests/b_test.js: registered no test under Node",
    ]);
  });

  it("refuses skipped PostgreSQL tests only when REQUIRE_POSTGRES=1", () => {
    const summary = {
      "esm/tests/local_test.js": file(1, [
        { name: "pg part", suite: true, reason: "SKIPPED: no PostgreSQL server answers" },
        { name: "gc", suite: false, reason: "no gc" },
      ]),
      "esm/tests/postgres_x_test.js": file(0, [
        { name: "all", suite: true, reason: "" },
        { name: "pooler", suite: true, reason: "SKIPPED: set POOLER_URL to a pooler (PgBouncer)" },
      ]),
    };
    assert.deepEqual(runProblems(summary, false), []);
    const problems = runProblems(summary, true);
    assert.equal(problems.length, 2, problems.join("\n"));
    assert.match(problems[0], /local_test.js: REQUIRE_POSTGRES=1, but suite "pg part" was skipped/);
    assert.match(problems[1], /postgres_x_test.js: REQUIRE_POSTGRES=1, but suite "all"/);
  });

  it("lists failures", () => {
    const summary = { "esm/tests/local_test.js": file(1, [], ["breaks"]) };
    assert.deepEqual(runProblems(summary, false), ["esm/tests/local_test.js: failed: breaks"]);
  });
});

describe("README Node examples", () => {
  it("takes the ts node blocks, indented or not, and no other", () => {
    const readme = [
      "# x", //                                       1
      "```ts", //                                     2
      "deno();", //                                   3
      "```", //                                       4
      "The `` ```ts node `` blocks are checked.", //  5
      "```ts node", //                                6
      "const a: number = 1;", //                      7
      "```", //                                       8
      "- a list item:", //                            9
      "", //                                         10
      "  ```ts node run", //                         11
      "  if (x) {", //                               12
      "    y();", //                                 13
      "  }", //                                      14
      "  ```", //                                    15
    ].join("\n");
    assert.deepEqual(nodeSnippets(readme), [
      { line: 6, code: "const a: number = 1;\n", run: false },
      { line: 11, code: "if (x) {\n  y();\n}\n", run: true },
    ]);
    assert.throws(() => nodeSnippets("```ts node\nx;\n"), /line 1: unclosed/);
  });
});

describe("web-standard entry points", () => {
  it("reach no node: module and no Node-only package, so that Workers and browsers bundle them", async () => {
    // docs/runtimes.md: "." and "./broker" run on Cloudflare Workers without nodejs_compat, and in
    // browsers; serveBroker (node:http, ws) has "./broker/node" for that.
    const root = new URL("../../", import.meta.url).pathname;
    const { exports } = await readDenoConfig(root.replace(/\/$/, ""));
    for (const entry of [".", "./broker"]) {
      const { external } = await reach([`${root}${exports[entry].replace(/^\.\//, "")}`]);
      const nodeOnly = [...external].filter((specifier) =>
        specifier.startsWith("node:") || ["ws", "postgres"].includes(specifier)
      );
      assert.deepEqual(nodeOnly, [], `${entry} reaches ${nodeOnly.join(", ")}`);
    }
    assert.ok(exports["./broker/node"], "serveBroker's own entry point");
  });
});
