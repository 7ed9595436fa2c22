// The closing line of CI: what the runners passed and failed, from the reports they wrote (Deno's
// JUnit XML, the npm build's Node summary, and those of the optional runs: Bun's, Workers' and the
// browser's JUnit XML, Node 22's and 24's summaries), not from their terminal output.
// Usage: node .ci/count.mjs DENO_JUNIT_XML NODE_SUMMARY_JSON [LABEL=JUNIT_XML|NODE_SUMMARY_JSON ...]
// An optional report that is missing counts nothing: its run was skipped (and CI said so).
import { readFileSync } from "node:fs";

function read(path) {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

/** Passed and failed test cases of a JUnit report (Deno's counts test steps too). */
function junitCounts(junit) {
  const root = junit.match(/<testsuites\b[^>]*>/)?.[0] ?? "";
  const attribute = (name) => Number(root.match(new RegExp(`\\b${name}="(\\d+)"`))?.[1] ?? 0);
  return {
    passed: attribute("tests") - attribute("failures") - attribute("errors") -
      (junit.match(/<skipped\b/g)?.length ?? 0),
    failed: attribute("failures") + attribute("errors"),
  };
}

const [junitPath, nodePath, ...optional] = process.argv.slice(2);
const junit = read(junitPath);
const deno = junit === undefined ? { passed: 0, failed: 1 } : junitCounts(junit);

/** Passed and failed tests of a Node summary (scripts/npm_package/node_tests.ts), per file. */
function nodeCounts(summary) {
  const counts = { passed: 0, failed: 0 };
  for (const file of Object.values(JSON.parse(summary))) {
    counts.passed += file.passed;
    counts.failed += file.failed.length;
  }
  return counts;
}

const nodeText = read(nodePath);
const node = nodeText === undefined ? { passed: 0, failed: 1 } : nodeCounts(nodeText);

const parts = [
  `Deno: ${deno.passed} tests and steps passed, ${deno.failed} failed` +
  `${junit === undefined ? " (no report)" : ""}`,
  `Node: ${node.passed} tests passed, ${node.failed} failed` +
  `${nodeText === undefined ? " (no report)" : ""}`,
];
const total = { passed: deno.passed + node.passed, failed: deno.failed + node.failed };
for (const argument of optional) {
  const [label, path] = [
    argument.slice(0, argument.indexOf("=")),
    argument.slice(argument.indexOf("=") + 1),
  ];
  const text = read(path);
  if (text === undefined) {
    parts.push(`${label}: not run`);
    continue;
  }
  const counts = text.trimStart().startsWith("{") ? nodeCounts(text) : junitCounts(text);
  parts.push(`${label}: ${counts.passed} passed, ${counts.failed} failed`);
  total.passed += counts.passed;
  total.failed += counts.failed;
}

console.log(`${parts.join("; ")}`);
console.log(`tests: ${total.passed} passed, ${total.failed} failed`);
