// The closing line of CI: what both runners passed and failed, from the reports they wrote
// (Deno's JUnit XML, the npm build's Node summary), not from their terminal output.
// Usage: node .ci/count.mjs DENO_JUNIT_XML NODE_SUMMARY_JSON
import { readFileSync } from "node:fs";

function read(path) {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

const [junitPath, nodePath] = process.argv.slice(2);
const junit = read(junitPath);
const root = junit?.match(/<testsuites\b[^>]*>/)?.[0] ?? "";
const attribute = (name) => Number(root.match(new RegExp(`\\b${name}="(\\d+)"`))?.[1] ?? 0);
const deno = junit === undefined ? { passed: 0, failed: 1 } : {
  passed: attribute("tests") - attribute("failures") - attribute("errors") -
    (junit.match(/<skipped\b/g)?.length ?? 0),
  failed: attribute("failures") + attribute("errors"),
};

const nodeText = read(nodePath);
const node = { passed: 0, failed: nodeText === undefined ? 1 : 0 };
for (const file of Object.values(nodeText === undefined ? {} : JSON.parse(nodeText))) {
  node.passed += file.passed;
  node.failed += file.failed.length;
}

console.log(
  `Deno: ${deno.passed} tests and steps passed, ${deno.failed} failed` +
    `${junit === undefined ? " (no report)" : ""}; Node: ${node.passed} tests passed, ` +
    `${node.failed} failed${nodeText === undefined ? " (no report)" : ""}`,
);
console.log(`tests: ${deno.passed + node.passed} passed, ${deno.failed + node.failed} failed`);
