// The SVG builder on fixed data: `deno test --config bench/deno.json bench/`.

import assert from "node:assert/strict";
import { test } from "node:test";
import { distributionOf, escapeText, formatMicros, ratesChartOf, renderChart } from "./charts.ts";
import type { DistributionChart, GroupResult } from "./results.ts";

const spread = (p50: number) =>
  distributionOf(Array.from({ length: 1000 }, (_, i) => p50 * (0.5 + i / 1000)));

const distribution: DistributionChart = {
  type: "distribution",
  id: "test-distribution",
  title: "Uncontended acquire+release: latency",
  subtitle: "fixed data",
  rows: [
    { name: "BrokerState (Deno)", role: "ours", distribution: spread(320) },
    { name: "redis-semaphore", role: "peer", distribution: spread(250) },
    { name: "live-mutex", role: "peer", missing: "no Node here" },
    { name: "Redis `PING`", role: "floor", distribution: spread(80) },
    // Zero and sub-axis values (a hand-off can take 0 µs) sit at the axis' left end.
    {
      name: "zero",
      role: "peer",
      distribution: { samples: 3, p1: 0, p10: 0, p50: 1, p90: 5, p99: 1e6, p999: 2e6 },
    },
  ],
};

const group: GroupResult = {
  title: "In process, Deno 2.9.6",
  runtime: "Deno 2.9.6",
  subjects: [{ name: "LocalState", how: "" }, { name: "async-mutex", how: "" }, {
    name: "navigator.locks",
    how: "",
    unavailable: "no navigator.locks",
  }],
  scenarios: [
    {
      title: "uncontended exclusive acquire+release",
      unit: "ops/s",
      targetFastest: true,
      cells: { LocalState: { opsPerSec: 3.16e6 }, "async-mutex": { opsPerSec: 266e3 } },
    },
    {
      title: "uncontended shared acquire+release",
      unit: "ops/s",
      targetFastest: true,
      cells: {
        LocalState: { opsPerSec: 2.7e6, note: "20 tasks" },
        "async-mutex": { skipped: "no shared mode" },
      },
    },
    {
      title: "connections",
      unit: "count",
      targetFastest: false,
      cells: { LocalState: { count: 1 } },
    },
  ],
  rounds: 12,
  remarks: [],
  rateUnit: "Operations per CPU-second of the measuring process (user + system time)",
};

/** Checks that `svg` is one well-formed `<svg>` element with balanced tags. */
function assertWellFormed(svg: string): void {
  assert.equal(svg.match(/<svg[\s>]/g)?.length, 1);
  assert.ok(svg.startsWith("<svg "), "starts with <svg");
  assert.ok(svg.trimEnd().endsWith("</svg>"), "ends with </svg>");
  const stack: string[] = [];
  for (const [tag, closing, name, selfClosing] of svg.matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
    if (selfClosing) continue;
    if (!closing) stack.push(name);
    else assert.equal(stack.pop(), name, `unbalanced ${tag}`);
  }
  assert.deepEqual(stack, []);
  // Text holds no raw markup characters: every `&` starts an entity.
  assert.doesNotMatch(svg, /&(?!amp;|lt;|gt;|quot;)/);
  assert.doesNotMatch(svg, /NaN|Infinity|undefined/);
  for (const [, value] of svg.matchAll(/ (?:x|y|x1|x2|y1|y2|width|height)="([^"]*)"/g)) {
    assert.ok(Number.isFinite(Number(value)), `coordinate ${value}`);
  }
}

test("a distribution chart is well-formed SVG that names every row", () => {
  const svg = renderChart(distribution);
  assertWellFormed(svg);
  for (
    const name of ["BrokerState (Deno)", "redis-semaphore", "live-mutex", "Redis PING", "zero"]
  ) {
    assert.ok(svg.includes(`>${name}</text>`), name);
  }
  assert.match(svg, /not measured: no Node here/);
  assert.match(svg, /p50 320 µs · p99 /);
  assert.equal(renderChart(distribution), svg, "the same data gives the same file");
  assert.ok(svg.length < 20_000, `small (${svg.length} characters)`);
});

test("a rates chart draws the rows of operations per second", () => {
  const chart = ratesChartOf(group, "in-process-deno")!;
  assert.equal(chart.blocks.length, 2, "the count row has no bars");
  const svg = renderChart(chart);
  assertWellFormed(svg);
  for (const name of ["LocalState", "async-mutex", "navigator.locks", "In process, Deno 2.9.6"]) {
    assert.ok(svg.includes(name), name);
  }
  assert.match(svg, />3\.16 M</);
  assert.match(svg, />2\.7 M \[20 tasks\]</);
  assert.match(svg, /not measured: no shared mode/);
  assert.match(svg, /not measured: no navigator\.locks/);
  assert.match(svg, /Operations per CPU-second, higher is better/);
  assert.equal(ratesChartOf({ ...group, scenarios: [group.scenarios[2]] }, "none"), undefined);
});

test("percentiles, units and escaping", () => {
  const d = distributionOf(Array.from({ length: 1000 }, (_, i) => 999 - i))!;
  assert.deepEqual(d, { samples: 1000, p1: 10, p10: 100, p50: 500, p90: 900, p99: 990, p999: 999 });
  assert.equal(distributionOf([]), undefined);
  assert.equal(formatMicros(320), "320 µs");
  assert.equal(formatMicros(1270), "1.27 ms");
  assert.equal(formatMicros(68_000), "68 ms");
  assert.equal(formatMicros(2_500_000), "2.5 s");
  assert.equal(escapeText('`a` < b & "c"'), "a &lt; b &amp; &quot;c&quot;");
  assert.throws(() =>
    renderChart({
      ...distribution,
      rows: [{ ...distribution.rows[0], distribution: { ...spread(1)!, p50: NaN } }],
    })
  );
});
